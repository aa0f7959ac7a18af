"""Interpolation baselines: trilinear, cubic (cubic B-spline) and Lanczos windowed sinc.

Each maps an LR volume onto the HR grid of :func:`ctsr.grids.hr_grid`: size = LR size x
scale, spacing = LR spacing / scale, HR voxel centres placed so that each LR voxel is the
centre of its block. Outside the LR voxel centres values are extended from the border.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .grids import Scale, hr_grid
from .io import image_from_volume, volume_from_image
from .volume import Volume

METHODS = ("trilinear", "cubic", "lanczos")


def upsample_interpolate(lr: Volume, scale: Scale, method: str = "cubic") -> Volume:
    """Interpolate ``lr`` onto its HR grid at ``scale`` (IJK order) with ``method``."""
    matrix, shape = hr_grid(lr.ijk_to_ras, lr.shape_ijk, scale)
    if method in ("trilinear", "cubic"):
        order = 1 if method == "trilinear" else 3
        # grid_mode=True: output voxel o samples input index (o + 0.5) / s - 0.5, i.e. the
        # block-centre convention of ctsr.grids.
        array = ndimage.zoom(lr.array, tuple(scale[::-1]), order=order, mode="nearest",
                             grid_mode=True, output=np.float32)
        assert array.shape == shape[::-1]
        return Volume(array, matrix)
    if method == "lanczos":
        reference = image_from_volume(Volume(np.zeros(shape[::-1], np.float32), matrix))
        hr = sitk.Resample(image_from_volume(lr), reference, sitk.Transform(),
                           sitk.sitkLanczosWindowedSinc, 0.0, sitk.sitkFloat32)
        return volume_from_image(hr, "the upsampled volume")
    raise ValueError(f"unknown interpolation method {method!r}; expected one of {METHODS}")
