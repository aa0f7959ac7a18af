"""Where the ``ctsr`` engine is, and which Python runs the background worker.

Two layouts are supported, both with the module file ``CTSuperResolution.py`` in ``module_dir``:

* source tree: ``<repo>/CTSuperResolution/`` beside ``<repo>/Logic/ctsr`` and ``<repo>/Resources``;
* installed extension (or build tree): ``ctsr/`` and ``Resources/`` inside the module folder
  (``lib/Slicer-X.Y/qt-scripted-modules``), as the top-level ``CMakeLists.txt`` lays them out.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


#: Oldest Slicer the module supports: 5.10 embeds Python 3.12; 5.6 and 5.8 embed Python 3.9,
#: which the engine (Python 3.10+) does not support.
MINIMUM_SLICER = (5, 10)


def check_slicer_version(major: int, minor: int) -> None:
    """Raise ImportError with one sentence on a Slicer older than :data:`MINIMUM_SLICER`."""
    if (int(major), int(minor)) < MINIMUM_SLICER:
        raise ImportError(f"CT Super-Resolution needs Slicer {MINIMUM_SLICER[0]}.{MINIMUM_SLICER[1]} or later "
                          f"(this is Slicer {major}.{minor}); please update Slicer.")


def engine_dir(module_dir) -> Path:
    """The folder that holds the ``ctsr`` package for the module in ``module_dir``."""
    module_dir = Path(module_dir).resolve()
    for candidate in (module_dir, module_dir.parent / "Logic"):
        if (candidate / "ctsr" / "__init__.py").is_file():
            return candidate
    raise ImportError(f"the ctsr engine was not found next to {module_dir} "
                      "(expected ctsr/ there or ../Logic/ctsr in a source tree)")


def ensure_engine_importable(module_dir) -> Path:
    """Put the engine's folder first on ``sys.path`` (once); returns that folder."""
    folder = str(engine_dir(module_dir))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return Path(folder)


def python_executable() -> str:
    """The interpreter for ``python -m ctsr.worker``: ``PythonSlicer`` inside the Slicer
    application (its embedded interpreter cannot run scripts), else this Python."""
    import slicer

    if hasattr(slicer, "app"):
        found = shutil.which("PythonSlicer")
        if found:
            return found
        from ctsr.errors import UserError

        raise UserError("PythonSlicer was not found on the PATH of this Slicer; the background "
                        "worker cannot be started.")
    return sys.executable


def worker_environment(module_dir, base=None) -> dict:
    """The worker's environment: ``base`` (default ``os.environ``) with the engine's folder first
    on ``PYTHONPATH``, unbuffered output (progress lines arrive as they are written), and this
    process's pid as the one the worker stops without (:func:`ctsr.worker.stop_when_orphaned`)."""
    from ctsr.worker import WATCH_PID_VARIABLE

    env = dict(os.environ if base is None else base)
    env[WATCH_PID_VARIABLE] = str(os.getpid())
    paths = [str(engine_dir(module_dir))] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env
