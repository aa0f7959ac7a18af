"""The Slicer module's Qt-free layer on slicer-core's real MRML (``vtkMRMLScene``,
``vtkMRMLScalarVolumeNode``), without the Slicer application: ``process`` runs the real worker
subprocess on real CT voxels and loads its result; cancel and crashes leave nothing behind."""

from __future__ import annotations

import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")
vtk = pytest.importorskip("vtk")

from ctsr.baselines import upsample_interpolate  # noqa: E402
from ctsr.errors import Cancelled, UserError  # noqa: E402
from ctsr.grids import hr_grid, is_thick_slice, slice_axis, slice_axis_of_spacing  # noqa: E402
from ctsr.volume import Volume  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "CTSuperResolution"))

from CTSuperResolutionLib import dependencies, events, jobs, nodes  # noqa: E402
from CTSuperResolutionLib.logic import (  # noqa: E402
    CANCELLED,
    FAILED,
    CTSuperResolutionLogicBase,
)
from mrml_scene import add_node, provenance, volume_from_node, volume_nodes  # noqa: E402
from processes import has_exited, wait_for_exit  # noqa: E402


def wait_for_progress(job, timeout=60):
    deadline = time.monotonic() + timeout
    while job.lastProgress is None:
        assert not job.poll(), job.errorMessage
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.fixture(scope="module")
def oblique_crop(oblique_sample) -> Volume:
    """24 x 20 x 16 voxels of the real sample on an oblique, anisotropic, offset grid."""
    return Volume(oblique_sample.array[24:40, 22:42, 20:44], oblique_sample.ijk_to_ras)


def test_process_returns_the_hr_node_with_the_engines_geometry(scene, oblique_crop, tmp_path):
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "placement")
    node = add_node(scene, oblique_crop)
    node.SetAndObserveTransformNodeID(transform.GetID())
    node.GetDisplayNode().SetAutoWindowLevel(False)
    node.GetDisplayNode().SetWindowLevel(1500, -600)
    received = []

    out = CTSuperResolutionLogicBase().process(node, scale=2, method="trilinear",
                                               progressCallback=received.append)

    assert out.GetName() == "CT_SRx2" and out.GetScene() is scene
    expected = upsample_interpolate(oblique_crop, (2, 2, 2), "trilinear")
    matrix, shape = hr_grid(oblique_crop.ijk_to_ras, oblique_crop.shape_ijk, (2, 2, 2))
    got = volume_from_node(out)
    assert got.shape_ijk == shape == (48, 40, 32)
    np.testing.assert_allclose(got.ijk_to_ras, matrix, atol=1e-5)
    np.testing.assert_allclose(got.array, expected.array, atol=1e-3)
    # the input's own grid is untouched and LR voxel 0 is the centre of HR voxels 0..1
    np.testing.assert_allclose(nodes.ijk_to_ras(node), oblique_crop.ijk_to_ras)
    np.testing.assert_allclose(got.ijk_to_ras @ [0.5, 0.5, 0.5, 1], oblique_crop.ijk_to_ras @ [0, 0, 0, 1], atol=1e-5)
    # shown like the input, in the same place
    assert out.GetTransformNodeID() == transform.GetID()
    assert (out.GetDisplayNode().GetWindow(), out.GetDisplayNode().GetLevel()) == (1500, -600)
    info = provenance(out)
    assert info["method"] == "trilinear" and info["scale"] == "2" and info["input"] == "CT"
    assert {"seed", "version", "duration_s", "model", "wall_time_s"} <= set(info)
    assert [e["event"] for e in received][-1] == "result"
    assert list(Path(tempfile.tempdir).iterdir()) == []  # temporary files removed


def test_through_plane_only_scales_the_slice_axis(scene, sample):
    thick = Volume.from_spacing(sample.array[:12, :16, :16], (0.7, 0.7, 3.0), (5.0, -7.0, 30.0))
    node = add_node(scene, thick, "thick")
    out = CTSuperResolutionLogicBase().process(node, scale=4, method="trilinear", throughPlaneOnly=True)
    assert out.GetName() == "thick_SRx1x1x4"
    got = volume_from_node(out)
    assert got.shape_ijk == (16, 16, 48)
    np.testing.assert_allclose(got.spacing, (0.7, 0.7, 0.75))


