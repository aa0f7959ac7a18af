"""Adaptive density control: initialization from a residual volume, clone/split, prune.

Every operation returns the new Gaussians and ``source`` [N_new], the index of the old
Gaussian each new one comes from, so the fit can carry Adam's moments along.
"""

from __future__ import annotations

import math

import torch

from ..geometry import ConeGeometry
from .model import SignedGaussians
from .kernels import voxelize  # the fastest backend for the device (numba on CPU, Triton on CUDA)


def initialize(residual: torch.Tensor, geometry: ConeGeometry, count: int, generator: torch.Generator,
               gamma: float = 0.1) -> SignedGaussians:
    """``count`` isotropic Gaussians that approximate ``residual`` ([K, J, I], normalized
    intensity): half the centres drawn with probability proportional to ``|residual|``, half
    uniformly, each jittered inside its voxel; the standard deviation is half the mean spacing
    of the centres; densities are the residual at the centre divided by the summed weight of
    all Gaussians there (so the voxelized sum starts close to the residual)."""
    flat = residual.reshape(-1).abs().double()
    n_voxels = flat.numel()
    weights = flat / flat.sum() if float(flat.sum()) > 0 else torch.full_like(flat, 1.0 / n_voxels)
    weights = 0.5 * weights + 0.5 / n_voxels
    count = min(count, n_voxels)
    # drawn on the CPU, where the generator lives: the same centres for a seed on any device
    picked = torch.multinomial(weights.cpu(), count, replacement=False, generator=generator).to(residual.device)
    centres = geometry.voxel_centres(residual.device, residual.dtype).reshape(-1, 3)[picked]
    spacing = torch.tensor(geometry.dVoxel[::-1], dtype=residual.dtype, device=residual.device)
    jitter = torch.rand(count, 3, generator=generator).to(residual) - 0.5
    means = centres + jitter * spacing
    sigma = 0.5 * min(geometry.dVoxel) * (n_voxels / count) ** (1 / 3)
    unit = SignedGaussians.isotropic(means, sigma, torch.ones(count, dtype=residual.dtype), gamma)
    with torch.no_grad():
        coverage = voxelize(unit, geometry).reshape(-1)[picked]
    density = residual.reshape(-1)[picked] / coverage.clamp(min=1.0)
    return SignedGaussians.isotropic(means, sigma, density, gamma)


def prune(gaussians: SignedGaussians, geometry: ConeGeometry, min_density: float = 1e-5):
    """Drop Gaussians with ``|rho| < min_density`` or a centre outside the volume box."""
    with torch.no_grad():
        like = dict(dtype=gaussians.means.dtype, device=gaussians.means.device)
        half = torch.tensor(geometry.half_extent[::-1].copy(), **like)
        offset = torch.tensor(geometry.offOrigin[::-1], **like)
        inside = ((gaussians.means - offset).abs() <= half).all(-1)
        keep = (gaussians.density().abs() >= min_density) & inside
    source = torch.nonzero(keep)[:, 0]
    return gaussians.select(source), source


def densify(gaussians: SignedGaussians, grad_score: torch.Tensor, fraction: float, cap: int,
            split_sigma: float, generator: torch.Generator):
    """Refine the ``fraction`` of Gaussians with the largest ``grad_score`` (accumulated
    positional gradient), within ``cap`` Gaussians in all: those whose largest standard
    deviation is below ``split_sigma`` (scene units) are cloned (two copies, half the density
    each), the others split into two smaller ones (scales / 1.6, centres drawn from the
    parent, mass conserved)."""
    n = len(gaussians)
    budget = min(int(math.ceil(fraction * n)), cap - n)
    if budget <= 0:
        return gaussians.detached(), torch.arange(n, device=grad_score.device)
    chosen = torch.topk(grad_score, budget).indices
    g = gaussians.detached()
    big = g.log_scales[chosen].amax(-1).exp() >= split_sigma
    # clones: the parent stays (halved) and a copy is appended
    clone = chosen[~big]
    g.raw_density[clone] *= 0.5
    # splits: the parent shrinks and moves, a sibling is appended
    split = chosen[big]
    if len(split):
        rot = g.rotations()[split]
        sigma = g.log_scales[split].exp()
        offsets = (rot @ (torch.randn(len(split), 3, 1, generator=generator).to(sigma) * sigma[..., None]))[..., 0]
        sibling_means = g.means[split] - offsets
        g.means[split] += offsets
        g.log_scales[split] -= math.log(1.6)
        g.raw_density[split] *= 1.6**3 / 2
    source = torch.cat([torch.arange(n, device=chosen.device), clone, split])
    new = g.select(source)
    if len(split):
        new.means[n + len(clone):] = sibling_means
    return new, source
