"""Memory planning: estimate a job's peak memory before it starts, and split or refuse it.

The estimate is a sum of the arrays the zero-shot pipeline holds at its peak (per HR voxel,
per detector pixel and view, per Gaussian) plus a fixed overhead for the libraries; the
coefficients were calibrated against measured peak RSS (benchmarks/quality.json). When the
whole job does not fit in what is free (RAM on the CPU, VRAM on a GPU), the input is cut into
overlapping blocks (:mod:`ctsr.blocks`) small enough to fit; when even a small block or the
assembled output does not fit, the job is refused with one sentence saying how much it needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import UserError
from .memory import available_ram_bytes, available_vram_bytes, format_bytes

#: Bytes per HR voxel at the pipeline's peak (HU and normalized copies, float64 temporaries
#: of the consistency step, gradients of the voxelized residual).
BYTES_PER_HR_VOXEL = 48
#: Bytes per detector pixel and view (P_up, y, Y, rendered projections and their gradients).
BYTES_PER_PIXEL_VIEW = 24
#: Bytes per Gaussian (parameters, gradients, Adam moments, footprint temporaries).
BYTES_PER_GAUSSIAN = 4096
#: Python, torch, diffusers and the prior, loaded.
FIXED_BYTES = 700 << 20
#: Use at most this part of what is free (never drive the machine into swap).
SAFETY = 0.75
#: Overlap of neighbouring blocks, LR voxels; the smallest block side worth running.
BLOCK_OVERLAP = 8
MIN_BLOCK = 32


@dataclass(frozen=True)
class MemoryPlan:
    """``estimate`` and ``available`` in bytes; ``block_shape_kji`` None = one piece."""

    estimate: int
    available: int
    block_shape_kji: tuple[int, int, int] | None

    def describe(self) -> str:
        text = f"estimated peak memory {format_bytes(self.estimate)} of {format_bytes(self.available)} free"
        if self.block_shape_kji:
            text += f"; processing in blocks of {'x'.join(map(str, self.block_shape_kji[::-1]))} LR voxels"
        return text


def estimate_bytes(lr_shape_kji, scale, n_views: int, max_gaussians: int) -> int:
    """Peak bytes of the pipeline for an LR block of ``lr_shape_kji`` at ``scale`` (IJK)."""
    hr_shape = np.asarray(lr_shape_kji) * np.asarray(scale[::-1])
    hr_voxels = float(np.prod(hr_shape))
    detector_pixels = (1.7 * float(hr_shape.max())) ** 2  # magnified box seen from any angle
    return int(FIXED_BYTES + BYTES_PER_HR_VOXEL * hr_voxels + BYTES_PER_PIXEL_VIEW * detector_pixels * n_views
               + BYTES_PER_GAUSSIAN * max_gaussians)


def plan_job(lr_shape_kji, scale, n_views: int, max_gaussians: int, device="cpu",
             available: int | None = None) -> MemoryPlan:
    """Decide how to run: one piece, blocks, or refuse (:class:`UserError`)."""
    if available is None:
        available = available_vram_bytes(device) if str(device).startswith("cuda") else available_ram_bytes()
    budget = SAFETY * available
    whole = estimate_bytes(lr_shape_kji, scale, n_views, max_gaussians)
    if whole <= budget:
        return MemoryPlan(whole, available, None)
    # Blocks: the assembled output (float32, and its copy while it is written) must fit beside
    # one block.
    output = 8 * float(np.prod(np.asarray(lr_shape_kji) * np.asarray(scale[::-1])))
    side = max(lr_shape_kji)
    while side >= MIN_BLOCK:
        shape = tuple(min(n, side) for n in lr_shape_kji)
        block = estimate_bytes(shape, scale, n_views, max_gaussians)
        if block + output <= budget:
            return MemoryPlan(int(block + output), available, shape)
        side = int(side * 0.8)
    smallest = estimate_bytes(tuple(min(n, MIN_BLOCK) for n in lr_shape_kji), scale, n_views, max_gaussians)
    raise UserError(
        f"this job needs about {format_bytes(math.ceil((smallest + output) / SAFETY))} of memory even in "
        f"blocks, but only {format_bytes(available)} is free; use an ROI, a smaller scale or a larger machine.")
