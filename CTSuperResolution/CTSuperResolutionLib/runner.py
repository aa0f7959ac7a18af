"""The background worker as a subprocess whose output is read without blocking the caller.

Two reader threads turn the worker's stdout into events (:func:`.events.parse_line`) on a
queue and keep the tail of its stderr; the caller (Slicer's GUI thread, through a timer, or
a blocking ``wait``) drains the queue with :meth:`WorkerProcess.read_events`, so MRML is only
touched from the caller's thread. The worker runs in its own process group (a new session on
POSIX; on Windows a new process group without a console window), so stopping it reaches every
process it started: :meth:`WorkerProcess.request_stop` asks (SIGTERM on POSIX) and returns at
once, :meth:`WorkerProcess.enforce_stop` kills the whole tree once the grace period is over
(the caller polls it, so the GUI never waits), :meth:`WorkerProcess.cancel` does both,
blocking. Every worker still running when Python exits (Slicer closing) is killed
(:func:`stop_all_workers`, registered with ``atexit``; the module's cleanup calls it too).
"""

from __future__ import annotations

import atexit
import collections
import os
import queue
import signal
import subprocess
import threading
import time
import weakref

from .events import parse_line

#: Seconds a cancelled worker gets to stop after SIGTERM before it is killed.
CANCEL_GRACE_S = 5.0

#: Workers started by this Python and not known to have finished.
_RUNNING: "weakref.WeakSet[WorkerProcess]" = weakref.WeakSet()


def stop_all_workers() -> None:
    """Kill every worker of this Python that is still running, with its children (at exit)."""
    for worker in list(_RUNNING):
        worker.kill_tree()


atexit.register(stop_all_workers)


class WorkerProcess:
    """One run of ``command`` (a list of arguments) with ``env`` in ``cwd``."""

    def __init__(self, command, env=None, cwd=None):
        self.command = [str(part) for part in command]
        self._events: queue.Queue = queue.Queue()
        self._stderr = collections.deque(maxlen=200)
        # Windows: no console window for the worker (CTRL_BREAK cannot reach it then, so it is
        # stopped by killing its tree); POSIX: its own session, so its group is its tree.
        flags = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW} \
            if os.name == "nt" else {"start_new_session": True}
        self._stop_deadline = None
        #: True once this side asked the worker to stop or killed it (not a crash).
        self.stopped = False
        self._process = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, cwd=None if cwd is None else str(cwd),
            text=True, encoding="utf-8", errors="replace", bufsize=1, **flags)
        self._readers = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for reader in self._readers:
            reader.start()
        _RUNNING.add(self)

    @property
    def pid(self) -> int:
        return self._process.pid

    def _read_stdout(self):
        for line in self._process.stdout:
            event = parse_line(line)
            if event is not None:
                self._events.put(event)
        self._process.stdout.close()

    def _read_stderr(self):
        for line in self._process.stderr:
            if line.strip():
                self._stderr.append(line.rstrip())
        self._process.stderr.close()

    def read_events(self) -> list[dict]:
        """The events that arrived since the last call (never blocks)."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def finished(self) -> bool:
        """True once the worker has exited and all its output has been read."""
        done = self._process.poll() is not None and not any(r.is_alive() for r in self._readers)
        if done:
            _RUNNING.discard(self)
        return done

    @property
    def returncode(self):
        """The exit status (negative: killed by that signal), or ``None`` while running."""
        return self._process.poll()

    def stderr_tail(self, lines: int = 20) -> list[str]:
        """The last ``lines`` non-empty lines the worker wrote to stderr."""
        return list(self._stderr)[-lines:]

    def wait(self, timeout=None) -> int:
        """Block until the worker exited and its output was read; returns the exit status.
        Raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        code = self._process.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in self._readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return code

    def request_stop(self, grace_s: float = CANCEL_GRACE_S) -> None:
        """Ask the worker to stop (SIGTERM to its group on POSIX: it stops at its next check
        and writes nothing; on Windows there is no gentle signal without a console, so its tree
        is killed at once); returns at once. :meth:`enforce_stop` kills what is left after
        ``grace_s`` seconds."""
        self.stopped = True
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + (grace_s if os.name != "nt" else 0.0)
        if self._process.poll() is not None:
            return
        try:
            if os.name != "nt":
                os.killpg(self.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError, OSError):
            pass  # already gone, or not ours to signal: enforce_stop kills what is left
        self.enforce_stop()

    def enforce_stop(self) -> bool:
        """After :meth:`request_stop`: once the grace period is over, kill the whole tree.
        Returns True when the worker has exited (never blocks)."""
        if self._process.poll() is None and self._stop_deadline is not None \
                and time.monotonic() >= self._stop_deadline:
            self.kill_tree()
        return self._process.poll() is not None

    def cancel(self, grace_s: float = CANCEL_GRACE_S) -> int:
        """Stop the worker and everything it started, blocking: :meth:`request_stop`, then
        the tree is killed after ``grace_s`` seconds. Returns the exit status. Safe to call on
        a worker that has already exited."""
        self.request_stop(grace_s)
        try:
            self._process.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
        finally:
            self.kill_tree()  # whatever is left of the tree (the worker or what it started)
        return self.wait()

    def kill_tree(self) -> None:
        """Kill the worker and every process it started, now (no clean-up by the worker)."""
        if self._process.poll() is None:
            self.stopped = True
        try:
            if os.name == "nt":
                subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.pid)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=False,
                               creationflags=subprocess.CREATE_NO_WINDOW)
            else:
                os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass  # the group is already gone
        finally:
            if self._process.poll() is None:
                try:
                    self._process.kill()
                except OSError:
                    pass
            _RUNNING.discard(self)
