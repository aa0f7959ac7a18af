"""How the kernels (Triton and numba) exchange per-Gaussian parameters and gradients with torch.

A symmetric precision matrix travels as its six upper-triangle entries in :data:`TRIU` order
(xx, xy, xz, yy, yz, zz); a Gaussian's gradient as one row of ten numbers: mean x, y, z, the
six precision entries in that order, density; a view as one row of fifteen numbers (source,
detector centre, u axis, v axis, toward-source direction; each x, y, z).
"""

from __future__ import annotations

import torch

#: Row and column indices of the packed upper triangle: xx, xy, xz, yy, yz, zz.
TRIU = ([0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2])


def pack_frames(geometry, views, device=None) -> torch.Tensor:
    """The per-view frames of :meth:`ConeGeometry.view_frames` for ``views``, one row of 15
    numbers each: float64 [len(views), 15]."""
    index = torch.as_tensor(views, device=device, dtype=torch.long)
    return torch.cat([t[index] for t in geometry.view_frames(device, torch.float64)], -1)


def pack_precisions(precision: torch.Tensor) -> torch.Tensor:
    """The six upper-triangle entries [N, 6] of symmetric precisions [N, 3, 3]."""
    return precision[:, TRIU[0], TRIU[1]].contiguous()


def unpack_gradients(grad: torch.Tensor):
    """Split per-Gaussian gradient rows [N, 10] (mean x, y, z; the six upper-triangle precision
    entries in :data:`TRIU` order; density) into the gradients of means [N, 3], the symmetric
    precisions [N, 3, 3] and densities [N]."""
    return grad[:, :3], grad[:, [3, 4, 5, 4, 6, 7, 5, 7, 8]].reshape(-1, 3, 3), grad[:, 9]
