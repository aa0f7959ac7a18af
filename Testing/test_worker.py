"""The background worker ``python -m ctsr.worker JOB.json``, run as a real subprocess on the
bundled real CT sample: its JSON-lines stream, its output (checked against the in-process
engine), its exit codes, and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ctsr.io import read_volume, write_volume
from ctsr.upsampling import upsample
from ctsr.volume import Volume
from processes import wait_for_exit

LOGIC = Path(__file__).resolve().parents[1] / "Logic"


def start_worker(job: dict, folder: Path) -> subprocess.Popen:
    path = folder / "job.json"
    path.write_text(json.dumps(job))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(LOGIC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "ctsr.worker", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def run_worker(job: dict, folder: Path, timeout: float = 120):
    process = start_worker(job, folder)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, [json.loads(line) for line in out.splitlines()], err


@pytest.fixture(scope="module")
def small_input(tmp_path_factory, oblique_sample) -> Path:
    """A 20 x 16 x 12 crop of the real sample with an oblique, anisotropic, offset grid."""
    crop = Volume(oblique_sample.array[20:32, 24:40, 22:42], oblique_sample.ijk_to_ras)
    return write_volume(crop, tmp_path_factory.mktemp("worker") / "lr.nrrd")


def test_worker_streams_json_and_writes_what_the_engine_computes(tmp_path, small_input):
    job = {"input": str(small_input), "output": str(tmp_path / "hr.nrrd"), "scale": "2x2x1",
           "method": "trilinear"}
    code, events, err = run_worker(job, tmp_path)
    assert code == 0, err
    assert [e["event"] for e in events][-1] == "result"
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0
    result = events[-1]
    assert result["output"] == job["output"] and result["shape_ijk"] == [40, 32, 12]
    assert result["provenance"]["method"] == "trilinear" and result["provenance"]["scale"] == "2x2x1"

    expected = upsample(read_volume(small_input), "2x2x1", "trilinear").volume
    written = read_volume(job["output"])
    assert written.same_grid(expected, tol=1e-5)
    np.testing.assert_allclose(written.array, expected.array, rtol=0, atol=1e-3)


def test_sigterm_stops_the_worker_with_no_output(tmp_path, sample):
    lr = write_volume(sample, tmp_path / "lr.nrrd")
    output = tmp_path / "out" / "hr.nrrd"
    output.parent.mkdir()
    # cubic x4 of the 64^3 sample: several seconds of work, so the signal lands mid-run.
    process = start_worker({"input": str(lr), "output": str(output), "scale": 4, "method": "cubic"}, tmp_path)
    for line in process.stdout:
        if json.loads(line)["event"] == "progress":
            break
    process.send_signal(signal.SIGTERM)
    rest, err = process.communicate(timeout=30)
    assert process.returncode == 3, err
    last = json.loads(rest.splitlines()[-1])
    assert last["event"] == "error" and last["kind"] == "cancelled"
    assert list(output.parent.iterdir()) == []  # no output, no temporary .part file


@pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                    reason="an orphan is noticed by its parent id changing; /proc tells when it is gone (Linux)")
@pytest.mark.parametrize("killed", ["parent", "watched"])
def test_a_worker_whose_starter_dies_stops_with_no_output(tmp_path, sample, killed):
    """Slicer killed mid-job: the worker (in its own session, so no signal reaches it) cancels
    itself, leaving no output, once its parent is gone ("parent"), or, where the Slicer module
    names Slicer's pid in CTSR_WATCH_PID, once that process is gone while the worker's parent
    (PythonSlicer's launcher) lives on ("watched")."""
    from ctsr.worker import WATCH_PID_VARIABLE

    lr = write_volume(sample, tmp_path / "lr.nrrd")
    output = tmp_path / "out" / "hr.nrrd"
    output.parent.mkdir()
    (tmp_path / "job.json").write_text(json.dumps({"input": str(lr), "output": str(output), "method": "balanced",
                                                   "options": {"pretrained": "none"}}))
    events = tmp_path / "events.jsonl"
    slicer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(LOGIC), os.environ.get("PYTHONPATH", "")])}
    if killed == "watched":
        env[WATCH_PID_VARIABLE] = str(slicer.pid)
    launcher = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        f"worker = subprocess.Popen([sys.executable, '-m', 'ctsr.worker', {str(tmp_path / 'job.json')!r}], "
        f"stdout=open({str(events)!r}, 'w'), start_new_session=True)\n"
        "print(worker.pid, flush=True)\n"
        "time.sleep(600)\n")], stdout=subprocess.PIPE, text=True, env=env)
    try:
        worker = int(launcher.stdout.readline())
        deadline = time.monotonic() + 120
        while '"progress"' not in (events.read_text() if events.exists() else ""):
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.1)
        (launcher if killed == "parent" else slicer).kill()
        assert wait_for_exit(worker, 60.0), "the worker is still running"
    finally:
        for process in (launcher, slicer):
            process.kill()
            process.wait()
    last = json.loads(events.read_text().splitlines()[-1])
    assert last["event"] == "error" and last["kind"] == "cancelled"
    assert list(output.parent.iterdir()) == []


@pytest.mark.parametrize("change, phrase", [
    ({"sacle": 2}, "unknown fields ['sacle']"),
    ({"method": "magic"}, "unknown method 'magic'"),
    ({"options": {"no_such_option": 1}}, "does not support the options ['no_such_option']"),
    ({"input": "/no/such/volume.nrrd"}, "does not exist"),
    ({"scale": "3x"}, "is not"),
    ({"output": "/tmp/hr.png"}, "cannot write hr.png"),
    ({"seed": "abc"}, "the seed must be a whole number from 0 up, not 'abc'"),
    ({"seed": -1}, "the seed must be a whole number from 0 up, not -1"),
    ({"method": "balanced", "options": {"uncertainty": "many"}}, "uncertainty"),
])
def test_bad_jobs_are_one_user_error(tmp_path, small_input, change, phrase):
    job = {"input": str(small_input), "output": str(tmp_path / "hr.nrrd"), "method": "trilinear", **change}
    code, events, err = run_worker(job, tmp_path)
    assert code == 2
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "user"
    assert phrase in events[-1]["message"]
    assert "Traceback" not in err
    assert not (tmp_path / "hr.nrrd").exists()


def test_a_job_file_that_is_not_json_is_a_user_error(tmp_path):
    path = tmp_path / "job.json"
    path.write_text("{not json")
    env = {**os.environ, "PYTHONPATH": str(LOGIC)}
    done = subprocess.run([sys.executable, "-m", "ctsr.worker", str(path)], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert "is not valid JSON" in json.loads(done.stdout.splitlines()[-1])["message"]


@pytest.mark.parametrize("compress, encoding", [(None, b"encoding: gzip"), (False, b"encoding: raw")])
def test_output_compression_follows_the_job(tmp_path, small_input, compress, encoding):
    job = {"input": str(small_input), "output": str(tmp_path / "hr.nrrd"), "method": "trilinear"}
    if compress is not None:
        job["compress"] = compress
    code, events, err = run_worker(job, tmp_path)
    assert code == 0, err
    header = (tmp_path / "hr.nrrd").read_bytes().split(b"\n\n", 1)[0]
    assert encoding in header
    np.testing.assert_allclose(read_volume(tmp_path / "hr.nrrd").array,
                               upsample(read_volume(small_input), 2, "trilinear").volume.array, atol=1e-3)
