"""The ``ctsr`` command line, run as real processes: outputs, the JSON-lines stream, exit codes,
one-line errors and no output file on failure."""

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from ctsr.io import read_volume, write_volume
from ctsr.metrics import evaluate
from ctsr.resources import sample_volume_path
from ctsr.volume import Volume


def ctsr(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ctsr.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_simulate_upsample_evaluate_chain(tmp_path, oblique_sample):
    hr_path = write_volume(oblique_sample, tmp_path / "hr.nrrd")
    run = ctsr("simulate-lr", hr_path, tmp_path / "lr.nii.gz", "--scale", "1x1x4", "--quiet")
    assert run.returncode == 0 and run.stdout == "" and run.stderr == ""
    run = ctsr("upsample", tmp_path / "lr.nii.gz", tmp_path / "up.nrrd", "--scale", "1x1x4",
               "--method", "cubic", "--json-progress")
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert events[-1]["event"] == "result" and events[-1]["output"] == str(tmp_path / "up.nrrd")
    assert events[-1]["provenance"]["method"] == "cubic" and events[-1]["provenance"]["scale"] == "1x1x4"
    assert events[-1]["provenance"]["lr_residual"]["rms_hu"] > 0  # reported for every method
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    from ctsr.upsampling import upsample

    expected_hr = upsample(read_volume(tmp_path / "lr.nii.gz"), "1x1x4", "cubic").volume
    written = read_volume(tmp_path / "up.nrrd")
    assert written.same_grid(oblique_sample) and written.same_grid(expected_hr)
    np.testing.assert_allclose(written.array, expected_hr.array, atol=1e-3)  # what the engine computes
    run = ctsr("evaluate", tmp_path / "up.nrrd", hr_path, "--json")
    scores = json.loads(run.stdout)
    expected = evaluate(read_volume(tmp_path / "up.nrrd"), read_volume(hr_path))
    assert scores["psnr"] == pytest.approx(expected["psnr"]) and scores["ssim"] == pytest.approx(expected["ssim"])


def test_evaluate_of_identical_volumes_is_strict_json(tmp_path, sample):
    """Identical volumes have an infinite PSNR: null in JSON (never the non-standard Infinity)."""
    path = write_volume(sample, tmp_path / "same.nrrd")
    run = ctsr("evaluate", path, path, "--json")
    assert run.returncode == 0, run.stderr
    scores = json.loads(run.stdout, parse_constant=lambda name: pytest.fail(f"non-JSON {name}"))
    assert scores["psnr"] is None and scores["ssim"] == pytest.approx(1.0)
    run = ctsr("evaluate", path, path, "--json-progress")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1], parse_constant=lambda name: pytest.fail(name))
    assert result["event"] == "result" and result["psnr"] is None


def test_upsample_with_no_flags_runs_the_default_zero_shot_preset(tmp_path, sample):
    """`ctsr upsample LR OUT --scale 2` runs the default method and reports the LR residual."""
    from ctsr.lrmodel import simulate_lr
    from ctsr.upsampling import DEFAULT_METHOD

    lr_path = write_volume(simulate_lr(sample, (2, 2, 2)), tmp_path / "lr.nrrd")
    run = ctsr("upsample", lr_path, tmp_path / "hr.nrrd", "--scale", "2")
    assert run.returncode == 0, run.stderr
    assert f"{DEFAULT_METHOD}," in run.stdout and "LR residual" in run.stdout
    assert read_volume(tmp_path / "hr.nrrd").same_grid(sample)


def _not_an_image(d):
    (d / "in.nrrd").write_text("not an image")
    return d / "in.nrrd"


def _nan(d):
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 8, 8), np.nan, np.float32)), str(d / "in.nrrd"))
    return d / "in.nrrd"


def _rgb(d):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 8, 8, 3), np.uint8), isVector=True), str(d / "in.nrrd"))
    return d / "in.nrrd"


@pytest.mark.parametrize("make_input, extra", [
    (lambda d: d / "missing.nrrd", []),
    (_not_an_image, []),
    (_nan, []),
    (_rgb, []),
    (lambda d: sample_volume_path(), ["--scale", "3x"]),
])
def test_user_errors_exit_2_with_one_line_and_no_output(tmp_path, make_input, extra):
    out = tmp_path / "out" / "hr.nrrd"
    out.parent.mkdir()
    run = ctsr("upsample", make_input(tmp_path), out, "--method", "cubic", *extra)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ctsr: error: "), run.stderr
    assert "Traceback" not in run.stderr
    assert list(out.parent.iterdir()) == []


