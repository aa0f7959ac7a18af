"""Progress events, their JSON-lines stream, and cancellation.

Long work reports through a :class:`Progress` object. The same events are drawn as a terminal
bar (:class:`TerminalProgress`), written as JSON lines (:class:`JsonLinesProgress`, the contract
the background worker and the Slicer module read; see ``docs/progress-protocol.md``), or passed
to a Python callback (:class:`CallbackProgress`).

Every event is a dict with ``"event"`` and ``"elapsed"`` (seconds since the job started):

* ``{"event": "progress", "stage": str, "fraction": float, "message": str, "elapsed": float,
  "eta": float | None, ...}``; ``fraction`` is of the **whole job**, in [0, 1], never
  decreasing; ``eta`` is the estimated seconds left; stages may add fields (``iteration``,
  ``loss``, ``gaussians``, ...);
* ``{"event": "log", "message": str}``: a line for the log panel;
* ``{"event": "result", ...}``: the last line of a successful job (output path, provenance);
* ``{"event": "error", "message": str, "kind": str}``: the last line of a failed job.

Cancellation: :meth:`Progress.cancel` (from a signal handler, another thread or a callback)
makes the next :meth:`Progress.update` or :meth:`Progress.check` raise :class:`Cancelled`.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time

from .errors import Cancelled


class Progress:
    """Base progress sink. Subclasses implement :meth:`emit`."""

    def __init__(self):
        self._start = time.monotonic()
        self._cancel = threading.Event()
        self._fraction = 0.0

    # -- what engine code calls -------------------------------------------------------------
    def update(self, stage: str, fraction: float, message: str = "", **fields) -> None:
        """Report that the job is ``fraction`` (0..1) done, now in ``stage``. Raises
        :class:`Cancelled` if cancellation was requested."""
        self.check()
        fraction = min(1.0, max(self._fraction, float(fraction)))
        self._fraction = fraction
        elapsed = self.elapsed()
        eta = elapsed * (1.0 - fraction) / fraction if fraction > 0.01 else None
        event = {"event": "progress", "stage": stage, "fraction": round(fraction, 4),
                 "message": message, "elapsed": round(elapsed, 2),
                 "eta": None if eta is None else round(eta, 1)}
        event.update(fields)
        self.emit(event)

    def log(self, message: str) -> None:
        """A line of text for the user's log."""
        self.emit({"event": "log", "message": message, "elapsed": round(self.elapsed(), 2)})

    def span(self, start: float, end: float) -> "Progress":
        """A view whose fractions 0..1 map onto ``start..end`` of this one (a job's stage)."""
        return _Span(self, start, end)

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._cancel.is_set():
            raise Cancelled("cancelled")

    def cancel(self) -> None:
        """Request cancellation; safe from signal handlers and other threads."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    # -- what subclasses implement ----------------------------------------------------------
    def emit(self, event: dict) -> None:
        """Deliver one event."""

    def close(self) -> None:
        """Finish drawing (terminal bars)."""


class _Span(Progress):
    def __init__(self, parent: Progress, start: float, end: float):
        self._parent, self._a, self._b = parent, start, end

    def update(self, stage, fraction, message="", **fields):
        self._parent.update(stage, self._a + (self._b - self._a) * fraction, message, **fields)

    def log(self, message):
        self._parent.log(message)

    def span(self, start, end):
        return _Span(self._parent, self._a + (self._b - self._a) * start,
                     self._a + (self._b - self._a) * end)

    def check(self):
        self._parent.check()

    def cancel(self):
        self._parent.cancel()

    @property
    def cancelled(self):
        return self._parent.cancelled

    def elapsed(self):
        return self._parent.elapsed()


class SilentProgress(Progress):
    """Reports nothing (``--quiet``); still supports cancellation."""


class CallbackProgress(Progress):
    """Passes every event dict to ``callback(event)`` (the Python API's ``progressCallback``)."""

    def __init__(self, callback):
        super().__init__()
        self._callback = callback

    def emit(self, event):
        self._callback(event)


class StageClock:
    """Wall seconds spent in each stage, from the stage names of the progress events it is given
    (use it as the callback of :class:`CallbackProgress`); ``seconds``: stage -> seconds.
    ``now``: the clock it reads (seconds)."""

    def __init__(self, now=time.monotonic):
        self.now = now
        self.start = self.mark = now()
        self.stage = None
        self.seconds = {}

    def __call__(self, event):
        stage = event.get("stage")
        if stage and stage != self.stage:
            self._close()
            self.stage = stage

    def _close(self):
        now = self.now()
        if self.stage is not None:
            self.seconds[self.stage] = round(self.seconds.get(self.stage, 0.0) + now - self.mark, 1)
        self.mark = now

    def total(self) -> float:
        self._close()
        return round(self.mark - self.start, 1)


class JsonLinesProgress(Progress):
    """Writes each event as one JSON line to ``stream`` (stdout by default), flushed at once."""

    def __init__(self, stream=None):
        super().__init__()
        self._stream = stream or sys.stdout
        self._lock = threading.Lock()

    def emit(self, event):
        line = to_json(event)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


def to_json(value) -> str:
    """Strict JSON of ``value``: NumPy and torch scalars and arrays as numbers and lists, and
    infinite or NaN floats (the PSNR of identical volumes) as ``null``."""
    return json.dumps(_finite(value), allow_nan=False, default=_jsonable)


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _jsonable(value):
    if hasattr(value, "item"):
        return _finite(value.item())
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    return str(value)


class TerminalProgress(Progress):
    """A tqdm bar on stderr showing percent, stage, message, elapsed and remaining time; drawn
    from the first progress event on, so a command that fails at once prints only its error."""

    def __init__(self, stream=None):
        super().__init__()
        self._stream = stream or sys.stderr
        self._bar = None

    def emit(self, event):
        if event["event"] == "progress":
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=1000, file=self._stream, unit="", leave=True,
                                 bar_format="{desc} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]")
            self._bar.set_description_str(f"{event['stage']}: {event['message']}".strip(": "))
            self._bar.n = int(round(1000 * event["fraction"]))
            self._bar.refresh()
        elif event["event"] == "log":
            (self._bar.write if self._bar is not None else print)(event["message"], file=self._stream)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class PlainProgress(Progress):
    """Plain progress lines on stderr for a log file or a pipe (no ``\r`` bar): one line when
    the stage changes or the job advances by 10 %, e.g. ``[ 40%] consistency: ... (3 s, 4 s left)``."""

    def __init__(self, stream=None):
        super().__init__()
        self._stream = stream or sys.stderr
        self._last = (None, -1)

    def emit(self, event):
        if event["event"] == "log":
            print(event["message"], file=self._stream, flush=True)
        elif event["event"] == "progress":
            decile = int(event["fraction"] * 10)
            if (event["stage"], decile) == self._last:
                return
            self._last = (event["stage"], decile)
            left = f", {event['eta']:.0f} s left" if event.get("eta") is not None else ""
            print(f"[{100 * event['fraction']:3.0f}%] {event['stage']}: {event['message']} "
                  f"({event['elapsed']:.0f} s{left})", file=self._stream, flush=True)


def add_progress_options(parser) -> None:
    """The command-line choice of progress (every ``ctsr`` command): ``--quiet`` or
    ``--json-progress`` (default: the terminal bar)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quiet", action="store_true", help="print nothing but errors")
    group.add_argument("--json-progress", action="store_true",
                       help="write progress and the result as JSON lines on stdout "
                            "(docs/progress-protocol.md)")


def progress_from_args(args) -> Progress:
    """The :class:`Progress` that :func:`add_progress_options`' flags chose."""
    if getattr(args, "json_progress", False):
        return JsonLinesProgress()
    if getattr(args, "quiet", False):
        return SilentProgress()
    return TerminalProgress() if sys.stderr.isatty() else PlainProgress()
