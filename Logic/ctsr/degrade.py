"""LR simulation (DESIGN.md section 5, the paper's protocol).

Gaussian smoothing with sigma = 1 HR voxel along every downsampled axis, then windowed-sinc
(Lanczos) resampling onto the LR grid of :func:`ctsr.grids.lr_grid`.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .grids import Scale, lr_grid
from .io import image_from_volume, volume_from_image
from .volume import Volume


def simulate_lr(hr: Volume, scale: Scale) -> Volume:
    """Degrade an HR volume to the LR grid at ``scale`` (IJK order); values keep their units."""
    sigma_kji = [1.0 if s > 1 else 0.0 for s in scale[::-1]]
    smoothed = hr.with_array(ndimage.gaussian_filter(hr.array, sigma_kji, mode="nearest"))
    matrix, shape = lr_grid(hr.ijk_to_ras, hr.shape_ijk, scale)
    reference = image_from_volume(Volume(np.zeros(shape[::-1], np.float32), matrix))
    lr = sitk.Resample(image_from_volume(smoothed), reference, sitk.Transform(),
                       sitk.sitkLanczosWindowedSinc, 0.0, sitk.sitkFloat32)
    return volume_from_image(lr, "the simulated LR volume")
