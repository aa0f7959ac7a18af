"""Triton kernels of the exact line-integral renderer (forward and backward).

The same maths as :func:`ctsr.gaussians.render.line_integrals`: for the ray ``o + t r`` of a
pixel and a Gaussian (``rho``, mean ``m``, precision ``P``), ``d`` = the ray point closest to
``m`` minus ``m``, ``a = r.P.r``, ``b = r.P.d``, ``c = d.P.d`` and
``value = rho * sqrt(2 pi / a) * exp(-(c - b^2 / a) / 2)``, summed over the Gaussians whose
footprint box (:func:`ctsr.gaussians.footprint.pixel_boxes`, the reference's boxes) holds the
pixel. No cut-off besides that box: small and negative contributions are all added.

Layout: one program per (view, tile of ``TILE_H`` x ``TILE_W`` pixels); the Gaussians touching a
tile come from :func:`.binning.bin_boxes`. Rays are built in the kernel from the per-view frame
(source, detector centre, u and v axes) as :meth:`ConeGeometry.rays` does, in float32.

Float32 and accumulation order:

- forward: every pixel's sum is accumulated in a float32 register in increasing Gaussian index
  (the binning's order), one program per pixel: deterministic, run to run and GPU to GPU;
- backward: per (Gaussian, tile) the pixel contributions are reduced in float32 by ``tl.sum``
  (a fixed tree within the tile), and the per-tile partial sums are added to the Gaussian's
  gradient with float32 atomics: the order of those atomic additions across tiles is not
  fixed on a GPU, so gradients may differ in the last bits between runs (the interpreter runs
  the tiles in order). The reference's ``index_add`` has the same property on CUDA.

Gradients: ``dv/drho = sqrt(2 pi / a) exp(-q / 2)``; ``dv/dm = v P (d - (b / a) r)`` (with ``d``
moved along the ray as in the reference, which does not change the value);
``dv/dP = va r r^T + vb d r^T + vc d d^T`` with ``va = -v (1 + b^2 / a) / (2 a)``,
``vb = v b / a``, ``vc = -v / 2``, returned symmetrized (P is symmetric). The gradients of the
log-scales, quaternions and raw densities follow from these by torch autograd through
:meth:`SignedGaussians.precisions` and :meth:`SignedGaussians.density`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ...geometry import ConeGeometry
from ..footprint import FOOTPRINT_SIGMAS, bounding_radius, view_boxes
from ..model import SignedGaussians
from .binning import bin_boxes
from .packing import pack_frames, pack_precisions, unpack_gradients

#: Default tile (rows, columns) of one program; 16 x 16 = 256 rays.
TILE = (16, 16)


@triton.jit
def _tile_rays(frames_ptr, pid, tiles_v, tiles_u, n_v, n_u, d_v, d_u, dso,
               CONE: tl.constexpr, TILE_H: tl.constexpr, TILE_W: tl.constexpr):
    """View index, pixel rows/cols and validity, ray origins and unit directions of a tile."""
    per_view = tiles_v * tiles_u
    view = pid // per_view
    rest = pid % per_view
    idx = tl.arange(0, TILE_H * TILE_W)
    row = (rest // tiles_u) * TILE_H + idx // TILE_W
    col = (rest % tiles_u) * TILE_W + idx % TILE_W
    valid = (row < n_v) & (col < n_u)
    f = frames_ptr + view * 15
    u = (col.to(tl.float32) - (n_u - 1) * 0.5) * d_u
    v = (row.to(tl.float32) - (n_v - 1) * 0.5) * d_v
    px = tl.load(f + 3) + u * tl.load(f + 6) + v * tl.load(f + 9)
    py = tl.load(f + 4) + u * tl.load(f + 7) + v * tl.load(f + 10)
    pz = tl.load(f + 5) + u * tl.load(f + 8) + v * tl.load(f + 11)
    if CONE:
        ox = tl.zeros_like(px) + tl.load(f + 0)
        oy = tl.zeros_like(px) + tl.load(f + 1)
        oz = tl.zeros_like(px) + tl.load(f + 2)
        rx = px - ox
        ry = py - oy
        rz = pz - oz
        norm = tl.sqrt(rx * rx + ry * ry + rz * rz)
        rx = rx / norm
        ry = ry / norm
        rz = rz / norm
    else:
        rx = tl.zeros_like(px) - tl.load(f + 12)
        ry = tl.zeros_like(px) - tl.load(f + 13)
        rz = tl.zeros_like(px) - tl.load(f + 14)
        ox = px - dso * rx
        oy = py - dso * ry
        oz = pz - dso * rz
    return view, row, col, valid, ox, oy, oz, rx, ry, rz


@triton.jit
def _integral(g, view, n_gauss, row, col, valid, ox, oy, oz, rx, ry, rz,
              boxes_ptr, means_ptr, prec_ptr, dens_ptr):
    """One Gaussian against a tile's rays: its box mask, d, P r, P d, a, b, the value, rho."""
    box = boxes_ptr + (view * n_gauss + g) * 4
    inside = valid & (row >= tl.load(box)) & (row <= tl.load(box + 1)) \
        & (col >= tl.load(box + 2)) & (col <= tl.load(box + 3))
    # mean minus origin, then d = (closest ray point) - mean
    mx = tl.load(means_ptr + g * 3) - ox
    my = tl.load(means_ptr + g * 3 + 1) - oy
    mz = tl.load(means_ptr + g * 3 + 2) - oz
    t = mx * rx + my * ry + mz * rz
    dx = t * rx - mx
    dy = t * ry - my
    dz = t * rz - mz
    p = prec_ptr + g * 6
    pxx = tl.load(p)
    pxy = tl.load(p + 1)
    pxz = tl.load(p + 2)
    pyy = tl.load(p + 3)
    pyz = tl.load(p + 4)
    pzz = tl.load(p + 5)
    prx = pxx * rx + pxy * ry + pxz * rz
    pry = pxy * rx + pyy * ry + pyz * rz
    prz = pxz * rx + pyz * ry + pzz * rz
    pdx = pxx * dx + pxy * dy + pxz * dz
    pdy = pxy * dx + pyy * dy + pyz * dz
    pdz = pxz * dx + pyz * dy + pzz * dz
    a = rx * prx + ry * pry + rz * prz
    b = dx * prx + dy * pry + dz * prz
    c = dx * pdx + dy * pdy + dz * pdz
    shape = tl.sqrt(6.283185307179586 / a) * tl.exp(-0.5 * (c - b * b / a))
    shape = tl.where(inside, shape, 0.0)
    rho = tl.load(dens_ptr + g)
    return shape, rho, a, b, dx, dy, dz, prx, pry, prz, pdx, pdy, pdz


