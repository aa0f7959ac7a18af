"""LR inputs made by operators outside ``ctsr.lrmodel``'s families: the degradations the method
did not choose, for ``degradation_bench.py --foreign``.

``ctsr.lrmodel`` (Gaussian then Lanczos-3 sampling, the block mean, a slab; white noise) is what
the LR-model estimator looks for, what the consistency step inverts and what the priors are
pretrained on, so a matrix made only by it scores the method on its own simulation. These
makers come from elsewhere, each as a user's LR could have been made:

* ``itk-linear``: SimpleITK's ``Resample`` onto the LR grid with linear interpolation and no
  antialiasing (what a resampling tool does when asked for a coarser grid: each LR voxel mixes
  the two HR voxels nearest its centre per axis, everything else aliases; at x2 those two are
  the block, so this is the block mean there, as ``Testing/test_lrmodel.py`` checks);
* ``itk-bspline``: the same with ITK's cubic B-spline interpolator;
* ``tent``: a triangle (tent) blur of half-width ``s`` HR voxels per downsampled axis (the
  kernel of a bilinear image reduction), then ``itk-linear``;

and the noise (HU) ``corr:SD``: white noise on the LR grid smoothed in-plane (I and J) by a
Gaussian of 0.7 LR voxels and scaled to SD (CT noise is correlated by the reconstruction
kernel; its fine wavelet band holds less of it than white noise of the same SD, and slices
stay independent, so ``ctsr.lrestimate`` reads it across them). The LR grid is ``ctsr.grids.lr_grid`` (block centres), so truth and
result stay aligned. Arrays KJI, HU.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

BLURS = ("itk-linear", "itk-bspline", "tent")
NOISES = ("none", "corr:20")
#: Correlation length of ``corr`` noise: Gaussian sigma in LR voxels, in-plane.
CORRELATION_SIGMA = 0.7


def _itk_resample(hr, scale, interpolator):
    """``hr`` (Volume, HU) resampled onto its LR grid at ``scale`` (IJK) by SimpleITK."""
    from ctsr.grids import lr_grid
    from ctsr.io import image_from_array, image_from_volume, volume_from_image

    matrix, shape = lr_grid(hr.ijk_to_ras, hr.shape_ijk, scale)
    reference = image_from_array(np.zeros(shape[::-1], np.float32), matrix)
    image = sitk.Resample(image_from_volume(hr), reference, sitk.Transform(), interpolator, 0.0, sitk.sitkFloat32)
    return volume_from_image(image, check=False)


def tent_blur(array: np.ndarray, scale) -> np.ndarray:
    """``array`` (KJI) convolved along each IJK axis with scale ``s > 1`` by the normalized
    triangle of half-width ``s`` HR voxels (reflecting edges)."""
    out = array.astype(np.float32)
    for axis_ijk, s in enumerate(scale):
        if s > 1:
            x = np.arange(-s + 1, s)
            weights = (1.0 - np.abs(x) / s).astype(np.float32)
            out = ndimage.convolve1d(out, weights / weights.sum(), axis=2 - axis_ijk, mode="reflect")
    return out


def correlated_noise(shape_kji, sd_hu: float, seed: int) -> np.ndarray:
    """White noise smoothed over J and I by a Gaussian of :data:`CORRELATION_SIGMA` voxels,
    scaled to standard deviation ``sd_hu`` (float32, KJI)."""
    noise = np.random.default_rng(seed).standard_normal(shape_kji).astype(np.float32)
    noise = ndimage.gaussian_filter(noise, (0.0, CORRELATION_SIGMA, CORRELATION_SIGMA))
    return noise * np.float32(sd_hu / noise.std())


def foreign_lr(hr, scale, blur: str, noise: str, seed: int = 1):
    """The LR (Volume, HU) of ``hr`` at ``scale`` (IJK) made by ``blur`` (one of
    :data:`BLURS`) and ``noise`` (one of :data:`NOISES`)."""
    from ctsr.volume import Volume

    if blur == "tent":
        hr = Volume(tent_blur(hr.array, scale), hr.ijk_to_ras)
    interpolator = sitk.sitkBSpline if blur == "itk-bspline" else sitk.sitkLinear
    lr = _itk_resample(hr, scale, interpolator)
    if noise != "none":
        lr = Volume(lr.array + correlated_noise(lr.array.shape, float(noise.split(":")[1]), seed), lr.ijk_to_ras)
    return lr
