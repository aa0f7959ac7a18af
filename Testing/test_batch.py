"""``ctsr batch``: a cohort of real scans, locally and on Ray started inside the test; a bad
scan is reported and never stops the others, nor does a scan whose worker process dies; an
interrupted or cancelled run resumes without redoing finished scans."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from ctsr.batch import (BatchOptions, Scan, ScanRecord, find_scans, is_complete, local_workers, read_manifest, run_batch,
                        run_scan, scan_memory_bytes, sidecar_path)
from ctsr.errors import UserError
from ctsr.io import read_volume, write_volume
from ctsr.volume import Volume


def _cohort(folder: Path, sample) -> Path:
    """Three small real scans (crops of the bundled chest CT, one in a subfolder) and one bad file."""
    (folder / "sub").mkdir(parents=True)
    for i, start in enumerate((0, 16, 32)):
        crop = Volume(sample.array[start:start + 32, start:start + 32, :32], sample.ijk_to_ras)
        write_volume(crop, folder / ("sub" if i == 2 else "") / f"scan{i}.nrrd")
    (folder / "broken.nii.gz").write_text("not an image")
    (folder / "notes.txt").write_text("not a scan either, and not taken for one")
    return folder


def _cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "ctsr.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, **kwargs)


def test_a_folder_runs_locally_the_bad_scan_is_reported_and_the_rest_done(tmp_path, sample):
    cohort = _cohort(tmp_path / "cohort", sample)
    run = _cli("batch", cohort, tmp_path / "out", "--workers", "2", "--method", "fast", "--quiet")
    assert run.returncode == 5, run.stderr  # some failed
    with open(tmp_path / "out" / "batch_report.csv", newline="") as handle:
        rows = {row["name"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"broken.nii.gz", "scan0.nrrd", "scan1.nrrd", "sub/scan2.nrrd"}
    assert rows["broken.nii.gz"]["status"] == "failed" and "not a readable image" in rows["broken.nii.gz"]["reason"]
    for name in ("scan0.nrrd", "scan1.nrrd", "sub/scan2.nrrd"):
        assert rows[name]["status"] == "done" and float(rows[name]["lr_residual_hu"]) >= 0
        out = read_volume(rows[name]["output"])
        assert out.shape_ijk == (64, 64, 64)
        sidecar = json.loads(sidecar_path(rows[name]["output"]).read_text())
        assert sidecar["provenance"]["lr_model"]["model"] and sidecar["options"]["method"] == "fast"
    assert (tmp_path / "out" / "sub" / "scan2.nrrd").exists()  # the tree is mirrored
    assert "1 failed" in (tmp_path / "out" / "batch_report.md").read_text()
    assert not (tmp_path / "out" / "broken.nrrd").exists()


def test_auto_gives_each_scan_of_a_cohort_the_scale_its_spacing_calls_for(tmp_path, sample):
    """A thin-slice scan and a thick-slice one in one folder, ``--scale auto``: x2 everywhere for
    the first, x4 across the slices only for the second, each recorded in its sidecar."""
    crop = sample.array[:16, :24, :24]
    (tmp_path / "in").mkdir()
    write_volume(Volume.from_spacing(crop, (1.0, 1.0, 1.0)), tmp_path / "in" / "thin.nrrd")
    write_volume(Volume.from_spacing(crop, (0.7, 0.7, 5.0)), tmp_path / "in" / "thick.nrrd")
    run = _cli("batch", tmp_path / "in", tmp_path / "out", "--scale", "auto", "--method", "cubic", "--quiet")
    assert run.returncode == 0, run.stderr
    for name, shape, scale in (("thin", (48, 48, 32), "2"), ("thick", (24, 24, 64), "1x1x4")):
        assert read_volume(tmp_path / "out" / f"{name}.nrrd").shape_ijk == shape
        sidecar = json.loads(sidecar_path(tmp_path / "out" / f"{name}.nrrd").read_text())
        assert sidecar["provenance"]["scale"] == scale and sidecar["options"]["scale"] == "auto"
    refused = _cli("batch", tmp_path / "in", tmp_path / "out2", "--scale", "automatic", "--quiet")
    assert refused.returncode == 2 and "is not a number like 2" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "out2").exists()


def test_an_interrupted_manifest_run_resumes_without_redoing_finished_scans(tmp_path, sample):
    """The manifest form, killed mid-way (SIGKILL to the whole process group, as an OOM
    killer or a lost node would), then run again: finished scans keep their sidecars."""
    scans = tmp_path / "scans"
    scans.mkdir()
    small = lambda i: Volume(sample.array[i:i + 32, i:i + 32, :32], sample.ijk_to_ras)
    write_volume(small(0), scans / "a.nrrd")
    write_volume(small(8), scans / "b.nrrd")
    write_volume(sample, scans / "big.nrrd")  # x4: seconds, so the kill lands while it runs
    write_volume(small(16), scans / "d.nrrd")
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("input,output,scale\nscans/a.nrrd,out/a.nrrd,2\nscans/b.nrrd,out/b.nrrd,\n"
                        "scans/big.nrrd,out/big.nrrd,4\nscans/d.nrrd,out/d.nrrd,2\n")
    command = [sys.executable, "-m", "ctsr.cli", "batch", str(manifest), str(tmp_path / "out"), "--workers", "1",
               "--method", "fast", "--quiet"]
    first = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not sidecar_path(tmp_path / "out" / "b.nrrd").exists():
        assert first.poll() is None and time.monotonic() < deadline, "the batch ended before it could be killed"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    finished = {p.name: p.read_text() for p in (tmp_path / "out").glob("*.json")}
    assert set(finished) >= {"a.nrrd.json", "b.nrrd.json"} and "d.nrrd.json" not in finished
    assert not list((tmp_path / "out").glob("*.tmp*"))  # nothing half-written is left
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    for name, text in finished.items():
        assert (tmp_path / "out" / name).read_text() == text  # same sidecar: not redone
    with open(tmp_path / "out" / "batch_report.csv", newline="") as handle:
        status = {row["name"]: row["status"] for row in csv.DictReader(handle)}
    assert {status[f"scans/{n}.nrrd"] for n in ("a", "b")} == {"skipped"}
    assert status["scans/d.nrrd"] == "done" and status["scans/big.nrrd"] in ("done", "skipped")
    assert read_volume(tmp_path / "out" / "big.nrrd").shape_ijk == (256, 256, 256)


def test_options_that_change_redo_the_scan_and_force_redoes_all(tmp_path, sample):
    scans = find_scans(_cohort(tmp_path / "cohort", sample), tmp_path / "out")
    good = [s for s in scans if not s.name.startswith("broken")]
    records = run_batch(good, BatchOptions(method="cubic"), tmp_path / "out", workers=1)
    assert [r.status for r in records] == ["done"] * 3
    assert all(is_complete(s, BatchOptions(method="cubic")) for s in good)
    assert not any(is_complete(s, BatchOptions(method="lanczos")) for s in good)
    assert [r.status for r in run_batch(good, BatchOptions(method="cubic"), tmp_path / "out", workers=1)] == ["skipped"] * 3
    assert [r.status for r in run_batch(good, BatchOptions(method="cubic"), tmp_path / "out", workers=1,
                                        force=True)] == ["done"] * 3
    Path(good[0].output).write_bytes(b"truncated")  # an output that no longer matches its sidecar
    assert not is_complete(good[0], BatchOptions(method="cubic"))


def test_manifest_errors_are_one_sentence(tmp_path):
    (tmp_path / "m.csv").write_text("path,out\nx,y\n")
    with pytest.raises(UserError, match="input,output"):
        read_manifest(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("input,output\na.nrrd,o.nrrd\nb.nrrd,o.nrrd\n")
    with pytest.raises(UserError, match="would both be written to"):
        run_batch(read_manifest(tmp_path / "m.csv"), BatchOptions(method="cubic"))
    (tmp_path / "m.csv").write_text("input,output\na.nrrd,b.nrrd\nb.nrrd,c.nrrd\n")
    with pytest.raises(UserError, match="is the input b.nrrd"):
        run_batch(read_manifest(tmp_path / "m.csv"), BatchOptions(method="cubic"))
    assert not (tmp_path / "b.nrrd").exists() and not (tmp_path / "c.nrrd").exists()


def test_outputs_never_land_on_inputs_or_on_each_other_and_the_output_folder_is_not_searched(tmp_path, sample):
    cohort = tmp_path / "cohort"
    crop = Volume(sample.array[:16, :16, :16], sample.ijk_to_ras)
    cohort.mkdir()
    write_volume(crop, cohort / "a.nrrd")
    write_volume(crop, cohort / "a.mha")  # the same name in another format: both would be OUT/a.nrrd
    with pytest.raises(UserError, match="would both be written to"):
        run_batch(find_scans(cohort, tmp_path / "out"), BatchOptions(method="cubic"))
    with pytest.raises(UserError, match="is the input folder"):
        find_scans(cohort, cohort)
    (cohort / "a.mha").unlink()
    inside = cohort / "out"
    assert [r.status for r in run_batch(find_scans(cohort, inside), BatchOptions(method="cubic"), inside)] == ["done"]
    assert [s.name for s in find_scans(cohort, inside)] == ["a.nrrd"]  # out/a.nrrd is not taken for a scan
    # A DICOM series as the folder itself, and volume files beside a series in a subfolder.
    series = tmp_path / "series"
    (series / "more").mkdir(parents=True)
    for k in range(3):
        (series / f"slice{k}.dcm").write_bytes(b"")
        (series / "more" / f"slice{k}.dcm").write_bytes(b"")
    write_volume(crop, series / "more" / "beside.nrrd")
    found = {s.name: s.output for s in find_scans(series, tmp_path / "dcm_out")}
    assert found == {"series": str(tmp_path / "dcm_out" / "series.nrrd"),
                     "more": str(tmp_path / "dcm_out" / "more.nrrd"),
                     "more/beside.nrrd": str(tmp_path / "dcm_out" / "more" / "beside.nrrd")}


def test_a_reference_on_another_grid_leaves_the_scan_done_and_says_it_was_not_scored(tmp_path, sample):
    crop = Volume(sample.array[:16, :16, :16], sample.ijk_to_ras)
    write_volume(crop, tmp_path / "a.nrrd")
    scan = Scan("a.nrrd", str(tmp_path / "a.nrrd"), str(tmp_path / "out.nrrd"), reference=str(tmp_path / "a.nrrd"))
    record = run_scan(scan, BatchOptions(method="cubic", scale="2"))
    assert record.status == "done" and record.reason.startswith("not scored: the volumes have different sizes")
    assert read_volume(scan.output).shape_ijk == (32, 32, 32)
    assert "metrics_error" in json.loads(sidecar_path(scan.output).read_text())


CRASHED_ONCE = "crashed-once"


def crash_once_then_run(scan, options, threads):
    """A Ray task body that kills its own worker process the first time it sees scan1 (as the
    OOM killer would), then behaves as run_scan, its record also holding the resources Ray
    gave the task."""
    import ray

    marker = Path(scan.output).parent / CRASHED_ONCE
    if scan.name == "scan1.nrrd" and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(os.getpid()))
        os._exit(1)
    record = run_scan(scan, options, threads)
    record.details["ray_resources"] = ray.get_runtime_context().get_assigned_resources()
    return record


def test_the_same_folder_on_ray_retries_a_task_whose_worker_died(tmp_path, sample):
    """Each task also requests the memory the planner estimates for its scan (bytes)."""
    ray = pytest.importorskip("ray", reason="Ray is the optional extra ctsr[ray]")
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    scans = find_scans(_cohort(tmp_path / "cohort", sample), tmp_path / "out")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        records = run_batch(scans, BatchOptions(method="fast"), tmp_path / "out", engine="ray", runner=crash_once_then_run)
    finally:
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    status = {r.name: r.status for r in records}
    assert status == {"broken.nii.gz": "failed", "scan0.nrrd": "done", "scan1.nrrd": "done", "sub/scan2.nrrd": "done"}
    assert (tmp_path / "out" / CRASHED_ONCE).exists()  # it did die once, and was retried
    assert all(read_volume(r.output).shape_ijk == (64, 64, 64) for r in records if r.status == "done")
    requested = {r.name: r.details["ray_resources"] for r in records if r.status == "done"}
    assert {name: got["memory"] for name, got in requested.items()} == {
        s.name: scan_memory_bytes(s, BatchOptions(method="fast")) for s in scans if s.name in requested}
    assert all(got["CPU"] == 2 for got in requested.values())


def test_the_ray_engine_shows_none_of_rays_own_log_lines(tmp_path, sample, monkeypatch):
    """Such as its warning that token authentication is on (or off), which it gives when
    RAY_AUTH_MODE is unset (an earlier ray.init in this process sets it)."""
    pytest.importorskip("ray", reason="Ray is the optional extra ctsr[ray]")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    (tmp_path / "in").mkdir()
    write_volume(Volume(sample.array[:16, :16, :16], sample.ijk_to_ras), tmp_path / "in" / "a.nrrd")
    run = _cli("batch", tmp_path / "in", tmp_path / "out", "--engine", "ray", "--method", "cubic")
    assert run.returncode == 0, run.stderr
    assert "1 scans: 1 done" in run.stdout and "batch: 1/1 scans run, 0 failed" in run.stderr  # our progress stays
    assert "Token authentication" not in run.stderr + run.stdout and "WARNING" not in run.stderr, run.stderr


def report_the_visible_gpu(scan, options, threads):
    """A local-engine task body that waits until two workers hold a task (so both get one)
    and reports the GPU its worker was given."""
    meeting = Path(scan.output).parent / "workers"
    meeting.mkdir(parents=True, exist_ok=True)
    (meeting / str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(list(meeting.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    return ScanRecord(scan.name, scan.input, scan.output, "done", os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))


@pytest.mark.parametrize("inherited, expected", [(None, {"0", "1"}), ("5,7", {"5", "7"})])
def test_local_workers_are_one_per_gpu_each_seeing_only_its_own(tmp_path, monkeypatch, inherited, expected):
    """Two GPUs (their count stood in for: this machine has none): two workers, one GPU each,
    named as the parent's CUDA_VISIBLE_DEVICES names them."""
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    if inherited is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", inherited)
    scans = [Scan(f"s{i}", f"in{i}.nrrd", str(tmp_path / f"out{i}.nrrd")) for i in range(4)]
    options = BatchOptions(device="auto")
    assert local_workers(scans, options) == 2 and local_workers(scans[:1], options) == 1
    assert local_workers(scans, BatchOptions(device="cpu"), requested=3) == 3
    records = run_batch(scans, options, tmp_path, runner=report_the_visible_gpu)
    assert {r.reason for r in records} == expected


