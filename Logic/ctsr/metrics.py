"""Image quality metrics (DESIGN.md section 5).

Both volumes are clipped to an HU window and scaled to [0, 1]. PSNR is over the whole volume
with peak 1. SSIM is the mean SSIM of the 2D slices along each of the three axes, averaged over
the axes; each 2D SSIM uses a Gaussian window (sigma 1.5, 11 x 11), C1 = 0.01^2, C2 = 0.03^2,
population (co)variances, and leaves out the 5-pixel border where the window is incomplete
(as ``skimage.metrics.structural_similarity(..., gaussian_weights=True,
use_sample_covariance=False, data_range=1)``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .errors import UserError
from .volume import Volume

DEFAULT_WINDOW = (-1024.0, 3071.0)
_SIGMA, _TRUNCATE, _C1, _C2 = 1.5, 3.5, 0.01**2, 0.03**2
_BORDER = int(_TRUNCATE * _SIGMA + 0.5)  # 5: half the 11-pixel window


def normalize(array: np.ndarray, window=DEFAULT_WINDOW) -> np.ndarray:
    """Clip HU to ``window`` (low, high) and map it to [0, 1] (float64)."""
    low, high = window
    return (np.clip(np.asarray(array, dtype=np.float64), low, high) - low) / (high - low)


def denormalize(array, window=DEFAULT_WINDOW):
    """The inverse of :func:`normalize` inside the window: [0, 1] back to HU (same type)."""
    low, high = window
    return array * (high - low) + low


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two arrays in [0, 1] with peak 1."""
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim_along_axis(a: np.ndarray, b: np.ndarray, axis: int) -> float:
    """Mean 2D SSIM over the slices of two [0, 1] arrays taken along ``axis``."""
    sigma = [_SIGMA] * a.ndim
    sigma[axis] = 0.0
    blur = lambda x: ndimage.gaussian_filter(x, sigma, mode="reflect", truncate=_TRUNCATE)
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + _C1) * (2 * cov + _C2)) / (
        (mu_a**2 + mu_b**2 + _C1) * (var_a + var_b + _C2))
    crop = tuple(slice(None) if d == axis else slice(_BORDER, -_BORDER) for d in range(a.ndim))
    return float(ssim_map[crop].mean())


def ssim3(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM averaged over the 2D slices along all three axes (both arrays in [0, 1])."""
    if min(a.shape) <= 2 * _BORDER:
        raise UserError(f"a volume of shape {a.shape} is too small for SSIM (each side must exceed {2 * _BORDER}).")
    return float(np.mean([ssim_along_axis(a, b, axis) for axis in range(3)]))


def evaluate(output: Volume, truth: Volume, window=DEFAULT_WINDOW) -> dict:
    """PSNR and SSIM of ``output`` against ``truth`` on the same grid, in ``window`` (HU, low
    below high)."""
    if not window[0] < window[1]:
        raise UserError(f"the HU window must go from low to high, not {window[0]:g} to {window[1]:g}.")
    if output.array.shape != truth.array.shape:
        raise UserError(f"the volumes have different sizes: {output.shape_ijk} vs {truth.shape_ijk}.")
    if not output.same_grid(truth):
        raise UserError("the volumes have the same size but different spacing, origin or direction.")
    a, b = normalize(output.array, window), normalize(truth.array, window)
    return {"psnr": psnr(a, b), "ssim": ssim3(a, b), "window": list(window)}
