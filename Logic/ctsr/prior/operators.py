"""The degradation model of projection super-resolution and per-projection normalization.

All tensors are ``[N, 1, rows, cols]`` (detector v, u). ``scale = (sy, sx)`` is the integer
factor along detector rows and columns; anisotropic factors such as (4, 1) are allowed.

* ``A`` (:func:`pool`): mean over each ``sy x sx`` block (HR -> LR).
* ``A_pinv`` (:func:`unpool`): copy each LR pixel into its block (LR -> HR). It is the
  Moore-Penrose pseudo-inverse of ``A``: ``A(A_pinv(y)) == y`` exactly, and ``A_pinv(A(.))`` is
  the orthogonal projection onto the range (block-constant images).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Scale2 = tuple[int, int]


def pool(x: torch.Tensor, scale: Scale2) -> torch.Tensor:
    """``A``: average pooling by ``scale`` (rows, cols); sides must be multiples of it."""
    return F.avg_pool2d(x, kernel_size=tuple(scale), stride=tuple(scale))


def unpool(y: torch.Tensor, scale: Scale2) -> torch.Tensor:
    """``A_pinv``: replicate each pixel ``scale`` (rows, cols) times."""
    return y.repeat_interleave(int(scale[0]), dim=-2).repeat_interleave(int(scale[1]), dim=-1)


def project_to_range(x: torch.Tensor, target: torch.Tensor, scale: Scale2, weight=1.0) -> torch.Tensor:
    """DDNM's correction ``x - weight * A_pinv(A(x) - target)``: with ``weight = 1`` the result
    keeps ``x``'s null-space part and has ``A(result) == target``."""
    return x - weight * unpool(pool(x, scale) - target, scale)


def bicubic(y: torch.Tensor, scale: Scale2) -> torch.Tensor:
    """2D bicubic upsampling of LR projections by ``scale`` (a baseline, not range-consistent)."""
    return F.interpolate(y, scale_factor=tuple(float(s) for s in scale), mode="bicubic", align_corners=False)


def minmax_bounds(*images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-projection (min, max) over all given ``[N, 1, *, *]`` tensors, each ``[N, 1, 1, 1]``;
    a flat projection gets a range of 1 so that it normalizes without dividing by zero."""
    low = torch.stack([im.amin(dim=(-2, -1), keepdim=True) for im in images]).amin(0)
    high = torch.stack([im.amax(dim=(-2, -1), keepdim=True) for im in images]).amax(0)
    high = torch.where(high > low, high, low + 1)
    return low, high


def to_model_range(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Map ``[low, high]`` (per projection, input units) to [-1, 1], the model's range."""
    return 2 * (x - low) / (high - low) - 1


def from_model_range(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_model_range`."""
    return (x + 1) / 2 * (high - low) + low


def normalize_image(x: torch.Tensor) -> torch.Tensor:
    """Min-max normalize each ``[N, 1, *, *]`` image on its own to [-1, 1] (training and inference)."""
    low, high = minmax_bounds(x)
    return to_model_range(x, low, high)
