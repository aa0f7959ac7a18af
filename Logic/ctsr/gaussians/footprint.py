"""Which detector pixels and voxels a Gaussian can touch: boxes around its bounding sphere.

A Gaussian is bounded by the sphere of radius ``k * max(s)`` about its mean (``k`` =
``sigmas``); everything outside contributes less than ``exp(-k^2 / 2)`` of the peak and is left
out. The bounds are exact for that sphere: in cone beam its u range is the pair of tangent
lines from the source to the sphere's disc in the (u, source-axis) plane (u depends only on
those two coordinates), and likewise for v.
"""

from __future__ import annotations

import torch

from ..geometry import ConeGeometry

#: Default bound, in standard deviations: a Gaussian's value outside is < 0.22 % of its peak.
FOOTPRINT_SIGMAS = 3.5


def bounding_radius(gaussians, sigmas: float = FOOTPRINT_SIGMAS) -> torch.Tensor:
    """Radius [N] (scene units, detached) of each Gaussian's bounding sphere: ``sigmas`` times
    its largest standard deviation."""
    return sigmas * gaussians.log_scales.detach().amax(-1).exp()


def view_boxes(means, radius, geometry: ConeGeometry, views) -> torch.Tensor:
    """:func:`pixel_boxes` for several views, stacked: long [len(views), N, 4] holding
    (row0, row1, col0, col1) per view and Gaussian."""
    return torch.stack([torch.stack(pixel_boxes(means, radius, geometry, v), -1) for v in views])


def pixel_boxes(means, radius, geometry: ConeGeometry, view: int):
    """Inclusive pixel ranges (row0, row1, col0, col1) [N] each, of the Gaussians with centres
    ``means`` [N, 3] and bounding radii ``radius`` [N] (scene units) in ``view``; empty boxes
    have row1 < row0 or col1 < col0."""
    source, centre, e_u, e_v, toward = (t[view] for t in geometry.view_frames(means.device, means.dtype))
    mu, mz = means @ e_u, means[:, 2]
    if geometry.mode == "cone":
        depth = geometry.DSO - means @ toward
        u_lo, u_hi = _tangents(mu, depth, radius, geometry.DSD)
        v_lo, v_hi = _tangents(mz, depth, radius, geometry.DSD)
    else:
        u_lo, u_hi, v_lo, v_hi = mu - radius, mu + radius, mz - radius, mz + radius
    (n_v, n_u), (d_v, d_u) = geometry.nDetector, geometry.dDetector
    col0 = torch.ceil(u_lo / d_u + (n_u - 1) / 2).clamp(0, n_u).long()
    col1 = torch.floor(u_hi / d_u + (n_u - 1) / 2).clamp(-1, n_u - 1).long()
    row0 = torch.ceil(v_lo / d_v + (n_v - 1) / 2).clamp(0, n_v).long()
    row1 = torch.floor(v_hi / d_v + (n_v - 1) / 2).clamp(-1, n_v - 1).long()
    return row0, row1, col0, col1


def _tangents(lateral, depth, radius, dsd):
    """Detector coordinate range of a disc (centre at ``lateral`` off the axis, ``depth`` from
    the source, radius ``radius``) seen from the source, on a detector at distance ``dsd``."""
    angle = torch.atan2(lateral, depth)
    half = torch.asin((radius / torch.hypot(lateral, depth)).clamp(max=0.999))
    lo = (angle - half).clamp(min=-1.5)
    hi = (angle + half).clamp(max=1.5)
    return dsd * torch.tan(lo), dsd * torch.tan(hi)


def enumerate_boxes(starts, sizes):
    """All (item, offset) pairs of boxes given per-item ``starts`` [N, D] and ``sizes`` [N, D]
    (non-negative): returns ``item`` [M] and the D-dimensional positions [M, D], row-major."""
    sizes = sizes.clamp(min=0)
    counts = sizes.prod(-1)
    item = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    first = torch.cumsum(counts, 0) - counts
    local = torch.arange(int(counts.sum()), device=counts.device) - first[item]
    positions = []
    for axis in range(sizes.shape[1] - 1, -1, -1):
        size = sizes[item, axis]
        positions.append(starts[item, axis] + local % size)
        local = local // size
    return item, torch.stack(positions[::-1], -1)