def test_an_existing_output_node_is_filled(scene, oblique_crop):
    node = add_node(scene, oblique_crop)
    target = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "mine")
    out = CTSuperResolutionLogicBase().process(node, target, scale="1x2x1", method="cubic")
    assert out is target and len(volume_nodes(scene)) == 2
    assert volume_from_node(target).shape_ijk == (24, 40, 16)


def test_cancel_mid_run_leaves_no_node_no_process_no_files(scene, sample):
    node = add_node(scene, sample)
    job = CTSuperResolutionLogicBase().process(node, scale=4, method="cubic", wait=False)
    wait_for_progress(job)
    assert re.search(r"^\S.*\(elapsed \d+:\d\d", job.statusText), job.statusText
    job.cancel()
    assert job.state == CANCELLED and job.outputVolume is None
    assert volume_nodes(scene) == [node]
    assert has_exited(job.process.pid)
    assert list(Path(tempfile.tempdir).iterdir()) == []
    assert job.poll() is True and job.state == CANCELLED  # polling afterwards changes nothing


def test_a_worker_crash_is_one_error_and_leaves_nothing(scene, sample):
    node = add_node(scene, sample)
    job = CTSuperResolutionLogicBase().process(node, scale=4, method="cubic", wait=False)
    wait_for_progress(job)
    os.kill(job.process.pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    job.wait(timeout=60)
    assert job.state == FAILED
    assert "exit status -9" in job.errorMessage and "\n" not in job.errorMessage
    assert volume_nodes(scene) == [node]
    assert list(Path(tempfile.tempdir).iterdir()) == []


def test_a_worker_user_error_reaches_the_caller_as_one_sentence(scene, oblique_crop):
    node = add_node(scene, oblique_crop)
    with pytest.raises(UserError, match=r"does not support the options \['no_such_option'\]"):
        CTSuperResolutionLogicBase().process(node, scale=2, method="trilinear",
                                             options={"no_such_option": 1})
    assert volume_nodes(scene) == [node]
    assert list(Path(tempfile.tempdir).iterdir()) == []


def test_a_callback_that_raises_cancelled_cancels_the_job(scene, sample):
    node = add_node(scene, sample)

    def stop(event):
        if event["event"] == "progress":
            raise Cancelled("user pressed stop")

    with pytest.raises(Cancelled):
        CTSuperResolutionLogicBase().process(node, scale=4, method="cubic", progressCallback=stop)
    assert volume_nodes(scene) == [node]
    assert list(Path(tempfile.tempdir).iterdir()) == []
    # Not blocking: the exception does not escape poll(); the job ends cancelled.
    job = CTSuperResolutionLogicBase().process(node, scale=4, method="cubic", progressCallback=stop, wait=False)
    job.wait(timeout=60)
    assert job.state == CANCELLED and volume_nodes(scene) == [node]
    assert list(Path(tempfile.tempdir).iterdir()) == []


@pytest.mark.parametrize("make, kwargs, phrase", [
    (lambda s: s.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "seg"), {}, "not a scalar volume"),
    (lambda s: s.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty"), {}, "has no voxels"),
    (None, {"method": "magic"}, "unknown method 'magic'"),
    (None, {"scale": "0"}, "is not valid"),
    (None, {"device": "tpu"}, "device 'tpu'"),
    (None, {"seed": -1}, "whole number from 0 up, not -1"),
    (None, {"seed": 1.5}, "whole number from 0 up, not 1.5"),
    (None, {"scale": "1x1x4", "throughPlaneOnly": True}, "one factor"),
    (None, {"wait": False, "timeout": 5}, "timeout applies with wait=True"),
    (None, {"lrModel": "gauss"}, "is not an LR profile"),
    (lambda s: s.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ct"),
     {"outputVolume": "label"}, "the output seg is not a scalar volume"),
])
def test_bad_requests_fail_before_any_work(scene, oblique_crop, make, kwargs, phrase):
    node = make(scene) if make else add_node(scene, oblique_crop)
    if make and node.IsA("vtkMRMLLabelMapVolumeNode"):
        slicer.util.updateVolumeFromArray(node, np.zeros((4, 4, 4), np.int16))
    if kwargs.get("outputVolume") == "label":
        slicer.util.updateVolumeFromArray(node, np.zeros((4, 4, 4), np.int16))
        kwargs = {"outputVolume": scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "seg")}
    with pytest.raises(UserError, match=phrase):
        CTSuperResolutionLogicBase().process(node, **kwargs)
    assert list(Path(tempfile.tempdir).iterdir()) == []


