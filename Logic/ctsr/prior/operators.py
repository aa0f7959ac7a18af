"""The degradation model of projection super-resolution and per-projection normalization.

All tensors are ``[N, 1, rows, cols]`` (detector v, u).

* ``A`` (:class:`DetectorBinning`): the projection-domain image of the LR model
  (:mod:`ctsr.lrmodel`): along detector rows the profile of the volume's z axis binned by
  ``sz``, along columns that of its in-plane axes binned by ``sx`` (one separable matrix per
  detector axis, built by :meth:`ctsr.lrmodel.Profile.matrix`). The paper's ``A``, the mean
  over each ``sy x sx`` block, is :meth:`DetectorBinning.average`.
* ``A_pinv``: its Moore-Penrose pseudo-inverse (per axis, since ``A`` is a Kronecker product):
  ``A(A_pinv(y)) == y``, and ``A_pinv(A(.))`` is the orthogonal projection onto the range.
  For the block mean it copies each LR pixel into its block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..lrmodel import LRModel, Profile

Scale2 = tuple[int, int]


class DetectorBinning:
    """``A``: HR detector -> LR detector, ``scale = (sy, sx)`` (rows, cols), with the blur
    profile of each detector axis (widths in HR pixels, ``slab`` via ``hr_spacing_mm``)."""

    def __init__(self, rows: Profile, cols: Profile, scale: Scale2, hr_spacing_mm=(1.0, 1.0)):
        self.profiles, self.scale = (rows, cols), (int(scale[0]), int(scale[1]))
        self.hr_spacing_mm = tuple(float(s) for s in hr_spacing_mm)
        if min(self.scale) < 1:
            raise ValueError(f"detector binning must be positive integers, not {scale}")
        self._cache: dict = {}

    @classmethod
    def average(cls, scale: Scale2) -> "DetectorBinning":
        """The mean over each ``sy x sx`` block (the paper's ``A``)."""
        return cls(Profile("box"), Profile("box"), scale)

    @classmethod
    def from_lr_model(cls, model: LRModel, scale: Scale2, hr_spacing_zx_mm) -> "DetectorBinning":
        """Rows follow the volume's z axis (profile ``model.profiles[2]``), columns its x axis."""
        rows, cols = model.profiles[2] or Profile("box"), model.profiles[0] or Profile("box")
        return cls(rows, cols, scale, hr_spacing_zx_mm)

    def __repr__(self) -> str:
        return f"DetectorBinning(rows={self.profiles[0]}, cols={self.profiles[1]}, scale={self.scale})"

    def _matrices(self, hr_shape, like: torch.Tensor):
        key = (tuple(hr_shape), like.dtype, like.device)
        if key not in self._cache:
            mats = [torch.from_numpy(p.matrix(n, s, h).toarray()).to(torch.float64)
                    for p, n, s, h in zip(self.profiles, hr_shape, self.scale, self.hr_spacing_mm)]
            pinvs = [torch.linalg.pinv(m) for m in mats]
            self._cache[key] = [m.to(like.dtype).to(like.device) for m in mats + pinvs]
        return self._cache[key]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``A(x)``: ``[N, 1, H, W]`` -> ``[N, 1, H // sy, W // sx]``."""
        rows, cols, _, _ = self._matrices(x.shape[-2:], x)
        return rows @ x @ cols.T

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        """``A_pinv(y)``: ``[N, 1, h, w]`` -> ``[N, 1, h * sy, w * sx]``."""
        hr_shape = (y.shape[-2] * self.scale[0], y.shape[-1] * self.scale[1])
        _, _, rows_pinv, cols_pinv = self._matrices(hr_shape, y)
        return rows_pinv @ y @ cols_pinv.T


def as_binning(operator) -> DetectorBinning:
    """A :class:`DetectorBinning`, or a ``(sy, sx)`` tuple meaning the block mean."""
    return operator if isinstance(operator, DetectorBinning) else DetectorBinning.average(tuple(operator))


def project_to_range(x: torch.Tensor, target: torch.Tensor, operator, weight=1.0) -> torch.Tensor:
    """DDNM's correction ``x - weight * A_pinv(A(x) - target)``: with ``weight = 1`` the result
    keeps ``x``'s null-space part and has ``A(result) == target``. ``operator``: a
    :class:`DetectorBinning` or ``(sy, sx)`` for the block mean."""
    operator = as_binning(operator)
    return x - weight * operator.pinv(operator(x) - target)


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
