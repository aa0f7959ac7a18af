"""Triton kernels of the voxelizer (forward and backward).

The same maths and boxes as :func:`ctsr.gaussians.voxelize`: each Gaussian adds
``rho * exp(-d.P.d / 2)`` (``d`` = voxel centre - mean, scene x, y, z) to the voxels of the box
around its bounding sphere (``sigmas`` standard deviations), clipped to the requested region;
no other cut-off. Output [k1 - k0, j1 - j0, i1 - i0] (KJI), normalized intensity.

Layout: one program per block of ``BLOCK^3`` voxels; the Gaussians touching a block come from
:func:`.binning.bin_boxes` (a torch sort on the device). Voxel centres are computed in the
kernel in float32 as the reference computes them.

Float32 and accumulation order: forward, each voxel's sum is accumulated in a float32 register
in increasing Gaussian index (deterministic); backward, per (Gaussian, block) the voxel terms
are reduced by ``tl.sum`` within the block and added to the Gaussian's gradient by float32
atomics, whose order across blocks is not fixed on a GPU (last-bit differences between runs).
Gradients: ``dv/drho = exp(-q / 2)``, ``dv/dm = v P d``, ``dv/dP = -v d d^T / 2``; log-scales,
quaternions and raw densities follow by torch autograd, as in :mod:`.render_triton`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ...geometry import ConeGeometry
from ..footprint import FOOTPRINT_SIGMAS, bounding_radius
from ..model import SignedGaussians
from ..voxelize import grid_constants, voxel_boxes
from .binning import bin_boxes
from .packing import pack_precisions, unpack_gradients

#: Default block side in voxels (8^3 = 512 voxels per program).
BLOCK = 8


@triton.jit
def _block_voxels(pid, blocks_j, blocks_i, size_k, size_j, size_i, lo_k, lo_j, lo_i, geo_ptr,
                  BLOCK: tl.constexpr):
    """Global voxel indices (k, j, i), validity, local flat index and centres of a block."""
    bk = pid // (blocks_j * blocks_i)
    bj = (pid // blocks_i) % blocks_j
    bi = pid % blocks_i
    idx = tl.arange(0, BLOCK * BLOCK * BLOCK)
    lk = bk * BLOCK + idx // (BLOCK * BLOCK)
    lj = bj * BLOCK + (idx // BLOCK) % BLOCK
    li = bi * BLOCK + idx % BLOCK
    valid = (lk < size_k) & (lj < size_j) & (li < size_i)
    k = lk + lo_k
    j = lj + lo_j
    i = li + lo_i
    # geo: half (k, j, i), spacing (k, j, i), offset (z, y, x)
    z = (k.to(tl.float32) - tl.load(geo_ptr + 0)) * tl.load(geo_ptr + 3) + tl.load(geo_ptr + 6)
    y = (j.to(tl.float32) - tl.load(geo_ptr + 1)) * tl.load(geo_ptr + 4) + tl.load(geo_ptr + 7)
    x = (i.to(tl.float32) - tl.load(geo_ptr + 2)) * tl.load(geo_ptr + 5) + tl.load(geo_ptr + 8)
    flat = (lk * size_j + lj) * size_i + li
    return k, j, i, valid, flat, x, y, z


@triton.jit
def _gaussian_at(g, k, j, i, valid, x, y, z, boxes_ptr, means_ptr, prec_ptr, dens_ptr):
    """One Gaussian on a block: exp(-q / 2) masked to its box, rho, d and P d."""
    box = boxes_ptr + g * 6
    inside = valid & (k >= tl.load(box)) & (k <= tl.load(box + 1)) \
        & (j >= tl.load(box + 2)) & (j <= tl.load(box + 3)) \
        & (i >= tl.load(box + 4)) & (i <= tl.load(box + 5))
    dx = x - tl.load(means_ptr + g * 3)
    dy = y - tl.load(means_ptr + g * 3 + 1)
    dz = z - tl.load(means_ptr + g * 3 + 2)
    p = prec_ptr + g * 6
    pxx = tl.load(p)
    pxy = tl.load(p + 1)
    pxz = tl.load(p + 2)
    pyy = tl.load(p + 3)
    pyz = tl.load(p + 4)
    pzz = tl.load(p + 5)
    pdx = pxx * dx + pxy * dy + pxz * dz
    pdy = pxy * dx + pyy * dy + pyz * dz
    pdz = pxz * dx + pyz * dy + pzz * dz
    shape = tl.exp(-0.5 * (dx * pdx + dy * pdy + dz * pdz))
    shape = tl.where(inside, shape, 0.0)
    return shape, tl.load(dens_ptr + g), dx, dy, dz, pdx, pdy, pdz


@triton.jit
def _voxelize_forward(geo_ptr, boxes_ptr, items_ptr, offsets_ptr, means_ptr, prec_ptr, dens_ptr,
                      out_ptr, blocks_j, blocks_i, size_k, size_j, size_i, lo_k, lo_j, lo_i,
                      BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    k, j, i, valid, flat, x, y, z = _block_voxels(pid, blocks_j, blocks_i, size_k, size_j, size_i,
                                                  lo_k, lo_j, lo_i, geo_ptr, BLOCK)
    acc = tl.zeros([BLOCK * BLOCK * BLOCK], dtype=tl.float32)
    start = tl.load(offsets_ptr + pid)
    stop = tl.load(offsets_ptr + pid + 1)
    for n in range(start, stop):
        g = tl.load(items_ptr + n)
        shape, rho, dx, dy, dz, pdx, pdy, pdz = _gaussian_at(g, k, j, i, valid, x, y, z, boxes_ptr,
                                                             means_ptr, prec_ptr, dens_ptr)
        acc += rho * shape
    tl.store(out_ptr + flat, acc, mask=valid)


@triton.jit
def _voxelize_backward(geo_ptr, boxes_ptr, items_ptr, offsets_ptr, means_ptr, prec_ptr, dens_ptr,
                       grad_out_ptr, grad_ptr, blocks_j, blocks_i, size_k, size_j, size_i,
                       lo_k, lo_j, lo_i, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    k, j, i, valid, flat, x, y, z = _block_voxels(pid, blocks_j, blocks_i, size_k, size_j, size_i,
                                                  lo_k, lo_j, lo_i, geo_ptr, BLOCK)
    go = tl.load(grad_out_ptr + flat, mask=valid, other=0.0)
    start = tl.load(offsets_ptr + pid)
    stop = tl.load(offsets_ptr + pid + 1)
    for n in range(start, stop):
        g = tl.load(items_ptr + n)
        shape, rho, dx, dy, dz, pdx, pdy, pdz = _gaussian_at(g, k, j, i, valid, x, y, z, boxes_ptr,
                                                             means_ptr, prec_ptr, dens_ptr)
        w_shape = go * shape
        w = rho * w_shape
        h = -0.5 * w
        out = grad_ptr + g * 10
        tl.atomic_add(out + 0, tl.sum(w * pdx, axis=0))
        tl.atomic_add(out + 1, tl.sum(w * pdy, axis=0))
        tl.atomic_add(out + 2, tl.sum(w * pdz, axis=0))
        tl.atomic_add(out + 3, tl.sum(h * dx * dx, axis=0))
        tl.atomic_add(out + 4, tl.sum(h * dx * dy, axis=0))
        tl.atomic_add(out + 5, tl.sum(h * dx * dz, axis=0))
        tl.atomic_add(out + 6, tl.sum(h * dy * dy, axis=0))
        tl.atomic_add(out + 7, tl.sum(h * dy * dz, axis=0))
        tl.atomic_add(out + 8, tl.sum(h * dz * dz, axis=0))
        tl.atomic_add(out + 9, tl.sum(w_shape, axis=0))


class _Launch:
    """The non-differentiable part of one voxelize call: grid constants, the Gaussians' voxel
    boxes (inclusive, global KJI indices, clipped to the region) and the block binning."""

    def __init__(self, means, radius, geometry: ConeGeometry, region, block):
        device = means.device
        self.n_gauss = means.shape[0]
        self.lo = tuple(int(r) for r in region[:3])
        self.shape = tuple(int(h) - int(l) for l, h in zip(region[:3], region[3:]))
        self.block = int(block)
        self.blocks = tuple(-(-s // self.block) for s in self.shape)
        half, spacing, offset = grid_constants(geometry, device, means.dtype)
        self.geo = torch.cat([half, spacing, offset]).to(torch.float32).contiguous()
        lo = torch.tensor(self.lo, device=device)
        first, stop = voxel_boxes(means, radius, geometry, region)
        last = stop - 1
        self.boxes = torch.stack([first, last], -1).reshape(-1, 6).to(torch.int32).contiguous()
        self.items, self.offsets = bin_boxes(first - lo, last - lo, (self.block,) * 3, self.shape)
        self.pairs = int((last - first + 1).clamp(min=0).prod(-1).sum())

    def grid(self):
        return (self.blocks[0] * self.blocks[1] * self.blocks[2],)

    def args(self):
        return (self.blocks[1], self.blocks[2], *self.shape, *self.lo)


class _VoxelizeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, precision, density, launch: _Launch):
        prec6 = pack_precisions(precision)
        means, density = means.contiguous(), density.contiguous()
        out = torch.empty(launch.shape, device=means.device, dtype=torch.float32)
        _voxelize_forward[launch.grid()](launch.geo, launch.boxes, launch.items, launch.offsets,
                                         means, prec6, density, out, *launch.args(), BLOCK=launch.block)
        ctx.save_for_backward(means, prec6, density)
        ctx.launch = launch
        return out

    @staticmethod
    def backward(ctx, grad_out):
        means, prec6, density = ctx.saved_tensors
        launch = ctx.launch
        grad = torch.zeros(launch.n_gauss, 10, device=means.device, dtype=torch.float32)
        _voxelize_backward[launch.grid()](launch.geo, launch.boxes, launch.items, launch.offsets,
                                          means, prec6, density, grad_out.contiguous(), grad,
                                          *launch.args(), BLOCK=launch.block)
        return unpack_gradients(grad) + (None,)


def voxelize_triton(gaussians: SignedGaussians, geometry: ConeGeometry, region=None,
                    sigmas: float = FOOTPRINT_SIGMAS, block: int = BLOCK) -> torch.Tensor:
    """:func:`ctsr.gaussians.voxelize` by the Triton kernels: [K, J, I] on the grid of
    ``geometry`` or the crop ``region`` = (k0, j0, i0, k1, j1, i1); float32 only."""
    means = gaussians.means
    if means.dtype != torch.float32:
        raise ValueError(f"the Triton voxelizer needs float32 Gaussians, got {means.dtype}")
    region = (0, 0, 0, *geometry.nVoxel) if region is None else tuple(int(r) for r in region)
    radius = bounding_radius(gaussians, sigmas)
    launch = _Launch(means.detach(), radius, geometry, region, block)
    return _VoxelizeFunction.apply(means, gaussians.precisions(), gaussians.density(), launch)


def voxelize_pairs(gaussians: SignedGaussians, geometry: ConeGeometry, region=None,
                   sigmas: float = FOOTPRINT_SIGMAS) -> int:
    """The number of Gaussian-voxel pairs a voxelization evaluates (both backends)."""
    region = (0, 0, 0, *geometry.nVoxel) if region is None else tuple(int(r) for r in region)
    radius = bounding_radius(gaussians, sigmas)
    return _Launch(gaussians.means.detach(), radius, geometry, region, BLOCK).pairs