def test_output_must_differ_from_input(scene, oblique_crop):
    node = add_node(scene, oblique_crop)
    with pytest.raises(UserError, match="must differ"):
        CTSuperResolutionLogicBase().process(node, node)


def test_node_volume_round_trip_is_exact(scene, oblique_sample):
    node = add_node(scene, oblique_sample)
    back = volume_from_node(node)
    assert back.same_grid(oblique_sample, tol=1e-9)
    np.testing.assert_array_equal(back.array, oblique_sample.array)
    np.testing.assert_allclose(node.GetSpacing(), oblique_sample.spacing)
    np.testing.assert_allclose(node.GetOrigin(), oblique_sample.origin)


@pytest.mark.parametrize("spacing, axis, thick, factors", [
    ((0.7, 0.7, 5.0), 2, True, (1, 4)), ((3.0, 0.8, 0.8), 0, True, (1, 4)), ((1.0, 1.0, 1.0), 2, False, (2, 2)),
    ((0.5, 2.0, 2.0), 2, True, (1, 4)), ((0.957, 0.957, 1.5), 2, False, (2, 2)), ((3.05, 3.05, 10.0), 2, True, (2, 4)),
    ((1.0, 2.5, 1.0), 1, True, (1, 2))])
def test_the_panel_factors_go_on_the_slice_axis_and_the_two_in_plane_ones(spacing, axis, thick, factors):
    assert slice_axis_of_spacing(spacing) == axis
    assert is_thick_slice(spacing) is thick
    expected = [1, 1, 1]
    expected[axis] = 8
    assert jobs.resolve_scale(8, spacing, through_plane_only=True) == tuple(expected)
    assert jobs.panel_scale(1, 8, spacing) == tuple(expected)
    assert jobs.resolve_scale(8, spacing) == (8, 8, 8) == jobs.panel_scale(8, 8, spacing)
    mixed = jobs.panel_scale(2, 4, spacing)
    assert mixed[axis] == 4 and sorted(mixed) == [2, 2, 4] and slice_axis(mixed) == axis
    # A newly selected input: x2 everywhere, or across thick slices (and in-plane too for coarse pixels).
    assert jobs.factors_for_input(spacing) == factors


def test_the_panel_refuses_no_scale_at_all_in_one_sentence():
    with pytest.raises(UserError, match="choose a scale above 1 in-plane, across the slices, or both"):
        jobs.panel_scale(1, 1, (1.0, 1.0, 1.0))


def test_the_console_takes_scale_auto_and_the_panel_starts_from_the_same_choice(scene, sample):
    thick = Volume.from_spacing(sample.array[:12, :16, :16], (0.7, 0.7, 5.0), (5.0, -7.0, 30.0))
    node = add_node(scene, thick, "thick")
    out = CTSuperResolutionLogicBase().process(node, scale="auto", method="cubic")
    assert out.GetName() == "thick_SRx1x1x4" and volume_from_node(out).shape_ijk == (16, 16, 48)
    assert jobs.panel_scale(*jobs.factors_for_input(node.GetSpacing()), node.GetSpacing()) == (1, 1, 4)


def test_large_pixels_with_thick_slices_across_i_are_scaled_as_the_panel_says(scene, sample):
    """The panel's in-plane x2 and across-slices x4 on a scan whose thick axis is I (3 x 1.5 x 1.5
    mm): the engine runs it with that axis as z and turns it back."""
    thick = Volume.from_spacing(sample.array[:12, :16, :16], (3.0, 1.5, 1.5), (5.0, -7.0, 30.0))
    node = add_node(scene, thick, "coarse")
    scale = jobs.panel_scale(2, 4, node.GetSpacing())
    assert scale == (4, 2, 2)
    out = CTSuperResolutionLogicBase().process(node, scale=scale, method="fast")
    assert out.GetName() == "coarse_SRx4x2x2"
    got = volume_from_node(out)
    assert got.shape_ijk == (64, 32, 24)  # the array is KJI: 12 x 16 x 16 is 16 x 16 x 12 in IJK
    np.testing.assert_allclose(got.spacing, (0.75, 0.75, 0.75))
    info = provenance(out)
    assert info["scale"] == "4x2x2" and info["slice_axis"] == "x (run as z)"