@triton.jit
def _render_forward(frames_ptr, boxes_ptr, items_ptr, offsets_ptr, means_ptr, prec_ptr, dens_ptr,
                    out_ptr, n_gauss, tiles_v, tiles_u, n_v, n_u, d_v, d_u, dso,
                    CONE: tl.constexpr, TILE_H: tl.constexpr, TILE_W: tl.constexpr):
    pid = tl.program_id(0)
    view, row, col, valid, ox, oy, oz, rx, ry, rz = _tile_rays(
        frames_ptr, pid, tiles_v, tiles_u, n_v, n_u, d_v, d_u, dso, CONE, TILE_H, TILE_W)
    acc = tl.zeros([TILE_H * TILE_W], dtype=tl.float32)
    start = tl.load(offsets_ptr + pid)
    stop = tl.load(offsets_ptr + pid + 1)
    for k in range(start, stop):
        g = tl.load(items_ptr + k)
        shape, rho, a, b, dx, dy, dz, prx, pry, prz, pdx, pdy, pdz = _integral(
            g, view, n_gauss, row, col, valid, ox, oy, oz, rx, ry, rz,
            boxes_ptr, means_ptr, prec_ptr, dens_ptr)
        acc += rho * shape
    pixel = (view * n_v + row) * n_u + col
    tl.store(out_ptr + pixel, acc, mask=valid)


