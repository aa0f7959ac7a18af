"""CPU kernels (numba) of the voxelizer, forward and backward.

The maths and boxes of :func:`ctsr.gaussians.voxelize` (the torch reference): each Gaussian adds
``rho * exp(-d.P.d / 2)`` (``d`` = voxel centre - mean, scene x, y, z) to the voxels of the box
around its bounding sphere (:func:`ctsr.gaussians.voxelize.voxel_boxes`), clipped to the
requested region; no other cut-off. Output [k1 - k0, j1 - j0, i1 - i0] (KJI), normalized
intensity, in the Gaussians' dtype.

Float64 throughout. Forward: the region is split into slabs along k, and each voxel sums its
Gaussians in increasing index; backward: one task per Gaussian. Deterministic and independent
of the number of threads. Gradients: ``dv/drho = exp(-q / 2)``, ``dv/dm = v P d``,
``dv/dP = -v d d^T / 2`` (as in :mod:`.voxelize_triton`).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

from ...geometry import ConeGeometry
from ..footprint import FOOTPRINT_SIGMAS, bounding_radius
from ..model import SignedGaussians
from ..voxelize import grid_constants, voxel_boxes
from .numba_function import KernelFunction


@numba.njit(inline="always")
def _offset(grid, k, j, i, mx, my, mz):
    """Voxel (k, j, i)'s centre minus the mean, scene x, y, z; ``grid`` = half, spacing and
    offset, each in KJI order (:func:`ctsr.gaussians.voxelize.grid_constants`)."""
    return ((i - grid[2]) * grid[5] + grid[8] - mx,
            (j - grid[1]) * grid[4] + grid[7] - my,
            (k - grid[0]) * grid[3] + grid[6] - mz)


@numba.njit(inline="always")
def _quadratic(p, dx, dy, dz):
    """``d.P.d`` for ``P`` packed as (xx, xy, xz, yy, yz, zz)."""
    return (p[0] * dx * dx + p[3] * dy * dy + p[5] * dz * dz
            + 2.0 * (p[1] * dx * dy + p[2] * dx * dz + p[4] * dy * dz))


@numba.njit(parallel=True, cache=True)
def _forward(grid, start, stop, lo, means, prec6, density, slabs, out):
    n_gauss = start.shape[0]
    depth = out.shape[0]
    slab = (depth + slabs - 1) // slabs
    for task in numba.prange(slabs):
        k_first = lo[0] + task * slab
        k_stop = min(lo[0] + depth, k_first + slab)
        for g in range(n_gauss):
            k0, k1 = max(start[g, 0], k_first), min(stop[g, 0], k_stop)
            if k1 <= k0 or stop[g, 1] <= start[g, 1] or stop[g, 2] <= start[g, 2]:
                continue
            mx, my, mz = means[g, 0], means[g, 1], means[g, 2]
            p = prec6[g]
            rho = density[g]
            for k in range(k0, k1):
                for j in range(start[g, 1], stop[g, 1]):
                    for i in range(start[g, 2], stop[g, 2]):
                        dx, dy, dz = _offset(grid, k, j, i, mx, my, mz)
                        out[k - lo[0], j - lo[1], i - lo[2]] += rho * math.exp(-0.5 * _quadratic(p, dx, dy, dz))


@numba.njit(parallel=True, cache=True)
def _backward(grid, start, stop, lo, means, prec6, density, grad_out, grad):
    for g in numba.prange(start.shape[0]):
        mx, my, mz = means[g, 0], means[g, 1], means[g, 2]
        p = prec6[g]
        rho = density[g]
        acc = grad[g]  # this task's own row: mean x, y, z; P xx, xy, xz, yy, yz, zz; rho
        for k in range(start[g, 0], stop[g, 0]):
            for j in range(start[g, 1], stop[g, 1]):
                for i in range(start[g, 2], stop[g, 2]):
                    upstream = grad_out[k - lo[0], j - lo[1], i - lo[2]]
                    if upstream == 0.0:
                        continue
                    dx, dy, dz = _offset(grid, k, j, i, mx, my, mz)
                    shape = math.exp(-0.5 * _quadratic(p, dx, dy, dz))
                    acc[9] += upstream * shape
                    gv = upstream * rho * shape
                    acc[0] += gv * (p[0] * dx + p[1] * dy + p[2] * dz)
                    acc[1] += gv * (p[1] * dx + p[3] * dy + p[4] * dz)
                    acc[2] += gv * (p[2] * dx + p[4] * dy + p[5] * dz)
                    h = -0.5 * gv
                    acc[3] += h * dx * dx
                    acc[4] += h * dx * dy
                    acc[5] += h * dx * dz
                    acc[6] += h * dy * dy
                    acc[7] += h * dy * dz
                    acc[8] += h * dz * dz


class _Launch:
    """The non-differentiable part of one voxelize call: grid constants and voxel boxes."""

    def __init__(self, means, radius, geometry: ConeGeometry, region):
        self.lo = np.asarray(region[:3], dtype=np.int64)
        self.shape = tuple(int(h) - int(l) for l, h in zip(region[:3], region[3:]))
        self.grid = torch.cat(grid_constants(geometry, None, torch.float64)).numpy()
        start, stop = voxel_boxes(means, radius, geometry, region)  # the reference's boxes
        self.start, self.stop = start.numpy(), stop.numpy()

    def run_forward(self, means, prec6, density):
        slabs = max(1, min(self.shape[0], 4 * numba.get_num_threads()))
        out = np.zeros(self.shape)
        _forward(self.grid, self.start, self.stop, self.lo, means, prec6, density, slabs, out)
        return out

    def run_backward(self, means, prec6, density, grad_out, grad):
        _backward(self.grid, self.start, self.stop, self.lo, means, prec6, density, grad_out, grad)


def voxelize_numba(gaussians: SignedGaussians, geometry: ConeGeometry, region=None,
                   sigmas: float = FOOTPRINT_SIGMAS) -> torch.Tensor:
    """:func:`ctsr.gaussians.voxelize` by the numba kernels (CPU tensors): [K, J, I] on the grid
    of ``geometry`` or the crop ``region`` = (k0, j0, i0, k1, j1, i1), differentiable."""
    means = gaussians.means
    if means.device.type != "cpu":
        raise ValueError(f"the numba voxelizer runs on CPU tensors, not {means.device}")
    region = (0, 0, 0, *geometry.nVoxel) if region is None else tuple(int(r) for r in region)
    radius = bounding_radius(gaussians, sigmas)
    launch = _Launch(means.detach(), radius, geometry, region)
    return KernelFunction.apply(means, gaussians.precisions(), gaussians.density(), launch)