def test_events_parsing_and_status_text():
    assert events.parse_line("   \n") is None
    assert events.parse_line("some library chatter") == {"event": "log", "message": "some library chatter"}
    assert events.parse_line('[1, 2]')["event"] == "log"
    assert events.parse_line('{"event": "banana"}')["event"] == "log"
    line = '{"event": "progress", "stage": "fit", "fraction": 0.25, "message": "step 5", "elapsed": 75.2, "eta": 3725}'
    event = events.parse_line(line)
    assert events.percent(event) == 25
    assert events.status_text(event) == "fit: step 5 (elapsed 1:15, about 1:02:05 left)"
    assert events.status_text({**event, "eta": None}) == "fit: step 5 (elapsed 1:15)"


def test_dependencies_never_touch_what_slicer_ships_and_spot_what_is_missing():
    assert dependencies.missing_requirements(["numpy>=999", "scipy>=999", "SimpleITK>=999", "vtk>=999"]) == []
    assert dependencies.missing_requirements(["tqdm>=1.0"]) == []
    assert dependencies.missing_requirements(["tqdm>=999", "surely-not-a-package-ctsr"]) == \
        ["tqdm>=999", "surely-not-a-package-ctsr"]


def test_requirements_file_matches_the_engines_dependencies():
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    engine = {dependencies.requirement_name(r) for r in project["dependencies"]}
    listed = {dependencies.requirement_name(r)
              for r in dependencies.read_requirements(REPO / "Resources" / "requirements.txt")}
    assert listed == engine - dependencies.SHIPPED_WITH_SLICER


