"""Voxelization: signed Gaussians evaluated at voxel centres and summed (scatter-add).

Each Gaussian contributes ``rho * exp(-d.P.d / 2)`` at the voxel centres inside the box around
its bounding sphere (``sigmas`` standard deviations, :mod:`.footprint`). Output in KJI order on
the grid of a :class:`ctsr.geometry.ConeGeometry`, normalized intensity. Processed in chunks of
Gaussians so the temporary memory stays bounded; differentiable by autograd.
"""

from __future__ import annotations

import torch

from ..geometry import ConeGeometry
from .footprint import FOOTPRINT_SIGMAS, bounding_radius, enumerate_boxes
from .model import SignedGaussians
from .render import _quad, _six

#: Gaussian-voxel pairs per chunk.
PAIRS_PER_CHUNK = 1 << 22


def voxelize(gaussians: SignedGaussians, geometry: ConeGeometry, region=None,
             sigmas: float = FOOTPRINT_SIGMAS) -> torch.Tensor:
    """The Gaussians' sum on the voxel grid, [K, J, I]; or on ``region`` = (k0, j0, i0, k1,
    j1, i1) (half-open voxel index bounds), a [k1 - k0, j1 - j0, i1 - i0] crop."""
    means = gaussians.means
    device, dtype = means.device, means.dtype
    if region is None:
        region = (0, 0, 0, *geometry.nVoxel)
    lo = torch.tensor(region[:3], device=device)
    shape = tuple(int(h - l) for l, h in zip(region[:3], region[3:]))
    half, spacing, offset = grid_constants(geometry, device, dtype)
    radius = bounding_radius(gaussians, sigmas)
    start, stop = voxel_boxes(means.detach(), radius, geometry, region)
    sizes = (stop - start).clamp(min=0)
    counts = sizes.prod(-1)
    out = torch.zeros(shape[0] * shape[1] * shape[2], device=device, dtype=dtype)
    density, p6 = gaussians.density(), _six(gaussians.precisions())
    for chunk in _chunks(counts):
        item, index = enumerate_boxes(start[chunk], sizes[chunk])
        item = chunk[item]
        position = ((index.to(dtype) - half) * spacing + offset).flip(-1)  # x, y, z
        d = position - means[item]
        d = d.unbind(-1)
        value = density[item] * torch.exp(-0.5 * _quad(p6[item].unbind(-1), d, d))
        local = index - lo
        flat = (local[:, 0] * shape[1] + local[:, 1]) * shape[2] + local[:, 2]
        out = out.index_add(0, flat, value)
    return out.reshape(shape)


def grid_constants(geometry: ConeGeometry, device, dtype):
    """``half``, ``spacing`` and ``offset``, each [3] in KJI order, such that the centre of voxel
    (k, j, i) is ``(index - half) * spacing + offset`` in scene (z, y, x)."""
    spacing = torch.tensor(geometry.dVoxel, device=device, dtype=dtype)
    offset = torch.tensor(geometry.offOrigin, device=device, dtype=dtype)
    half = (torch.tensor(geometry.nVoxel, device=device, dtype=dtype) - 1) / 2
    return half, spacing, offset


def voxel_boxes(means, radius, geometry: ConeGeometry, region):
    """Per Gaussian (centres ``means`` [N, 3] scene x, y, z; bounding radii ``radius`` [N]), the
    voxels inside its bounding sphere's box, clipped to ``region`` = (k0, j0, i0, k1, j1, i1):
    half-open global KJI index bounds ``start``, ``stop`` (long [N, 3]; empty when
    ``stop <= start`` on some axis)."""
    half, spacing, offset = grid_constants(geometry, means.device, means.dtype)
    centre = (means.flip(-1) - offset) / spacing + half  # [N, 3] k, j, i (fractional)
    reach = radius[:, None] / spacing
    lo = torch.tensor(region[:3], device=means.device)
    hi = torch.tensor(region[3:], device=means.device)
    start = torch.maximum(torch.ceil(centre - reach).long(), lo)
    stop = torch.minimum(torch.floor(centre + reach).long() + 1, hi)
    return start, stop


def _chunks(counts):
    """Index tensors splitting the Gaussians into runs of about PAIRS_PER_CHUNK pairs."""
    active = torch.nonzero(counts > 0)[:, 0]
    if len(active) == 0:
        return []
    cumulative = torch.cumsum(counts[active], 0)
    bins = torch.div(cumulative - 1, PAIRS_PER_CHUNK, rounding_mode="floor")
    return [active[bins == b] for b in torch.unique(bins)]
