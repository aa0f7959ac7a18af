"""Where every benchmark writes its numbers: what a run records of itself, and its two files.

Each script in benchmarks/ builds its own payload (its rows and summaries, with the ``meta`` of
:func:`run_meta`) and its own Markdown, and hands both to :func:`write_report`, which writes
benchmarks/<name>.json and benchmarks/<name>.md side by side.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> str:
    """This machine's processor as :mod:`platform` names it (its architecture where it names none)."""
    return platform.processor() or platform.machine()


def run_meta(threads: int | None = None, **extra) -> dict:
    """What a result records of its run: the date, the machine, the Python version, the CPU
    threads (where given), then ``extra`` (the command's arguments, the cases, ...)."""
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "python": platform.python_version()}
    if threads is not None:
        meta["threads"] = threads
    return {**meta, **extra}


def write_report(name: str, payload: dict, markdown: str, *, show: bool = True) -> None:
    """Write ``payload`` to benchmarks/<name>.json (indent 1; a value JSON cannot hold as its
    ``str``) and ``markdown`` to benchmarks/<name>.md, each ending in one newline; with
    ``show``, print the Markdown too."""
    text = markdown.rstrip("\n") + "\n"
    (HERE / f"{name}.json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    (HERE / f"{name}.md").write_text(text)
    if show:
        print(text, end="", flush=True)