def test_error_event_on_the_json_stream(tmp_path):
    run = ctsr("upsample", tmp_path / "missing.nrrd", tmp_path / "hr.nrrd", "--json-progress")
    assert run.returncode == 2
    last = json.loads(run.stdout.splitlines()[-1])
    assert last["event"] == "error" and last["kind"] == "user" and "does not exist" in last["message"]


def test_demo_writes_the_volume_and_the_montage(tmp_path):
    run = ctsr("demo", "--out", tmp_path / "demo", "--quiet")  # the default method
    assert run.returncode == 0, run.stderr
    hr = read_volume(tmp_path / "demo" / "sample_SRx2.nrrd")
    sample = read_volume(sample_volume_path())
    assert hr.shape_ijk == tuple(2 * n for n in sample.shape_ijk)
    png = sitk.ReadImage(str(tmp_path / "demo" / "montage.png"))
    # columns input | output, rows axial | coronal | sagittal, each panel 128 px, 4 px gaps,
    # a 14 px strip of column titles above and one with the window below
    assert (png.GetWidth(), png.GetHeight()) == (2 * 128 + 4, 3 * 128 + 2 * 4 + 2 * 14)
    pixels = sitk.GetArrayFromImage(png)
    assert pixels[14:-14].std() > 20  # real anatomy, not a blank image
    titles, footer = pixels[:14], pixels[-14:]
    assert titles[:, :128].max() > 200 and titles[:, 132:].max() > 200 and footer.max() > 200  # text
    # No overshoot: the output stays within the input's HU range widened by the stated margin.
    from ctsr.fidelity import hu_bounds

    low, high = hu_bounds(sample)
    assert low - 1e-3 <= hr.array.min() and hr.array.max() <= high + 1e-3


def test_a_montage_title_wider_than_its_column_wraps_inside_it(sample):
    """A long label (a method with its LR model) takes more lines above its own column instead
    of running over the next one."""
    from ctsr.montage import _LINE, montage

    small = Volume(np.ascontiguousarray(sample.array[:24, :24, :24]), sample.ijk_to_ras)
    short = montage([small, small], (-1000.0, 500.0), labels=["cubic", ""])
    long = montage([small, small], (-1000.0, 500.0), labels=["fast (gauss:1,noise:20.2)", ""])
    assert long.shape[0] > short.shape[0] and long.shape[1] == short.shape[1]
    column = long.shape[1] // 2  # 24 px panels at 1.5 mm: both columns are equally wide
    strip = long.shape[0] - short.shape[0] + _LINE + 2  # the long title strip: the short one (one line) and more
    assert long[:strip, :column].max() > 200 and long[:strip, column:].max() == 0


def test_lr_model_given_on_the_command_line_is_used_and_reported(tmp_path, sample):
    """--lr-model reaches the consistency step; the result event, the provenance and the
    terminal line say which model was used and where each part came from."""
    hr_path = write_volume(sample, tmp_path / "hr.nrrd")
    run = ctsr("simulate-lr", hr_path, tmp_path / "lr.nrrd", "--lr-model", "box,noise:8", "--seed", "4")
    assert run.returncode == 0 and "LR model box,noise:8" in run.stdout, run.stderr
    run = ctsr("upsample", tmp_path / "lr.nrrd", tmp_path / "out.nrrd", "--lr-model", "box,noise:8",
               "--method", "fast", "--json-progress")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    model = result["provenance"]["lr_model"]
    assert model["model"] == "box,noise:8" and set(model["source"].values()) == {"given"}
    residual = result["provenance"]["lr_residual"]
    assert residual["noise_hu"] == 8.0 and residual["rms_hu"] >= 0.97 * 8.0  # stopped at the noise
    run = ctsr("upsample", tmp_path / "lr.nrrd", tmp_path / "auto.nrrd", "--method", "fast")
    assert run.returncode == 0 and "LR model " in run.stdout, run.stderr
    assert "LR model: " in run.stderr and "estimated" in run.stderr  # the log line says where it came from


