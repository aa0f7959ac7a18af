"""Interpolation baselines: trilinear, cubic (cubic B-spline) and Lanczos-3 windowed sinc.

Each maps an LR volume onto the HR grid of :func:`ctsr.grids.hr_grid`: size = LR size x
scale, spacing = LR spacing / scale, HR voxel centres placed so that each LR voxel is the
centre of its block. Beyond the outermost LR voxel centres, trilinear repeats the edge value
and cubic mirrors the signal (as ITK's and Slicer's B-spline resampling do).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .grids import Scale, hr_grid
from .lanczos import block_centre_positions, resample_axis
from .volume import Volume

METHODS = ("trilinear", "cubic", "lanczos")
#: scipy spline order and boundary mode of the spline methods (as ITK's / Slicer's resampling).
_SPLINES = {"trilinear": (1, "nearest"), "cubic": (3, "mirror")}


def upsample_interpolate(lr: Volume, scale: Scale, method: str = "cubic") -> Volume:
    """Interpolate ``lr`` onto its HR grid at ``scale`` (IJK order) with ``method``."""
    matrix, shape = hr_grid(lr.ijk_to_ras, lr.shape_ijk, scale)
    if method in _SPLINES:
        order, mode = _SPLINES[method]
        # grid_mode=True: output voxel o samples input index (o + 0.5) / s - 0.5, i.e. the
        # block-centre convention of ctsr.grids.
        array = ndimage.zoom(lr.array, tuple(scale[::-1]), order=order, mode=mode,
                             grid_mode=True, output=np.float32)
        assert array.shape == shape[::-1]
        return Volume(array, matrix)
    if method == "lanczos":
        array = lr.array
        for axis, s in enumerate(scale[::-1]):
            if s > 1:
                array = resample_axis(array, axis, block_centre_positions(array.shape[axis] * s, s, downsample=False))
        return Volume(array, matrix)
    raise ValueError(f"unknown interpolation method {method!r}; expected one of {METHODS}")


def spline_matrix(n_lr: int, scale: int, method: str = "cubic") -> np.ndarray:
    """The ``(n_lr * scale, n_lr)`` matrix of :func:`upsample_interpolate`'s ``method``
    (``trilinear`` or ``cubic``) along one axis: the same spline, boundary and grid convention."""
    order, mode = _SPLINES[method]
    return ndimage.zoom(np.eye(n_lr), (scale, 1), order=order, mode=mode, grid_mode=True)
