"""Exact line-integral renderer of signed Gaussians (the torch reference, CPU and CUDA).

For a ray ``o + t r`` (``|r| = 1``) and a Gaussian (density ``rho``, mean ``m``, precision
``P``), with ``d`` any point of the ray minus ``m``:
``integral = rho * sqrt(2 pi / a) * exp(-(c - b^2 / a) / 2)``, ``a = r.P.r``, ``b = r.P.d``,
``c = d.P.d`` (DESIGN.md section 3). ``d`` is taken at the ray point closest to the mean, which
keeps ``c - b^2 / a`` free of cancellation. Each pixel's value is the plain sum over Gaussians
(no compositing, no opacity cut-off; negative densities add negatively). Each Gaussian is
evaluated only on the pixels of its footprint box (:mod:`.footprint`), so the cost is
Gaussians x footprint pixels. Output ``[V, nv, nu]`` in normalized intensity x scene units, the
units of :func:`ctsr.projector.forward_project`. Differentiable by autograd in every parameter.
"""

from __future__ import annotations

import math

import torch

from ..geometry import ConeGeometry
from .footprint import FOOTPRINT_SIGMAS, bounding_radius, enumerate_boxes, pixel_boxes
from .model import SignedGaussians


def render(gaussians: SignedGaussians, geometry: ConeGeometry, views=None,
           sigmas: float = FOOTPRINT_SIGMAS) -> torch.Tensor:
    """Projections [len(views), nv, nu] of ``gaussians`` for ``views`` (all by default)."""
    views = range(geometry.n_views) if views is None else [int(v) for v in views]
    means = gaussians.means
    density = gaussians.density()
    precision = gaussians.precisions()
    radius = bounding_radius(gaussians, sigmas)
    origin, direction = geometry.rays(list(views), means.device, means.dtype)
    n_v, n_u = geometry.nDetector
    p6 = _six(precision)
    images = []
    for index, view in enumerate(views):
        row0, row1, col0, col1 = pixel_boxes(means.detach(), radius, geometry, view)
        starts = torch.stack([row0, col0], -1)
        sizes = torch.stack([row1 - row0 + 1, col1 - col0 + 1], -1)
        item, pos = enumerate_boxes(starts, sizes)
        pixel = pos[:, 0] * n_u + pos[:, 1]
        rays = direction[index].reshape(-1, 3)[pixel]
        if geometry.mode == "cone":
            values = _cone_integrals(origin[index, 0, 0], rays, means, p6, density, item)
        else:
            values = line_integrals(origin[index].reshape(-1, 3)[pixel], rays, means[item],
                                    precision[item], density[item])
        image = torch.zeros(n_v * n_u, dtype=values.dtype, device=values.device).index_add(0, pixel, values)
        images.append(image.reshape(n_v, n_u))
    return torch.stack(images)


def line_integrals(origin, direction, mean, precision, density):
    """Exact integral along each ray ``origin + t direction`` (unit directions, [M, 3]) of the
    matching Gaussian (``mean`` [M, 3], ``precision`` [M, 3, 3], ``density`` [M])."""
    t_closest = ((mean - origin) * direction).sum(-1, keepdim=True).detach()
    d = origin + t_closest * direction - mean  # the integral does not depend on this choice
    pr = (precision @ direction[..., None])[..., 0]
    a = (direction * pr).sum(-1)
    b = (d * pr).sum(-1)
    c = (d * (precision @ d[..., None])[..., 0]).sum(-1)
    return density * torch.sqrt(2 * math.pi / a) * torch.exp(-0.5 * (c - b * b / a))


def _six(precision):
    """The 6 distinct entries (xx, yy, zz, xy, xz, yz) of symmetric [N, 3, 3] matrices, [N, 6]."""
    return torch.stack([precision[:, 0, 0], precision[:, 1, 1], precision[:, 2, 2],
                        precision[:, 0, 1], precision[:, 0, 2], precision[:, 1, 2]], -1)


def _quad(p6, x, y):
    """x^T P y for vectors given as 3 component tensors, P as its 6 entries (tensors)."""
    pxx, pyy, pzz, pxy, pxz, pyz = p6
    x0, x1, x2 = x
    y0, y1, y2 = y
    return (pxx * x0 * y0 + pyy * x1 * y1 + pzz * x2 * y2 + pxy * (x0 * y1 + x1 * y0)
            + pxz * (x0 * y2 + x2 * y0) + pyz * (x1 * y2 + x2 * y1))


def _cone_integrals(source, rays, means, p6, density, item):
    """Cone-beam fast path, the same integral written around the ray through the mean: with
    ``L = |m - s|``, ``r0 = (m - s) / L`` (per Gaussian) and ``delta = r - r0`` (per pair),
    ``c - b^2 / a = L^2 (C delta.P.delta - (delta.P.r0)^2) / A`` where ``C = r0.P.r0`` and
    ``A = r.P.r = C + 2 delta.P.r0 + delta.P.delta``: no cancellation between large terms."""
    offset = means - source
    length = offset.norm(dim=-1)
    r0 = offset / length[:, None]
    pr0 = torch.stack([
        p6[:, 0] * r0[:, 0] + p6[:, 3] * r0[:, 1] + p6[:, 4] * r0[:, 2],
        p6[:, 3] * r0[:, 0] + p6[:, 1] * r0[:, 1] + p6[:, 5] * r0[:, 2],
        p6[:, 4] * r0[:, 0] + p6[:, 5] * r0[:, 1] + p6[:, 2] * r0[:, 2]], -1)
    big_c = (r0 * pr0).sum(-1)
    # per pair, as separate component tensors (cheaper backward than column slices)
    delta = (rays - r0[item]).unbind(-1)
    p6i = p6[item].unbind(-1)
    pr0i = pr0[item].unbind(-1)
    dpd = _quad(p6i, delta, delta)
    dpr = delta[0] * pr0i[0] + delta[1] * pr0i[1] + delta[2] * pr0i[2]
    cc = big_c[item]
    a = cc + 2 * dpr + dpd
    exponent = length[item] ** 2 * (cc * dpd - dpr * dpr) / a
    return density[item] * torch.sqrt(2 * math.pi / a) * torch.exp(-0.5 * exponent)
