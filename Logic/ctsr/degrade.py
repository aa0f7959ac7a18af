"""LR simulation (DESIGN.md section 5, the paper's protocol).

Gaussian smoothing with sigma = 1 HR voxel along every downsampled axis, then windowed-sinc
(Lanczos-3, normalized weights) resampling onto the LR grid of :func:`ctsr.grids.lr_grid`.
The same operator is the forward model of the final data-consistency step.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .grids import Scale, lr_grid
from .lanczos import block_centre_positions, resample_axis
from .volume import Volume


def degrade_array(hr: np.ndarray, scale: Scale) -> np.ndarray:
    """The LR simulation operator on a KJI array (units kept); output shape = shape // scale."""
    scale_kji = scale[::-1]
    out = ndimage.gaussian_filter(hr.astype(np.float32), [1.0 if s > 1 else 0.0 for s in scale_kji],
                                  mode="nearest")
    for axis, s in enumerate(scale_kji):
        if s > 1:
            out = resample_axis(out, axis, block_centre_positions(hr.shape[axis] // s, s, downsample=True))
    return out


def simulate_lr(hr: Volume, scale: Scale) -> Volume:
    """Degrade an HR volume to the LR grid at ``scale`` (IJK order); values keep their units."""
    matrix, shape = lr_grid(hr.ijk_to_ras, hr.shape_ijk, scale)
    lr = Volume(degrade_array(hr.array, scale), matrix)
    assert lr.shape_ijk == shape
    return lr