def test_progress_into_a_pipe_is_plain_lines_with_real_fractions(tmp_path, sample):
    """stderr is not a terminal here: no carriage-return bar, one line per stage or 10 %,
    fractions rising to 100 % through the stages of the default method."""
    import re

    path = write_volume(sample, tmp_path / "in.nrrd")
    run = ctsr("upsample", path, tmp_path / "out.nrrd")
    assert run.returncode == 0 and "\r" not in run.stderr, run.stderr
    lines = [re.match(r"\[\s*(\d+)%\] ([a-z ]+):", line) for line in run.stderr.splitlines()]
    steps = [(int(m.group(1)), m.group(2)) for m in lines if m]
    assert [p for p, _ in steps] == sorted(p for p, _ in steps) and steps[-1][0] == 100
    assert {"lr model", "upsample", "consistency"} <= {stage for _, stage in steps}
    assert any(0 < p < 100 for p, stage in steps if stage == "consistency")


@pytest.mark.parametrize("command, model", [("upsample", "blur:3"), ("upsample", "noise:-2"),
                                            ("simulate-lr", "noise:5")])
def test_bad_lr_models_are_one_sentence_and_exit_2(tmp_path, sample, command, model):
    path = write_volume(sample, tmp_path / "in.nrrd")
    run = ctsr(command, path, tmp_path / "out.nrrd", "--lr-model", model)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.startswith("ctsr: error:") and len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.nrrd").exists()


@pytest.mark.parametrize("spelling", ["same", "dotted", "link"])
def test_the_input_is_never_overwritten(tmp_path, sample, spelling):
    path = write_volume(sample, tmp_path / "ct.nrrd")
    before = path.read_bytes()
    output = {"same": path, "dotted": tmp_path / "." / "sub" / ".." / "ct.nrrd", "link": tmp_path / "link.nrrd"}[spelling]
    (tmp_path / "sub").mkdir()
    if spelling == "link":
        output.symlink_to(path)
    for command in ("upsample", "simulate-lr"):
        run = ctsr(command, path, output, "--scale", "2")
        assert run.returncode == 2 and "is the input" in run.stderr and "Traceback" not in run.stderr
    assert path.read_bytes() == before


def test_an_existing_file_where_the_uncertainty_map_would_go_is_kept(tmp_path, sample):
    """The map's path is made from the output's, not named by the user: a file already there
    is refused in one sentence, before any work, and both files stay as they were."""
    path = write_volume(sample, tmp_path / "ct.nrrd")
    theirs = tmp_path / "hr_uncertainty.nrrd"
    theirs.write_bytes(b"someone else's file")
    run = ctsr("upsample", path, tmp_path / "hr.nrrd", "--uncertainty", "2", "--method", "balanced")
    assert run.returncode == 2 and "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "hr_uncertainty.nrrd exists and was not named as an output" in run.stderr
    assert theirs.read_bytes() == b"someone else's file" and not (tmp_path / "hr.nrrd").exists()


def test_an_uncertainty_map_never_lands_on_the_input(tmp_path, sample):
    path = write_volume(sample, tmp_path / "ct_uncertainty.nrrd")
    before = path.read_bytes()
    run = ctsr("upsample", path, tmp_path / "ct.nrrd", "--uncertainty", "2")
    assert run.returncode == 2 and "is the input" in run.stderr and "Traceback" not in run.stderr
    assert path.read_bytes() == before and not (tmp_path / "ct.nrrd").exists()


@pytest.mark.parametrize("args, phrase", [
    (["upsample", "{sample}", "{tmp}/folder.nrrd"], "is a folder; name a file"),
    (["upsample", "{sample}", "{tmp}/o.nrrd", "--seed", "-1"], "the seed must be a whole number from 0 up"),
    (["simulate-lr", "{sample}", "{tmp}/o.nrrd", "--seed", "x", "--lr-model", "box,noise:10"],
     "the seed must be a whole number from 0 up"),
    (["upsample", "{sample}", "{tmp}/o.nrrd", "--method", "fast", "--prior", "none"],
     "a projection prior (--prior) is for standard and quality; fast has none"),
    (["evaluate", "{sample}", "{sample}", "--window", "500", "-500"], "the HU window must go from low to high"),
    (["demo", "--out", "{sample}"], "is a file; the demo writes into a folder"),
])
def test_more_user_errors_exit_2_without_a_traceback(tmp_path, args, phrase):
    (tmp_path / "folder.nrrd").mkdir()
    run = ctsr(*(a.format(sample=sample_volume_path(), tmp=tmp_path) for a in args))
    assert run.returncode == 2 and phrase in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert not (tmp_path / "o.nrrd").exists()


