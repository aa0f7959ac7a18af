"""Differentiable ray-marching projector, its exact adjoint, and FDK (CPU and CUDA, torch).

Volumes are torch tensors in **KJI order** ``[K, J, I]`` (or batched ``[B, K, J, I]``) on the
grid of a :class:`ctsr.geometry.ConeGeometry`; projections are ``[V, nv, nu]`` (or
``[B, V, nv, nu]``): view, detector row (v), detector column (u). A projection value is the
line integral of the volume along the pixel's ray with lengths in **scene units** (see
:mod:`ctsr.geometry`), i.e. value units x scene units.

The forward model is the line integral of the volume's trilinear interpolant (zero outside,
so it fades to zero over the half voxel beyond the box), sampled at ``samples_per_voxel``
midpoints per smallest voxel side along the longest chord (each ray's chord through the box is
split into the same number of equal steps). :func:`back_project` is the exact adjoint of that
discrete operator, and the autograd backward of :func:`forward_project` is :func:`back_project`,
so memory stays bounded by the chunk size in both directions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .geometry import ConeGeometry

#: Sample points per chunk (each costs ~16 bytes of temporary memory in the forward pass).
POINTS_PER_CHUNK = 1 << 23


def forward_project(volume: torch.Tensor, geometry: ConeGeometry, views=None,
                    samples_per_voxel: float = 1.0) -> torch.Tensor:
    """Project ``volume`` ([K, J, I] or [B, K, J, I]) for the chosen ``views`` (indices into
    ``geometry.angles``; all by default). Differentiable with respect to ``volume``."""
    squeeze = volume.dim() == 3
    vol = volume[None] if squeeze else volume
    _check_volume(vol, geometry)
    out = _ForwardProject.apply(vol, geometry, _views(views, geometry), samples_per_voxel)
    return out[0] if squeeze else out


def project_hu(array_hu, geometry: ConeGeometry, window=None, device="cpu", views=None) -> torch.Tensor:
    """Projections (views, rows, columns) of a KJI volume in HU, in the pipeline's units: the
    HU window (default :data:`ctsr.metrics.DEFAULT_WINDOW`) mapped to [0, 1], then line
    integrals in scene units; no gradient."""
    from .metrics import DEFAULT_WINDOW, normalize

    tensor = torch.from_numpy(normalize(array_hu, window or DEFAULT_WINDOW).astype("float32")).to(device)
    with torch.no_grad():
        return forward_project(tensor, geometry, views=views)


def back_project(projections: torch.Tensor, geometry: ConeGeometry, views=None,
                 samples_per_voxel: float = 1.0) -> torch.Tensor:
    """The adjoint of :func:`forward_project`: ``[V, nv, nu]`` (or batched) -> ``[K, J, I]``."""
    squeeze = projections.dim() == 3
    proj = projections[None] if squeeze else projections
    out = _adjoint(proj, geometry, _views(views, geometry), samples_per_voxel)
    return out[0] if squeeze else out


def fdk(projections: torch.Tensor, geometry: ConeGeometry) -> torch.Tensor:
    """Filtered back-projection of ``projections`` [V, nv, nu] over all views of ``geometry``:
    FDK (cosine weighting, Ram-Lak ramp along u, distance-weighted voxel-driven
    back-projection) in cone mode, plain FBP in parallel mode. Returns [K, J, I] in the units
    of the projected volume. The views are assumed uniform over at least 180 degrees; each
    view gets weight pi / V (no Parker weighting: a 180-degree cone scan leaves mild
    short-scan artefacts off the central plane)."""
    if projections.dim() != 3 or tuple(projections.shape) != (geometry.n_views, *geometry.nDetector):
        raise ValueError(f"projections must be [{geometry.n_views}, {geometry.nDetector[0]}, "
                         f"{geometry.nDetector[1]}], got {tuple(projections.shape)}")
    device, dtype = projections.device, projections.dtype
    mag = geometry.magnification
    v, u = geometry.detector_uv(device, dtype)
    proj = projections
    if geometry.mode == "cone":
        weight = geometry.DSD / torch.sqrt(geometry.DSD**2 + u[None, :] ** 2 + v[:, None] ** 2)
        proj = proj * weight
    filtered = _ramp_filter(proj, geometry.dDetector[1] / mag)
    source, centre, e_u, e_v, toward = geometry.view_frames(device, dtype)
    points = geometry.voxel_centres(device, dtype).reshape(-1, 3)
    out = torch.zeros(points.shape[0], device=device, dtype=dtype)
    half_u = geometry.dDetector[1] * geometry.nDetector[1] / 2
    half_v = geometry.dDetector[0] * geometry.nDetector[0] / 2
    for view in range(geometry.n_views):
        pu = points @ e_u[view]
        pz = points[:, 2]
        if geometry.mode == "cone":
            depth = geometry.DSO - points @ toward[view]
            scale = geometry.DSD / depth
            weight = (geometry.DSO / depth) ** 2
        else:
            scale, weight = 1.0, 1.0
        grid = torch.stack([pu * scale / half_u, pz * scale / half_v], -1)
        sampled = F.grid_sample(filtered[view][None, None], grid[None, :, None, :], mode="bilinear",
                                padding_mode="zeros", align_corners=False)[0, 0, :, 0]
        out += weight * sampled
    return (out * (math.pi / geometry.n_views)).reshape(geometry.nVoxel)


# -- internals -----------------------------------------------------------------------------------

def _views(views, geometry):
    if views is None:
        return tuple(range(geometry.n_views))
    views = tuple(int(v) for v in (views.tolist() if torch.is_tensor(views) else views))
    if any(v < 0 or v >= geometry.n_views for v in views):
        raise ValueError(f"view index out of range 0..{geometry.n_views - 1}")
    return views


def _check_volume(vol, geometry):
    if vol.dim() != 4 or tuple(vol.shape[1:]) != geometry.nVoxel:
        raise ValueError(f"volume must be [K, J, I] = {geometry.nVoxel} (optionally batched), "
                         f"got {tuple(vol.shape)}")


def _n_samples(geometry, samples_per_voxel):
    half = torch.tensor(geometry.half_extent) + torch.tensor(geometry.dVoxel) / 2
    return max(1, int(math.ceil(2 * float(half.norm()) / min(geometry.dVoxel) * samples_per_voxel)))


def _march_chunk(vol5, geometry, views, n_samples):
    """Line integrals through ``vol5`` [B, 1, K, J, I] for ``views``: [B, len(views), nv, nu]."""
    device, dtype = vol5.device, vol5.dtype
    origin, direction = geometry.rays(views, device, dtype)
    dz, dy, dx = geometry.dVoxel
    half = torch.tensor(geometry.half_extent[::-1].copy(), device=device, dtype=dtype)  # x, y, z
    centre = torch.tensor(geometry.offOrigin[::-1], device=device, dtype=dtype)
    pad = torch.tensor([dx, dy, dz], device=device, dtype=dtype) / 2
    lo, hi = centre - half - pad, centre + half + pad
    safe = torch.where(direction.abs() < 1e-12, torch.full_like(direction, 1e-12), direction)
    t0, t1 = (lo - origin) / safe, (hi - origin) / safe
    t_near = torch.minimum(t0, t1).amax(-1)
    t_far = torch.maximum(t0, t1).amin(-1)
    length = (t_far - t_near).clamp(min=0)
    step = length / n_samples  # [V, nv, nu]
    frac = (torch.arange(n_samples, device=device, dtype=dtype) + 0.5) / n_samples
    t = t_near[..., None] + length[..., None] * frac  # [V, nv, nu, S]
    points = origin[..., None, :] + t[..., None] * direction[..., None, :]
    grid = (points - centre) / half  # align_corners=False: +-1 are the box faces
    n_views, n_v, n_u = step.shape
    grid = grid.reshape(1, n_views * n_v, n_u, n_samples, 3).expand(vol5.shape[0], -1, -1, -1, -1)
    samples = F.grid_sample(vol5, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    line = samples.sum(-1).reshape(vol5.shape[0], n_views, n_v, n_u)
    return line * step


def _chunks(views, geometry, n_samples, batch):
    per_view = geometry.nDetector[0] * geometry.nDetector[1] * n_samples * batch
    size = max(1, POINTS_PER_CHUNK // per_view)
    return [views[i:i + size] for i in range(0, len(views), size)]


def _forward(vol, geometry, views, samples_per_voxel):
    n = _n_samples(geometry, samples_per_voxel)
    vol5 = vol[:, None]
    parts = [_march_chunk(vol5, geometry, chunk, n) for chunk in _chunks(views, geometry, n, vol.shape[0])]
    return torch.cat(parts, dim=1)


def _adjoint(proj, geometry, views, samples_per_voxel):
    if proj.dim() != 4 or proj.shape[1] != len(views) or tuple(proj.shape[2:]) != geometry.nDetector:
        raise ValueError(f"projections must be [{len(views)}, {geometry.nDetector[0]}, "
                         f"{geometry.nDetector[1]}] (optionally batched), got {tuple(proj.shape)}")
    n = _n_samples(geometry, samples_per_voxel)
    batch = proj.shape[0]
    out = torch.zeros((batch, 1, *geometry.nVoxel), device=proj.device, dtype=proj.dtype)
    start = 0
    for chunk in _chunks(views, geometry, n, batch):
        with torch.enable_grad():
            probe = torch.zeros_like(out, requires_grad=True)
            line = _march_chunk(probe, geometry, chunk, n)
            (grad,) = torch.autograd.grad(line, probe, proj[:, start:start + len(chunk)])
        out += grad
        start += len(chunk)
    return out[:, 0]


class _ForwardProject(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vol, geometry, views, samples_per_voxel):
        ctx.geometry, ctx.views, ctx.spv = geometry, views, samples_per_voxel
        with torch.no_grad():
            return _forward(vol, geometry, views, samples_per_voxel)

    @staticmethod
    def backward(ctx, grad):
        return _adjoint(grad.contiguous(), ctx.geometry, ctx.views, ctx.spv), None, None, None


def _ramp_filter(proj: torch.Tensor, tau: float) -> torch.Tensor:
    """Ram-Lak filtering along the last axis (spatial kernel, zero-padded FFT convolution);
    ``tau`` is the sample spacing at the isocentre (scene units)."""
    n = proj.shape[-1]
    size = 1 << int(math.ceil(math.log2(2 * n)))
    k = torch.arange(-(size // 2), size // 2, device=proj.device, dtype=proj.dtype)
    kernel = torch.zeros_like(k)
    kernel[k == 0] = 1.0 / (4 * tau**2)
    odd = (k.abs() % 2) == 1
    kernel[odd] = -1.0 / (math.pi**2 * k[odd] ** 2 * tau**2)
    kernel = torch.fft.ifftshift(kernel)
    spectrum = torch.fft.rfft(kernel) * tau
    padded = torch.fft.rfft(proj, n=size, dim=-1) * spectrum
    return torch.fft.irfft(padded, n=size, dim=-1)[..., :n]
