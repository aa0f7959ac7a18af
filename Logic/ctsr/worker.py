"""The background-process entry of the Slicer module: ``python -m ctsr.worker JOB.json``.

The job file is one JSON object (schema: ``docs/progress-protocol.md``)::

    {"input": "/tmp/.../input.nrrd",     # LR volume (HU), any format ctsr.io reads
     "output": "/tmp/.../output.nrrd",   # HR volume to write (atomically)
     "uncertainty_output": "/tmp/.../output_uncertainty.nrrd",
                                         # where the voxelwise std over the uncertainty runs
                                         # goes (default: the CLI's OUT_uncertainty.<ext>)
     "scale": "2",                       # "2", "1x1x4" (IJK order), [sx, sy, sz] or "auto"
     "method": "cubic",                  # one of ctsr.upsampling.METHODS
     "device": "auto",                   # "auto", "cpu" or "cuda"
     "seed": 0,
     "compress": true,                   # gzip the output (false for temporary files)
     "options": {}}                      # extra keyword options of ctsr.upsampling.upsample
                                         # (e.g. roi, uncertainty, preset overrides)

Only ``input`` and ``output`` are required; the rest default as in ``ctsr upsample``. A field
outside this list is a user error (a typo must not be silently ignored). ``options`` are
passed to :func:`ctsr.upsampling.upsample` as keyword arguments; one that this engine's
``upsample`` does not take is a user error too.

stdout carries only the JSON-lines events of :mod:`ctsr.progress` (the same stream as
``ctsr upsample --json-progress``); the last line is a ``result`` or an ``error`` event.
Exit codes are those of :mod:`ctsr.cli`: 0 done, 1 bug (traceback on stderr), 2 user error,
3 cancelled (SIGTERM / Ctrl-C, or the process that started it gone: :func:`stop_when_orphaned`),
4 out of memory. SIGTERM raises
:class:`ctsr.errors.Cancelled` in the main thread as soon as the current numerical call
returns; the output is written atomically, so a failed or cancelled job leaves no output file.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

from .cli import run_guarded
from .errors import UserError, check_seed
from .progress import JsonLinesProgress, Progress

JOB_FIELDS = ("input", "output", "uncertainty_output", "scale", "method", "device", "seed", "compress",
              "options")
REQUIRED_FIELDS = ("input", "output")


def load_job(path) -> dict:
    """Read and validate a job file; returns the job with defaults filled in."""
    path = Path(path)
    try:
        job = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"the job file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"the job file {path} is not valid JSON ({error}).") from None
    if not isinstance(job, dict):
        raise UserError(f"the job file {path} must hold one JSON object.")
    unknown = sorted(set(job) - set(JOB_FIELDS))
    if unknown:
        raise UserError(f"the job file has unknown fields {unknown}; allowed: {list(JOB_FIELDS)}.")
    missing = [name for name in REQUIRED_FIELDS if not job.get(name)]
    if missing:
        raise UserError(f"the job file lacks the required fields {missing}.")
    from .upsampling import DEFAULT_METHOD

    job = {"scale": "2", "method": DEFAULT_METHOD, "device": "auto", "seed": 0, "compress": True,
           "options": {}, **job}
    if not isinstance(job["options"], dict):
        raise UserError("the job's options must be a JSON object.")
    return job


def check_options(options: dict) -> None:
    """Raise :class:`UserError` for an option :func:`ctsr.upsampling.upsample` does not take."""
    from .upsampling import upsample

    parameters = inspect.signature(upsample).parameters
    fixed = {"lr", "scale", "method", "progress", "seed", "device"}
    unsupported = sorted(name for name in options if name not in parameters or name in fixed)
    if unsupported:
        raise UserError(f"this engine version does not support the options {unsupported}.")


def run_job(job: dict, progress: Progress) -> dict:
    """Run one validated job: read, upsample, write atomically. Returns the ``result`` fields."""
    from .upsampling import METHODS, upsample_file

    if job["method"] not in METHODS:
        raise UserError(f"unknown method {job['method']!r}; this engine offers {list(METHODS)}.")
    if job["device"] not in ("auto", "cpu", "cuda"):
        raise UserError(f"unknown device {job['device']!r}; use auto, cpu or cuda.")
    check_options(job["options"])
    result, written = upsample_file(job["input"], job["output"], job["scale"], job["method"], progress,
                                    uncertainty_output=job.get("uncertainty_output"), compress=bool(job["compress"]),
                                    seed=check_seed(job["seed"]), device=job["device"], **job["options"])
    return {**written, "shape_ijk": list(result.volume.shape_ijk), "provenance": result.provenance}


def _run(args, progress: Progress) -> dict:
    return run_job(load_job(args.job), progress)


#: Seconds between two looks at whether the process that started the worker is still there.
PARENT_CHECK_S = 2.0
#: The environment variable naming the process to outlive no longer than (the Slicer module
#: sets it to Slicer's own pid: its ``PythonSlicer`` launcher, the worker's parent, would
#: outlive a crashed Slicer).
WATCH_PID_VARIABLE = "CTSR_WATCH_PID"


def stop_when_orphaned(interval_s: float = PARENT_CHECK_S) -> None:
    """Cancel this process (SIGTERM to itself: :class:`ctsr.errors.Cancelled`, no output) once
    the process that started it is gone, e.g. Slicer crashed or was killed: the worker runs in
    its own session, so nothing else would stop it, and it may hold the GPU. Watched: the pid
    in :data:`WATCH_PID_VARIABLE` where set, else the parent (an orphan is adopted by another
    process, so its parent id changes). POSIX only; a daemon thread."""
    import os
    import signal
    import threading
    import time

    if os.name == "nt":
        return
    parent = os.getppid()
    watched = os.environ.get(WATCH_PID_VARIABLE, "")

    def alive() -> bool:
        if not watched.isdigit():
            return os.getppid() == parent
        try:
            os.kill(int(watched), 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # there, under another user
            return True
        try:  # a dead process not yet reaped by its parent (Linux) is gone too
            return Path(f"/proc/{watched}/stat").read_text().split()[2] != "Z"
        except (OSError, IndexError):
            return True

    def watch() -> None:
        while alive():
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="ctsr-parent-watch", daemon=True).start()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ctsr.worker",
                                     description="Run one super-resolution job file, "
                                                 "reporting JSON lines on stdout.")
    parser.add_argument("job", type=Path, help="job file (JSON)")
    args = parser.parse_args(argv)
    args.json_progress = True
    stop_when_orphaned()
    return run_guarded(_run, args, JsonLinesProgress())


if __name__ == "__main__":
    sys.exit(main())