def test_evaluate_keeps_the_json_stream_pure_and_quiet_quiet(tmp_path, sample):
    path = sample_volume_path()
    lines = ctsr("evaluate", path, path, "--json-progress").stdout.splitlines()
    events = [json.loads(line) for line in lines]  # every line is an event
    assert events[-1]["event"] == "result" and events[-1]["ssim"] == 1.0
    assert ctsr("evaluate", path, path, "--quiet").stdout == ""


def test_uncertainty_of_a_deterministic_baseline_is_refused(tmp_path, sample):
    path = write_volume(sample, tmp_path / "in.nrrd")
    run = ctsr("upsample", path, tmp_path / "out.nrrd", "--method", "cubic", "--uncertainty", "3")
    assert run.returncode == 2 and "deterministic" in run.stderr and not (tmp_path / "out.nrrd").exists()


def test_itk_warnings_do_not_reach_the_user(tmp_path):
    folder = tmp_path / "notdicom"
    folder.mkdir()
    (folder / "x.dcm").write_text("hello")
    run = ctsr("upsample", folder, tmp_path / "out.nrrd")
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [f"ctsr: error: {folder} is a folder with no DICOM series in it."]


def test_a_dicom_series_gives_its_slice_thickness_as_the_z_profile(tmp_path, sample):
    """The CLI reads SliceThickness (0018,0050) of the series it reads: a 3 mm slab across 2 mm
    slices, named as its source in the JSON result."""
    from dicom_series import write_dicom_series

    folder = write_dicom_series(tmp_path / "series", Volume.from_spacing(sample.array[:16, :24, :24], (0.8, 0.8, 2.0)),
                                slice_thickness_mm=3.0)
    run = ctsr("upsample", folder, tmp_path / "up.nrrd", "--scale", "1x1x2", "--method", "cubic", "--json-progress")
    assert run.returncode == 0, run.stderr
    model = json.loads(run.stdout.splitlines()[-1])["provenance"]["lr_model"]
    assert model["model"].startswith("z=slab:3mm") and "SliceThickness" in model["source"]["z"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the refusal is for a machine without a GPU")
def test_a_gpu_asked_for_on_a_machine_without_one_is_one_sentence_and_exit_2(tmp_path, sample):
    path = write_volume(Volume(sample.array[:16, :16, :16], sample.ijk_to_ras), tmp_path / "lr.nrrd")
    run = ctsr("upsample", path, tmp_path / "up.nrrd", "--method", "fast", "--device", "cuda")
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == ["ctsr: error: device 'cuda' was asked for, but no CUDA GPU is "
                                               "available; use 'auto' or 'cpu'."]
    assert not (tmp_path / "up.nrrd").exists()


@pytest.mark.parametrize("raised, code, words", [
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), 4, "not enough memory"),
    (ModuleNotFoundError("No module named 'diffusers'", name="diffusers"), 2, "'diffusers' that this needs is not"),
])
def test_gpu_memory_and_a_missing_package_are_one_sentence_with_their_exit_code(capsys, raised, code, words):
    """What torch raises for exhausted GPU memory (a RuntimeError) and a package missing from
    this Python reach the user as one sentence with their exit code (``run_guarded``, which the
    CLI and the worker share; batch's scans run in the same ``known_errors``), but a missing
    module of ctsr itself stays a bug with its traceback."""
    import argparse

    from ctsr.cli import run_guarded
    from ctsr.errors import known_errors
    from ctsr.progress import SilentProgress

    def run(args, progress):
        raise raised

    assert run_guarded(run, argparse.Namespace(json_progress=False), SilentProgress()) == code
    assert words in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="a bug"), known_errors():
        raise RuntimeError("a bug")  # anything else keeps its traceback
    with pytest.raises(ModuleNotFoundError), known_errors():
        raise ModuleNotFoundError("No module named 'ctsr.nothing'", name="ctsr.nothing")
