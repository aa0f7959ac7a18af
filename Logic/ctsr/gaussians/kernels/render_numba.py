"""CPU kernels (numba) of the exact line-integral renderer, forward and backward.

The maths and the footprint boxes are those of :func:`ctsr.gaussians.render` (the torch
reference) and of :mod:`.render_triton`: for a pixel's ray ``o + t r`` and a Gaussian
(``rho``, mean ``m``, precision ``P``), ``d`` = the ray point closest to ``m`` minus ``m``,
``a = r.P.r``, ``b = r.P.d``, ``c = d.P.d``, ``value = rho sqrt(2 pi / a) exp(-(c - b^2/a) / 2)``,
summed over the Gaussians whose box (:func:`ctsr.gaussians.footprint.pixel_boxes`) holds the
pixel; no other cut-off. Rays are built from the per-view frames as
:meth:`ConeGeometry.rays` builds them.

Why: the reference materializes every Gaussian-pixel pair as tensors and is memory-bound
(benchmarks/kernels_bench.md); these loops keep each pair in registers.

Precision and order: everything is computed and accumulated in float64 and the images are
returned in the Gaussians' dtype. Forward: the work is split into (view, band of detector rows)
tasks, and each pixel sums its Gaussians in increasing index; backward: one task per Gaussian,
which sums its pixels in view, row, column order. Both are deterministic and independent of
the number of threads.

Gradients (as in :mod:`.render_triton`): with ``w = d - (b / a) r``,
``dv/drho = sqrt(2 pi / a) exp(-q / 2)``, ``dv/dm = v P w``,
``dv/dP = -(v / 2) (r r^T / a + w w^T)``; log-scales, quaternions and raw densities follow by
torch autograd through :meth:`SignedGaussians.precisions` and :meth:`SignedGaussians.density`.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

from ...geometry import ConeGeometry
from ..footprint import FOOTPRINT_SIGMAS, bounding_radius, view_boxes
from ..model import SignedGaussians
from .numba_function import KernelFunction
from .packing import pack_frames

_TWO_PI = 2.0 * math.pi


@numba.njit(inline="always")
def _ray(frame, row, col, n_v, n_u, d_v, d_u, dso, cone):
    """Origin and unit direction of the ray of pixel (row, col); ``frame`` = source (cone) or
    direction stand-in, detector centre, e_u, e_v, toward-source (15 numbers)."""
    u = (col - (n_u - 1) * 0.5) * d_u
    v = (row - (n_v - 1) * 0.5) * d_v
    px = frame[3] + u * frame[6] + v * frame[9]
    py = frame[4] + u * frame[7] + v * frame[10]
    pz = frame[5] + u * frame[8] + v * frame[11]
    if cone:
        ox, oy, oz = frame[0], frame[1], frame[2]
        rx, ry, rz = px - ox, py - oy, pz - oz
        norm = math.sqrt(rx * rx + ry * ry + rz * rz)
        rx, ry, rz = rx / norm, ry / norm, rz / norm
    else:
        rx, ry, rz = -frame[12], -frame[13], -frame[14]
        ox, oy, oz = px - dso * rx, py - dso * ry, pz - dso * rz
    return ox, oy, oz, rx, ry, rz


@numba.njit(inline="always")
def _pair(ox, oy, oz, rx, ry, rz, mx, my, mz, pxx, pxy, pxz, pyy, pyz, pzz):
    """The line-integral terms of one ray and one Gaussian: the shape (value / rho), ``b / a``,
    ``w = d - (b / a) r`` and ``a``."""
    t = (mx - ox) * rx + (my - oy) * ry + (mz - oz) * rz
    dx, dy, dz = ox + t * rx - mx, oy + t * ry - my, oz + t * rz - mz
    prx = pxx * rx + pxy * ry + pxz * rz
    pry = pxy * rx + pyy * ry + pyz * rz
    prz = pxz * rx + pyz * ry + pzz * rz
    pdx = pxx * dx + pxy * dy + pxz * dz
    pdy = pxy * dx + pyy * dy + pyz * dz
    pdz = pxz * dx + pyz * dy + pzz * dz
    a = rx * prx + ry * pry + rz * prz
    b = dx * prx + dy * pry + dz * prz
    c = dx * pdx + dy * pdy + dz * pdz
    ratio = b / a
    shape = math.sqrt(_TWO_PI / a) * math.exp(-0.5 * (c - b * ratio))
    return shape, ratio, dx - ratio * rx, dy - ratio * ry, dz - ratio * rz, a


@numba.njit(parallel=True, cache=True)
def _forward(frames, boxes, means, prec6, density, n_v, n_u, d_v, d_u, dso, cone, bands, out):
    n_views, n_gauss = boxes.shape[0], boxes.shape[1]
    band = (n_v + bands - 1) // bands
    for task in numba.prange(n_views * bands):
        view = task // bands
        first_row = (task % bands) * band
        last_row = min(n_v, first_row + band) - 1
        frame = frames[view]
        for g in range(n_gauss):
            row0 = max(boxes[view, g, 0], first_row)
            row1 = min(boxes[view, g, 1], last_row)
            col0, col1 = boxes[view, g, 2], boxes[view, g, 3]
            if row1 < row0 or col1 < col0:
                continue
            mx, my, mz = means[g, 0], means[g, 1], means[g, 2]
            p = prec6[g]
            rho = density[g]
            for row in range(row0, row1 + 1):
                for col in range(col0, col1 + 1):
                    ox, oy, oz, rx, ry, rz = _ray(frame, row, col, n_v, n_u, d_v, d_u, dso, cone)
                    shape = _pair(ox, oy, oz, rx, ry, rz, mx, my, mz,
                                  p[0], p[1], p[2], p[3], p[4], p[5])[0]
                    out[view, row, col] += rho * shape


@numba.njit(parallel=True, cache=True)
def _backward(frames, boxes, means, prec6, density, grad_out, n_v, n_u, d_v, d_u, dso, cone, grad):
    n_views, n_gauss = boxes.shape[0], boxes.shape[1]
    for g in numba.prange(n_gauss):
        mx, my, mz = means[g, 0], means[g, 1], means[g, 2]
        p = prec6[g]
        rho = density[g]
        acc = grad[g]  # this task's own row: mean x, y, z; P xx, xy, xz, yy, yz, zz; rho
        for view in range(n_views):
            frame = frames[view]
            for row in range(boxes[view, g, 0], boxes[view, g, 1] + 1):
                for col in range(boxes[view, g, 2], boxes[view, g, 3] + 1):
                    upstream = grad_out[view, row, col]
                    if upstream == 0.0:
                        continue
                    ox, oy, oz, rx, ry, rz = _ray(frame, row, col, n_v, n_u, d_v, d_u, dso, cone)
                    shape, ratio, wx, wy, wz, a = _pair(ox, oy, oz, rx, ry, rz, mx, my, mz,
                                                        p[0], p[1], p[2], p[3], p[4], p[5])
                    acc[9] += upstream * shape
                    gv = upstream * rho * shape
                    acc[0] += gv * (p[0] * wx + p[1] * wy + p[2] * wz)
                    acc[1] += gv * (p[1] * wx + p[3] * wy + p[4] * wz)
                    acc[2] += gv * (p[2] * wx + p[4] * wy + p[5] * wz)
                    h = -0.5 * gv
                    ha = h / a
                    acc[3] += ha * rx * rx + h * wx * wx
                    acc[4] += ha * rx * ry + h * wx * wy
                    acc[5] += ha * rx * rz + h * wx * wz
                    acc[6] += ha * ry * ry + h * wy * wy
                    acc[7] += ha * ry * rz + h * wy * wz
                    acc[8] += ha * rz * rz + h * wz * wz


class _Launch:
    """The non-differentiable part of one render call: the per-view frames and footprint boxes."""

    def __init__(self, means, radius, geometry: ConeGeometry, views):
        self.n_views = len(views)
        self.n_v, self.n_u = geometry.nDetector
        self.frames = pack_frames(geometry, views).numpy()
        self.boxes = view_boxes(means, radius, geometry, views).numpy()  # int64 [V, N, 4]
        (d_v, d_u) = geometry.dDetector
        self.constants = (self.n_v, self.n_u, float(d_v), float(d_u), float(geometry.DSO),
                          geometry.mode == "cone")

    def run_forward(self, means, prec6, density):
        bands = max(1, min(self.n_v, -(-2 * numba.get_num_threads() // max(1, self.n_views))))
        out = np.zeros((self.n_views, self.n_v, self.n_u))
        _forward(self.frames, self.boxes, means, prec6, density, *self.constants, bands, out)
        return out

    def run_backward(self, means, prec6, density, grad_out, grad):
        _backward(self.frames, self.boxes, means, prec6, density, grad_out, *self.constants, grad)


def render_numba(gaussians: SignedGaussians, geometry: ConeGeometry, views=None,
                 sigmas: float = FOOTPRINT_SIGMAS) -> torch.Tensor:
    """:func:`ctsr.gaussians.render` by the numba kernels (CPU tensors): projections
    [len(views), nv, nu] in normalized intensity x scene units, differentiable in every
    parameter."""
    views = list(range(geometry.n_views)) if views is None else [int(v) for v in views]
    means = gaussians.means
    if means.device.type != "cpu":
        raise ValueError(f"the numba renderer runs on CPU tensors, not {means.device}")
    radius = bounding_radius(gaussians, sigmas)
    launch = _Launch(means.detach(), radius, geometry, views)
    return KernelFunction.apply(means, gaussians.precisions(), gaussians.density(), launch)
