"""Reading the worker's JSON-lines stream (``docs/progress-protocol.md``) and wording it for
the panel. Pure functions: no Slicer, no Qt."""

from __future__ import annotations

import json

EVENT_KINDS = ("progress", "log", "result", "error")


def parse_line(line: str) -> dict | None:
    """One line of the worker's stdout as an event dict; ``None`` for a blank line. A line that
    is not a JSON event (a library printing to stdout) becomes a ``log`` event, so nothing the
    worker says is lost and nothing breaks the stream."""
    text = line.strip()
    if not text:
        return None
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
        return {"event": "log", "message": text}
    if not isinstance(event, dict) or event.get("event") not in EVENT_KINDS:
        return {"event": "log", "message": text}
    return event


def format_duration(seconds) -> str:
    """``75.2`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"`` (hours:minutes:seconds)."""
    seconds = max(0, int(round(float(seconds))))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def status_text(event: dict) -> str:
    """The one-line status under the progress bar for a ``progress`` event, e.g.
    ``"upsample: cubic x2 (elapsed 0:03, about 0:12 left)"``."""
    head = ": ".join(part for part in (event.get("stage", ""), event.get("message", "")) if part)
    times = [f"elapsed {format_duration(event.get('elapsed', 0.0))}"]
    if event.get("eta") is not None:
        times.append(f"about {format_duration(event['eta'])} left")
    return f"{head} ({', '.join(times)})"


def percent(event: dict) -> int:
    """The progress bar value (0..100) of a ``progress`` event."""
    return int(round(100.0 * min(1.0, max(0.0, float(event.get("fraction", 0.0))))))


def residual_text(provenance: dict) -> str:
    """The LR residual of a result (``provenance["lr_residual"]``) in words, e.g.
    ``"LR residual 5.23 HU RMS (1.7 % of the input's spread) at noise 5.10 HU, LR model box"``;
    ``""`` when not reported."""
    residual = provenance.get("lr_residual")
    if not isinstance(residual, dict) or residual.get("rms_hu") is None:
        return ""
    text = f"LR residual {float(residual['rms_hu']):.2f} HU RMS"
    if residual.get("relative") is not None:
        text += f" ({100.0 * float(residual['relative']):.1f} % of the input's spread)"
    if residual.get("noise_hu") is not None:
        text += f" at noise {float(residual['noise_hu']):.2f} HU"
    model = provenance.get("lr_model")
    if isinstance(model, dict) and model.get("model"):
        text += f", LR model {model['model']}"
    return text