def test_local_workers_fit_the_scan_that_needs_most_memory_at_its_own_scale(tmp_path, sample, monkeypatch):
    """The free RAM is shared by the estimate of each scan at the scale it will run at: ``auto``
    on a 3 x 3 x 10 mm scan is 2x2x4 (16 times the voxels), a manifest's per-scan scale counts."""
    import ctsr.memory
    from ctsr.planning import SAFETY, estimate_bytes

    crop = sample.array  # 64^3: large enough for the voxels to count beside the fixed cost
    write_volume(Volume.from_spacing(crop, (3.0, 3.0, 10.0)), tmp_path / "coarse.nrrd")
    scans = [Scan("coarse.nrrd", str(tmp_path / "coarse.nrrd"), str(tmp_path / "out.nrrd"))]
    ram = 10 * estimate_bytes(crop.shape, (2, 2, 4), 0, 0) / SAFETY
    monkeypatch.setattr(ctsr.memory, "available_ram_bytes", lambda: ram)
    monkeypatch.setattr(os, "cpu_count", lambda: 256)
    many = scans * 40
    assert local_workers(many, BatchOptions(device="cpu", scale="auto")) == 10
    assert local_workers(many, BatchOptions(device="cpu", scale="2")) == int(
        SAFETY * ram // estimate_bytes(crop.shape, (2, 2, 2), 0, 0)) > 10
    per_scan = [replace(scans[0], scale="1x1x8")] * 40
    assert local_workers(per_scan, BatchOptions(device="cpu", scale="2")) == int(
        SAFETY * ram // estimate_bytes(crop.shape, (1, 1, 8), 0, 0))


def test_a_sidecar_that_cannot_be_written_fails_the_scan_and_a_rerun_redoes_it(tmp_path, sample, monkeypatch):
    import ctsr.io

    write_volume(Volume(sample.array[:16, :16, :16], sample.ijk_to_ras), tmp_path / "a.nrrd")
    scan = Scan("a.nrrd", str(tmp_path / "a.nrrd"), str(tmp_path / "out.nrrd"))
    real = ctsr.io.write_atomically

    def full_disk_for_sidecars(path, write):
        if str(path).endswith(".json"):
            raise OSError(28, "No space left on device")
        return real(path, write)

    monkeypatch.setattr(ctsr.io, "write_atomically", full_disk_for_sidecars)
    record = run_scan(scan, BatchOptions(method="cubic"))
    assert record.status == "failed" and "sidecar could not be (No space left on device)" in record.reason
    assert not is_complete(scan, BatchOptions(method="cubic"))


CULPRIT = "culprit.nrrd"


def kill_the_culprits_worker(scan, options, threads):
    """A local-engine task body: the scan named CULPRIT kills its own worker process with
    SIGKILL (as the OOM killer would) once another scan is in flight; another scan on its
    first try, while the culprit has not had two (also before its first has begun), stays in
    flight until its worker is stopped; else it runs as run_scan. Each try is logged in OUT/attempts/NAME."""
    attempts = Path(scan.output).parent / "attempts"
    attempts.mkdir(parents=True, exist_ok=True)
    with open(attempts / scan.name, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    tries = lambda name: len((attempts / name).read_text().split()) if (attempts / name).exists() else 0
    deadline = time.monotonic() + 120
    if scan.name == CULPRIT:
        while len(list(attempts.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)
    while tries(scan.name) == 1 and tries(CULPRIT) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    return run_scan(scan, options, threads)


def test_a_worker_that_dies_fails_its_scan_alone_and_the_scans_in_flight_with_it_run_again(tmp_path, sample):
    """Two workers: the culprit's worker dies while another scan is in flight; the pool is
    rebuilt, both run again alone (so the culprit is known), the culprit dies again and is the
    only failure, with how its worker ended; the scans after them run as usual."""
    names = ["a.nrrd", CULPRIT, "c.nrrd", "d.nrrd"]
    scans = []
    for i, name in enumerate(names):
        write_volume(Volume(sample.array[i:i + 16, :16, :16], sample.ijk_to_ras), tmp_path / name)
        scans.append(Scan(name, str(tmp_path / name), str(tmp_path / "out" / name)))
    records = run_batch(scans, BatchOptions(method="cubic"), tmp_path / "out", workers=2,
                        runner=kill_the_culprits_worker)
    assert {r.name: r.status for r in records} == {"a.nrrd": "done", CULPRIT: "failed", "c.nrrd": "done",
                                                   "d.nrrd": "done"}
    assert records[1].reason == "the worker running it died (killed by signal SIGKILL); re-run the batch to retry it."
    tries = {name: len((tmp_path / "out" / "attempts" / name).read_text().split()) for name in names}
    assert tries == {"a.nrrd": 2, CULPRIT: 2, "c.nrrd": 1, "d.nrrd": 1}
    with open(tmp_path / "out" / "batch_report.csv", newline="") as handle:
        assert {row["name"]: row["status"] for row in csv.DictReader(handle)} == {r.name: r.status for r in records}
    assert all(is_complete(s, BatchOptions(method="cubic")) for s in scans if s.name != CULPRIT)


def test_a_resumed_run_knows_its_inputs_however_their_paths_are_spelled(tmp_path, sample, monkeypatch):
    """Relative, then absolute, then through a symbolic link: the same files, nothing redone."""
    (tmp_path / "cohort").mkdir()
    for name in ("a.nrrd", "b.nrrd"):
        write_volume(Volume(sample.array[:16, :16, :16], sample.ijk_to_ras), tmp_path / "cohort" / name)
    monkeypatch.chdir(tmp_path)
    options = BatchOptions(method="cubic")
    first = run_batch(find_scans(Path("cohort"), Path("out")), options, Path("out"), workers=1)
    assert [r.status for r in first] == ["done"] * 2
    (tmp_path / "link").symlink_to(tmp_path / "cohort", target_is_directory=True)
    for spelling in (tmp_path / "cohort", tmp_path / "link"):
        again = run_batch(find_scans(spelling, tmp_path / "out"), options, tmp_path / "out", workers=1)
        assert [r.status for r in again] == ["skipped"] * 2, spelling


def test_each_sidecar_holds_the_peak_memory_of_its_own_scan(tmp_path, sample):
    """A large scan, then a small one in the same process: the small one's peak is its own,
    not the large one's still counted (the high-water mark restarts with each scan; Linux)."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("the peak memory of one scan is measured on Linux")
    write_volume(sample, tmp_path / "large.nrrd")
    write_volume(Volume(sample.array[:16, :16, :16], sample.ijk_to_ras), tmp_path / "small.nrrd")
    scans = [Scan("large.nrrd", str(tmp_path / "large.nrrd"), str(tmp_path / "out" / "large.nrrd"), scale="4"),
             Scan("small.nrrd", str(tmp_path / "small.nrrd"), str(tmp_path / "out" / "small.nrrd"))]
    large, small = run_batch(scans, BatchOptions(method="cubic"), tmp_path / "out", workers=1)
    assert large.status == small.status == "done"
    assert 0 < small.peak_rss_mb < large.peak_rss_mb - 100, (small.peak_rss_mb, large.peak_rss_mb)
    for record in (large, small):
        assert json.loads(sidecar_path(record.output).read_text())["peak_rss_mb"] == record.peak_rss_mb


def test_the_batch_module_imports_without_the_posix_only_resource_module():
    """As on Windows, where there is no ``resource``."""
    code = "import sys; sys.modules['resource'] = None; import ctsr.batch, ctsr.cli; print('imported')"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "imported" in run.stdout, run.stderr


def test_ctrl_c_stops_the_workers_quietly_and_says_which_scans_were_kept(tmp_path, sample):
    """SIGINT to the whole process group (Ctrl-C in a terminal) while two workers run: exit
    code 3, no worker traceback, and the message counts the finished scans, which are kept."""
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    write_volume(sample, cohort / "a_large.nrrd")  # x4: seconds, so Ctrl-C lands while it runs
    for i, name in enumerate(("b.nrrd", "c.nrrd", "d.nrrd")):
        write_volume(Volume(sample.array[i:i + 32, :32, :32], sample.ijk_to_ras), cohort / name)
    command = [sys.executable, "-m", "ctsr.cli", "batch", str(cohort), str(tmp_path / "out"), "--workers", "2",
               "--scale", "4", "--method", "fast", "--quiet"]
    batch = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "out").glob("*.json")):
        assert batch.poll() is None and time.monotonic() < deadline, "the batch ended before Ctrl-C"
        time.sleep(0.05)
    os.killpg(batch.pid, signal.SIGINT)
    out, err = batch.communicate(timeout=120)
    assert batch.returncode == 3, err
    assert "Traceback" not in err and "SpawnProcess" not in err, err
    kept = sorted(p.name for p in (tmp_path / "out").glob("*.json"))
    assert f"ctsr: error: cancelled; {len(kept)} of 4 scans are finished and kept ({len(kept)} of them in this run), " \
           f"the other {4 - len(kept)} were not written" in err, err
    assert 1 <= len(kept) < 4 and "a_large.nrrd.json" not in kept
    assert sorted(p.name for p in (tmp_path / "out").glob("*.nrrd")) == [k.removesuffix(".json") for k in kept]


def test_fewer_than_one_worker_is_refused_in_one_sentence(tmp_path, sample):
    (tmp_path / "in").mkdir()
    write_volume(Volume(sample.array[:16, :16, :16], sample.ijk_to_ras), tmp_path / "in" / "a.nrrd")
    refused = _cli("batch", tmp_path / "in", tmp_path / "out", "--workers", "-1")
    assert refused.returncode == 2 and refused.stderr.startswith("ctsr: error: --workers must be a whole number of "
                                                                 "at least 1, not -1;"), refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="at least 1, not 0"):
        run_batch(find_scans(tmp_path / "in", tmp_path / "out"), BatchOptions(method="cubic"), workers=0)
