"""Whether a process has exited, for the tests that stop workers and their children (POSIX)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def has_exited(pid: int) -> bool:
    """The process is gone, or is a zombie waiting for its parent to reap it (Linux's /proc
    tells; where /proc does not list it, a process that still answers counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except (OSError, IndexError):
        return False


def wait_for_exit(pid: int, timeout: float) -> bool:
    """True once ``pid`` has exited (reaped here if it is a child of this process), False if it
    still runs after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if has_exited(pid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
