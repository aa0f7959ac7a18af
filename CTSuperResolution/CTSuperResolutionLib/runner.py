"""The background worker as a subprocess whose output is read without blocking the caller.

Two reader threads turn the worker's stdout into events (:func:`.events.parse_line`) on a
queue and keep the tail of its stderr; the caller (Slicer's GUI thread, through a timer, or
a blocking ``wait``) drains the queue with :meth:`WorkerProcess.read_events`, so MRML is only
touched from the caller's thread. The worker runs in its own process group (a new session on
POSIX), so :meth:`WorkerProcess.cancel` reaches every process it started.
"""

from __future__ import annotations

import collections
import os
import queue
import signal
import subprocess
import threading
import time

from .events import parse_line

#: Seconds a cancelled worker gets to stop after SIGTERM before it is killed.
CANCEL_GRACE_S = 5.0


class WorkerProcess:
    """One run of ``command`` (a list of arguments) with ``env`` in ``cwd``."""

    def __init__(self, command, env=None, cwd=None):
        self.command = [str(part) for part in command]
        self._events: queue.Queue = queue.Queue()
        self._stderr = collections.deque(maxlen=200)
        flags = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt" \
            else {"start_new_session": True}
        self._process = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, cwd=None if cwd is None else str(cwd),
            text=True, encoding="utf-8", errors="replace", bufsize=1, **flags)
        self._readers = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=self._read_stderr, daemon=True)]
        for reader in self._readers:
            reader.start()

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
        return self._process.poll() is not None and not any(r.is_alive() for r in self._readers)

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

    def cancel(self, grace_s: float = CANCEL_GRACE_S) -> int:
        """Stop the worker and everything it started: SIGTERM (the worker then stops at its
        next check and writes nothing), SIGKILL after ``grace_s`` seconds. Returns the exit
        status. Safe to call on a worker that has already exited."""
        if self._process.poll() is None:
            self._signal_group(signal.SIGTERM if os.name != "nt" else signal.CTRL_BREAK_EVENT)
            try:
                self._process.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (the worker or processes it started) is killed.
        self._signal_group(signal.SIGKILL if os.name != "nt" else None)
        return self.wait()

    def _signal_group(self, sig) -> None:
        if os.name == "nt":
            if sig is None:
                subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            elif self._process.poll() is None:
                self._process.send_signal(sig)
            return
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass  # the group is already gone