def test_loading_the_module_layer_does_not_import_the_heavy_packages():
    """Slicer imports the module at startup, before the first-use installation of torch (and
    the prior's packages) could run: the engine must import them lazily."""
    import subprocess

    code = ("import sys; sys.path.insert(0, sys.argv[1]); import CTSuperResolutionLib.logic; "
            "heavy = sorted(m for m in ('torch', 'diffusers', 'tqdm', 'safetensors') if m in sys.modules); "
            "print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code, str(REPO / "CTSuperResolution")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


class DicomDatabaseStandIn:
    """Slicer's ctkDICOMDatabase cannot exist without the application: the two calls the module
    makes, answering for one instance."""

    def __init__(self, uid, thickness):
        self.uid, self.thickness = uid, thickness

    def fileForInstance(self, uid):
        return f"/dicom/{uid}.dcm" if uid == self.uid else ""

    def fileValue(self, path, tag):
        return self.thickness if path == f"/dicom/{self.uid}.dcm" and tag == "0018,0050" else ""


def test_the_lr_model_comes_from_the_dicom_database_and_is_recorded_on_the_node(scene, sample, monkeypatch):
    thick = Volume.from_spacing(sample.array[:12, :32, :32], (0.7, 0.7, 3.0), (5.0, -7.0, 30.0))
    node = add_node(scene, thick, "thick")
    assert nodes.dicom_slice_thickness(node, DicomDatabaseStandIn("1.2.3", "4.5")) is None  # not from DICOM
    node.SetAttribute("DICOM.instanceUIDs", "1.2.3 1.2.4")
    assert nodes.dicom_slice_thickness(node, DicomDatabaseStandIn("1.2.3", "4.5")) == 4.5
    assert nodes.dicom_slice_thickness(node, DicomDatabaseStandIn("1.2.3", "")) is None
    monkeypatch.setattr(slicer, "dicomDatabase", DicomDatabaseStandIn("1.2.3", "4.5"), raising=False)
    out = CTSuperResolutionLogicBase().process(node, scale=2, method="fast", throughPlaneOnly=True)
    info = provenance(out)
    assert info["lrModel"].startswith("z=slab:4.5mm") and "SliceThickness (0018,0050) 4.5 mm" in info["lrModelSource"]
    assert float(info["lrNoiseHU"]) >= 0 and float(info["lrResidualHU"]) >= 0
    given = CTSuperResolutionLogicBase().process(node, scale=2, method="fast", throughPlaneOnly=True,
                                                 lrModel="z=box,noise:3")
    assert provenance(given)["lrModel"] == "z=box,noise:3"
    assert provenance(given)["lrModelSource"] == "z: given; noise: given"


def test_request_cancel_returns_at_once_and_polling_finishes_the_job(scene, sample):
    """The panel's Cancel: it only asks (the job runs on until polled, nothing is waited for);
    the following polls end the job."""
    node = add_node(scene, sample)
    job = CTSuperResolutionLogicBase().process(node, scale=4, method="cubic", wait=False)
    wait_for_progress(job)
    job.requestCancel()
    assert job.state == "running" and job.process.returncode is None
    deadline = time.monotonic() + 15
    while not job.poll():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert job.state == CANCELLED and job.outputVolume is None and volume_nodes(scene) == [node]
    assert has_exited(job.process.pid)
    assert list(Path(tempfile.tempdir).iterdir()) == []


def test_while_cancelling_the_status_says_so(scene, sample):
    node = add_node(scene, sample)
    job = CTSuperResolutionLogicBase().process(node, scale=4, method="cubic", wait=False)
    wait_for_progress(job)
    assert not job.statusText.startswith("cancelling")
    job.requestCancel()
    job.poll()
    assert job.statusText.startswith("cancelling")  # the panel's tick shows this, not the last stage
    assert job.cancelRequested  # the panel keeps Cancel disabled meanwhile
    job.wait(timeout=30)
    assert job.state == CANCELLED and not job.cancelRequested


@pytest.mark.skipif(os.name == "nt", reason="POSIX process groups")
def test_a_job_whose_worker_is_stopped_at_exit_ends_cancelled_not_failed(scene, sample):
    """stop_all_workers (Slicer closing, the module reloaded) kills a console job's worker: the
    job says cancelled, not that the system ran out of memory."""
    from CTSuperResolutionLib.runner import stop_all_workers

    node = add_node(scene, sample)
    job = CTSuperResolutionLogicBase().process(node, scale=4, method="cubic", wait=False)
    wait_for_progress(job)
    stop_all_workers()
    job.wait(timeout=30)
    assert job.state == CANCELLED and volume_nodes(scene) == [node]
    assert list(Path(tempfile.tempdir).iterdir()) == []


@pytest.mark.parametrize("removed", ["input", "chosen output"])
def test_a_node_removed_while_the_job_runs_fails_in_one_sentence_and_adds_nothing(scene, oblique_crop, removed):
    node = add_node(scene, oblique_crop)
    given = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "given")
    job = CTSuperResolutionLogicBase().process(node, given, scale=2, method="cubic", wait=False)
    scene.RemoveNode(node if removed == "input" else given)
    job.wait(timeout=60)
    assert job.state == FAILED and job.outputVolume is None
    assert job.errorMessage.startswith(f"the {removed} volume") and "removed from the scene" in job.errorMessage
    assert len(volume_nodes(scene)) == 1
    assert list(Path(tempfile.tempdir).iterdir()) == []