@triton.jit
def _render_backward(frames_ptr, boxes_ptr, items_ptr, offsets_ptr, means_ptr, prec_ptr, dens_ptr,
                     grad_out_ptr, grad_ptr, n_gauss, tiles_v, tiles_u, n_v, n_u, d_v, d_u, dso,
                     CONE: tl.constexpr, TILE_H: tl.constexpr, TILE_W: tl.constexpr):
    pid = tl.program_id(0)
    view, row, col, valid, ox, oy, oz, rx, ry, rz = _tile_rays(
        frames_ptr, pid, tiles_v, tiles_u, n_v, n_u, d_v, d_u, dso, CONE, TILE_H, TILE_W)
    pixel = (view * n_v + row) * n_u + col
    go = tl.load(grad_out_ptr + pixel, mask=valid, other=0.0)
    start = tl.load(offsets_ptr + pid)
    stop = tl.load(offsets_ptr + pid + 1)
    for k in range(start, stop):
        g = tl.load(items_ptr + k)
        shape, rho, a, b, dx, dy, dz, prx, pry, prz, pdx, pdy, pdz = _integral(
            g, view, n_gauss, row, col, valid, ox, oy, oz, rx, ry, rz,
            boxes_ptr, means_ptr, prec_ptr, dens_ptr)
        w_shape = go * shape            # d loss / d rho, per pixel
        w = rho * w_shape               # go * value
        ba = b / a
        # d value / d mean = value * P (d - (b / a) r)
        gmx = tl.sum(w * (pdx - ba * prx), axis=0)
        gmy = tl.sum(w * (pdy - ba * pry), axis=0)
        gmz = tl.sum(w * (pdz - ba * prz), axis=0)
        va = -0.5 * w * (1.0 + b * ba) / a
        vb = w * ba
        vc = -0.5 * w
        gxx = tl.sum(va * rx * rx + vb * dx * rx + vc * dx * dx, axis=0)
        gyy = tl.sum(va * ry * ry + vb * dy * ry + vc * dy * dy, axis=0)
        gzz = tl.sum(va * rz * rz + vb * dz * rz + vc * dz * dz, axis=0)
        gxy = tl.sum(va * rx * ry + 0.5 * vb * (dx * ry + dy * rx) + vc * dx * dy, axis=0)
        gxz = tl.sum(va * rx * rz + 0.5 * vb * (dx * rz + dz * rx) + vc * dx * dz, axis=0)
        gyz = tl.sum(va * ry * rz + 0.5 * vb * (dy * rz + dz * ry) + vc * dy * dz, axis=0)
        out = grad_ptr + g * 10
        tl.atomic_add(out + 0, gmx)
        tl.atomic_add(out + 1, gmy)
        tl.atomic_add(out + 2, gmz)
        tl.atomic_add(out + 3, gxx)
        tl.atomic_add(out + 4, gxy)
        tl.atomic_add(out + 5, gxz)
        tl.atomic_add(out + 6, gyy)
        tl.atomic_add(out + 7, gyz)
        tl.atomic_add(out + 8, gzz)
        tl.atomic_add(out + 9, tl.sum(w_shape, axis=0))


