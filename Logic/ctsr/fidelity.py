"""Fidelity to the input: the LR residual of a result and the final data-consistency step.

The forward model is the LR simulation operator of :mod:`ctsr.degrade` (Gaussian sigma 1 HR
voxel, then Lanczos-3 to the LR grid): a faithful HR result, degraded, gives the LR input back.
:func:`lr_residual` measures how far it is; :func:`enforce_lr_consistency` reduces it by
iterative back-projection, ``X <- X + U(y - D(X))`` with ``U`` the cubic upsampling, which only
changes what the LR input determines and leaves the detail beyond its resolution alone.
"""

from __future__ import annotations

import numpy as np

from .baselines import upsample_interpolate
from .degrade import degrade_array
from .grids import Scale, hr_grid
from .volume import Volume


def _check_pair(hr: Volume, lr: Volume, scale: Scale) -> None:
    matrix, shape = hr_grid(lr.ijk_to_ras, lr.shape_ijk, scale)
    if hr.shape_ijk != shape or not np.allclose(hr.ijk_to_ras, matrix, atol=1e-4):
        raise ValueError("the HR volume is not on the HR grid of the LR volume at this scale")


def lr_residual(hr: Volume, lr: Volume, scale: Scale) -> dict:
    """How well ``hr`` (HU) explains ``lr`` (HU): ``rms_hu``, the RMS of ``D(hr) - lr`` in HU,
    and ``relative``, that RMS over the RMS of ``lr - mean(lr)``."""
    _check_pair(hr, lr, scale)
    difference = degrade_array(hr.array, scale).astype(np.float64) - lr.array
    rms = float(np.sqrt(np.mean(difference**2)))
    spread = float(np.std(lr.array.astype(np.float64)))
    return {"rms_hu": round(rms, 3), "relative": round(rms / spread, 6) if spread else 0.0}


def enforce_lr_consistency(hr: Volume, lr: Volume, scale: Scale, iterations: int = 4) -> Volume:
    """``hr`` corrected so that ``D(hr)`` matches ``lr`` (``iterations`` back-projection steps)."""
    _check_pair(hr, lr, scale)
    array = hr.array.astype(np.float32)
    for _ in range(iterations):
        correction = lr.array - degrade_array(array, scale)
        array = array + upsample_interpolate(lr.with_array(correction), scale, "cubic").array
    return hr.with_array(array)
