"""The one entry point that turns an LR volume into an HR one: :func:`upsample`.

The CLI, the background worker and the Slicer logic all call it, so a method name means the
same thing everywhere. Methods: the interpolation baselines of :mod:`ctsr.baselines`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import __version__
from .baselines import METHODS as INTERPOLATION_METHODS
from .baselines import upsample_interpolate
from .grids import Scale, format_scale, parse_scale
from .progress import Progress, SilentProgress
from .volume import Volume

#: What ``ctsr upsample`` runs when no ``--method`` is given.
DEFAULT_METHOD = "cubic"
METHODS = INTERPOLATION_METHODS


@dataclass
class UpsampleResult:
    """The HR volume (HU, on the grid of :func:`ctsr.grids.hr_grid`) and how it was made."""

    volume: Volume
    provenance: dict = field(default_factory=dict)


def upsample(lr: Volume, scale, method: str = DEFAULT_METHOD, progress: Progress | None = None,
             seed: int = 0, device: str = "auto") -> UpsampleResult:
    """Super-resolve ``lr`` (HU) by ``scale`` (int, "1x1x4" or an IJK tuple) with ``method``."""
    scale: Scale = parse_scale(scale)
    progress = progress or SilentProgress()
    lr.check_usable()
    start = time.monotonic()
    progress.update("upsample", 0.0, f"{method} x{format_scale(scale)}")
    if method in INTERPOLATION_METHODS:
        hr = upsample_interpolate(lr, scale, method)
    else:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    progress.update("upsample", 1.0, "done")
    provenance = {"method": method, "scale": format_scale(scale), "seed": seed,
                  "device": "cpu", "version": __version__,
                  "duration_s": round(time.monotonic() - start, 2)}
    return UpsampleResult(hr, provenance)