class _Launch:
    """Everything about one render call that is not a differentiable input: the geometry's
    per-view frames, the footprint boxes and the tile binning (all on the Gaussians' device)."""

    def __init__(self, means, radius, geometry: ConeGeometry, views, tile):
        device = means.device
        self.n_gauss = means.shape[0]
        self.n_views = len(views)
        self.n_v, self.n_u = geometry.nDetector
        self.d_v, self.d_u = geometry.dDetector
        self.dso = float(geometry.DSO)
        self.cone = geometry.mode == "cone"
        self.tile = tuple(int(t) for t in tile)
        self.tiles_v = -(-self.n_v // self.tile[0])
        self.tiles_u = -(-self.n_u // self.tile[1])
        self.frames = pack_frames(geometry, views, device).to(torch.float32).contiguous()
        boxes = view_boxes(means, radius, geometry, views)
        self.boxes = boxes.to(torch.int32).contiguous()  # [V, N, 4]: row0, row1, col0, col1
        view_col = torch.arange(self.n_views, device=device).repeat_interleave(self.n_gauss)
        flat = boxes.reshape(-1, 4)
        lo = torch.stack([view_col, flat[:, 0], flat[:, 2]], -1)
        hi = torch.stack([view_col, flat[:, 1], flat[:, 3]], -1)
        items, self.offsets = bin_boxes(lo, hi, (1, *self.tile), (self.n_views, self.n_v, self.n_u))
        self.items = (items % self.n_gauss).to(torch.int32).contiguous()  # box index -> Gaussian
        self.pairs = int(((boxes[..., 1] - boxes[..., 0] + 1).clamp(min=0)
                          * (boxes[..., 3] - boxes[..., 2] + 1).clamp(min=0)).sum())

    def grid(self):
        return (self.n_views * self.tiles_v * self.tiles_u,)

    def args(self):
        return (self.n_gauss, self.tiles_v, self.tiles_u, self.n_v, self.n_u,
                self.d_v, self.d_u, self.dso)

    def meta(self):
        return dict(CONE=self.cone, TILE_H=self.tile[0], TILE_W=self.tile[1])


class _RenderFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, precision, density, launch: _Launch):
        prec6 = pack_precisions(precision)
        means, density = means.contiguous(), density.contiguous()
        out = torch.empty(launch.n_views, launch.n_v, launch.n_u, device=means.device, dtype=torch.float32)
        _render_forward[launch.grid()](launch.frames, launch.boxes, launch.items, launch.offsets,
                                       means, prec6, density, out, *launch.args(), **launch.meta())
        ctx.save_for_backward(means, prec6, density)
        ctx.launch = launch
        return out

    @staticmethod
    def backward(ctx, grad_out):
        means, prec6, density = ctx.saved_tensors
        launch = ctx.launch
        grad = torch.zeros(launch.n_gauss, 10, device=means.device, dtype=torch.float32)
        _render_backward[launch.grid()](launch.frames, launch.boxes, launch.items, launch.offsets,
                                        means, prec6, density, grad_out.contiguous(), grad,
                                        *launch.args(), **launch.meta())
        return unpack_gradients(grad) + (None,)


def render_triton(gaussians: SignedGaussians, geometry: ConeGeometry, views=None,
                  sigmas: float = FOOTPRINT_SIGMAS, tile=TILE) -> torch.Tensor:
    """:func:`ctsr.gaussians.render` by the Triton kernels: projections [len(views), nv, nu]
    (normalized intensity x scene units), differentiable in every parameter. Float32 only."""
    views = list(range(geometry.n_views)) if views is None else [int(v) for v in views]
    means = gaussians.means
    if means.dtype != torch.float32:
        raise ValueError(f"the Triton renderer needs float32 Gaussians, got {means.dtype}")
    radius = bounding_radius(gaussians, sigmas)
    launch = _Launch(means.detach(), radius, geometry, views, tile)
    return _RenderFunction.apply(means, gaussians.precisions(), gaussians.density(), launch)


def render_pairs(gaussians: SignedGaussians, geometry: ConeGeometry, views=None,
                 sigmas: float = FOOTPRINT_SIGMAS) -> int:
    """The number of Gaussian-pixel pairs a render evaluates (both backends), for throughput."""
    views = list(range(geometry.n_views)) if views is None else [int(v) for v in views]
    radius = bounding_radius(gaussians, sigmas)
    return _Launch(gaussians.means.detach(), radius, geometry, views, TILE).pairs