def test_the_interpolation_baselines_need_none_of_the_packages_slicer_lacks(scene, oblique_crop, monkeypatch,
                                                                              tmp_path):
    """cubic asks for no installation, and the engine runs it (``ctsr upsample``, the worker's
    imports) with torch, diffusers, numba, safetensors and tqdm unimportable (as in a Slicer
    where they were never installed)."""
    import subprocess

    def refuse():
        raise AssertionError("a baseline asked for the zero-shot packages")

    monkeypatch.setattr(CTSuperResolutionLogicBase, "ensureDependencies", lambda self: refuse())
    out = CTSuperResolutionLogicBase().process(add_node(scene, oblique_crop), scale=2, method="cubic")
    np.testing.assert_allclose(volume_from_node(out).array,
                               upsample_interpolate(oblique_crop, (2, 2, 2), "cubic").array, atol=1e-3)
    code = ("import sys, importlib.abc\n"
            "class Refuse(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'diffusers', 'numba', 'safetensors', 'tqdm'):\n"
            "            raise ImportError(name + ' is not installed')\n"
            "sys.meta_path.insert(0, Refuse())\n"
            "from ctsr.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    from ctsr.io import write_volume

    write_volume(oblique_crop, tmp_path / "in.nrrd")
    done = subprocess.run([sys.executable, "-c", code, "upsample", str(tmp_path / "in.nrrd"), str(tmp_path / "out.nrrd"),
                           "--method", "cubic", "--scale", "2", "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "out.nrrd").is_file()


def _worker_with_a_child(ignore_sigterm: bool):
    """A real process tree: a Python that starts a sleeping child and prints its pid."""
    from CTSuperResolutionLib.runner import WorkerProcess

    code = ("import signal, subprocess, sys, time\n"
            + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_sigterm else "")
            + "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "print('{\"event\": \"log\", \"message\": \"%d\"}' % child.pid, flush=True)\n"
            "time.sleep(60)\n")
    worker = WorkerProcess([sys.executable, "-c", code])
    deadline = time.monotonic() + 10
    events = []
    while not events:
        events = worker.read_events()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return worker, int(events[0]["message"])


@pytest.mark.skipif(os.name == "nt", reason="POSIX process groups")
def test_a_worker_that_ignores_sigterm_is_killed_with_its_children_after_the_grace_period():
    worker, child = _worker_with_a_child(ignore_sigterm=True)
    worker.request_stop(grace_s=0.3)
    assert not worker.enforce_stop()  # still in its grace period
    deadline = time.monotonic() + 5
    while not worker.enforce_stop():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert wait_for_exit(worker.pid, 5.0) and wait_for_exit(child, 5.0)


@pytest.mark.skipif(os.name == "nt", reason="POSIX process groups")
def test_workers_still_running_are_stopped_when_python_exits():
    """What atexit runs when Slicer closes: every running worker tree is killed."""
    from CTSuperResolutionLib.runner import stop_all_workers

    worker, child = _worker_with_a_child(ignore_sigterm=False)
    stop_all_workers()
    assert wait_for_exit(worker.pid, 5.0) and wait_for_exit(child, 5.0)


def test_the_input_is_written_in_its_own_voxel_type(scene, sample, tmp_path):
    import SimpleITK as sitk

    from ctsr.io import read_volume

    node = add_node(scene, sample)
    slicer.util.updateVolumeFromArray(node, sample.array.astype(np.int16))
    nodes.write_node(node, tmp_path / "input.nrrd")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(tmp_path / "input.nrrd"))
    reader.ReadImageInformation()
    assert reader.GetPixelID() == sitk.sitkInt16
    back = read_volume(tmp_path / "input.nrrd")
    np.testing.assert_allclose(back.ijk_to_ras, sample.ijk_to_ras, atol=1e-6)
    np.testing.assert_array_equal(back.array, sample.array.astype(np.int16))


def _failing_starts(monkeypatch, scene, sample):
    """The ways starting a job fails for a user, each made real where it can be."""
    import subprocess

    from CTSuperResolutionLib import engine, logic

    label = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    slicer.util.updateVolumeFromArray(label, np.zeros((4, 4, 4), np.int16))
    node = add_node(scene, sample)

    def declined(self):
        raise UserError("the required Python packages were not installed: torch>=2.1.")

    def pip_failed(self):
        raise subprocess.CalledProcessError(1, ["python", "-m", "pip", "install", "torch>=2.1"])

    def no_python():
        return "/nonexistent/PythonSlicer"

    yield "unsupported node", lambda: CTSuperResolutionLogicBase().process(label, method="cubic", wait=False)
    for name, patch in (("declined", declined), ("pip failed", pip_failed)):
        with monkeypatch.context() as m:
            m.setattr(logic.CTSuperResolutionLogicBase, "ensureDependencies", patch)
            yield name, lambda: CTSuperResolutionLogicBase().process(node, method="fast", wait=False)
    with monkeypatch.context() as m:
        m.setattr(engine, "python_executable", no_python)
        yield "no worker", lambda: CTSuperResolutionLogicBase().process(node, method="cubic", wait=False)


def test_every_failure_of_a_user_action_reaches_the_error_display(scene, sample, monkeypatch):
    from CTSuperResolutionLib.panel import run_action

    expected = {"unsupported node": "not a scalar volume", "declined": "were not installed",
                "pip failed": "failed (exit status 1)", "no worker": "FileNotFoundError"}
    before = volume_nodes(scene)
    for name, start in _failing_starts(monkeypatch, scene, sample):
        shown = []
        assert run_action(start, shown.append, "Could not start the super-resolution") is None
        assert len(shown) == 1 and "\n" not in shown[0] and expected[name] in shown[0], (name, shown)
        assert list(Path(tempfile.tempdir).iterdir()) == []  # no half-made job folder
    assert len(volume_nodes(scene)) == len(before) + 2  # the label map and the CT the cases made, no output


def test_the_install_plan_sends_torch_to_the_pytorch_extension_and_lists_upgrades():
    import importlib.metadata as md

    pytest_version = md.version("pytest")
    plan = dependencies.plan_installation(["torch>=999", "pytest>=999", "numpy>=999", "scipy>=1.0",
                                           "surely-not-installed-ctsr>=1"])
    assert plan.torch == "torch>=999"  # too old here: an upgrade, through the PyTorch extension
    assert plan.pip == ["pytest>=999", "surely-not-installed-ctsr>=1"]  # numpy ships with Slicer: never
    text = plan.describe().splitlines()
    assert text[0].startswith("torch>=999 (upgrade from ") and "PyTorch extension" in text[0]
    assert text[1] == f"pytest>=999 (upgrade from {pytest_version}, with pip)"
    assert text[2] == "surely-not-installed-ctsr>=1 (with pip)"
    assert dependencies.plan_installation(["scipy>=1.0"]).empty
    assert dependencies.torch_version_requirement("torch>=2.1") == ">=2.1"
    assert dependencies.torch_version_requirement("torch") is None


def test_pip_ensure_is_imported_explicitly_or_absent():
    """slicer-core has neither slicer.pydeps nor slicer.packaging: the fallback is taken."""
    found = dependencies.find_pip_ensure()
    for name in ("slicer.pydeps", "slicer.packaging"):
        try:
            module = __import__(name, fromlist=["pip_ensure"])
        except ImportError:
            continue
        assert found is getattr(module, "pip_ensure", found)
        return
    assert found is None


def test_pip_ensure_is_called_as_its_signature_wants():
    """The two signatures Slicer has shipped (stand-ins: the functions need the application)."""
    from packaging.requirements import Requirement

    calls = []

    def newer(requirements: "list[Requirement]", constraints=None, prompt_install=True, requester=None):
        calls.append((requirements, prompt_install, requester))

    def older(requirements, prompt=True):
        calls.append((requirements, prompt, None))

    dependencies.call_pip_ensure(newer, ["scipy>=1.10"], "CT Super-Resolution")
    dependencies.call_pip_ensure(older, ["scipy>=1.10"], "CT Super-Resolution")
    assert calls[0] == ([Requirement("scipy>=1.10")], False, "CT Super-Resolution")
    assert calls[1] == (["scipy>=1.10"], False, None)


def test_a_job_removes_the_folders_a_dead_slicer_left_days_ago_and_no_other(scene, oblique_crop):
    """Slicer killed mid-job leaves its job folder; a later job removes it once it is two days
    old, never a recent one (another Slicer's running job) nor anything else there."""
    from CTSuperResolutionLib.logic import STALE_WORK_FOLDER_S, WORK_FOLDER_PREFIX

    temp = Path(tempfile.tempdir)
    old, recent, other = temp / (WORK_FOLDER_PREFIX + "old"), temp / (WORK_FOLDER_PREFIX + "recent"), temp / "other"
    for path in (old, recent, other):
        path.mkdir()
        (path / "input.nrrd").write_bytes(b"x")
    days_ago = time.time() - STALE_WORK_FOLDER_S - 60
    for path in (old, other):
        os.utime(path, (days_ago, days_ago))
    CTSuperResolutionLogicBase().process(add_node(scene, oblique_crop), scale=2, method="trilinear")
    assert sorted(p.name for p in temp.iterdir()) == sorted([recent.name, other.name])

