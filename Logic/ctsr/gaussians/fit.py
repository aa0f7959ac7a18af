"""The NAB-GS fit: signed Gaussians for the residual between target HR projections and the
projections of the upsampled volume (DESIGN.md section 2, step 5).

All arrays are torch tensors in **normalized intensity** (HU window -> [0, 1]); projections
``[V, nv, nu]`` (line integrals in scene units, :mod:`ctsr.projector`), volumes ``[K, J, I]``.
Loss per iteration, on a random subset of views:
``L1(Y, X) + L1(R, Y - relu(P_up)) + w_ssim * (1 - SSIM(Y, X)) + w_tv * TV3D``
with ``R`` the rendered residual, ``X = relu(R + relu(P_up))`` and TV the mean absolute
difference of ``relu(dV + V_up)`` on a random cubic crop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from ..geometry import ConeGeometry
from ..progress import Progress, SilentProgress
from ..projector import fdk
from .densify import densify, initialize, prune
from .footprint import FOOTPRINT_SIGMAS
from .kernels import render, voxelize  # Triton on CUDA, numba on CPU, the torch reference otherwise
from .model import SignedGaussians


#: The output size (voxels) the presets' Gaussian counts are sized for: 128^3.
REFERENCE_VOXELS = 128**3
#: The fewest Gaussians a scaled fit starts with or grows to.
MIN_GAUSSIANS = 1000


@dataclass(frozen=True)
class FitSettings:
    """Knobs of the fit. Learning rates decay exponentially from the first to the second
    value over the iterations (position: scene units; scale: log; density: raw units)."""

    iterations: int = 1500
    views_per_iteration: int = 2
    init_gaussians: int = 30000
    max_gaussians: int = 80000
    lr_position: tuple[float, float] = (2e-4, 2e-5)
    lr_density: tuple[float, float] = (1e-2, 1e-3)
    lr_scale: tuple[float, float] = (5e-3, 5e-4)
    lr_rotation: tuple[float, float] = (1e-3, 1e-4)
    lr_gamma: float = 1e-3
    gamma: float = 0.1
    ssim_weight: float = 0.5
    tv_weight: float = 0.05
    tv_crop: int = 32
    densify_every: int = 100
    densify_from: int = 100
    densify_until: float = 0.6           # fraction of the iterations
    densify_fraction: float = 0.05
    prune_density: float = 1e-5
    footprint_sigmas: float = FOOTPRINT_SIGMAS

    def scaled_to(self, output_voxels: int) -> "FitSettings":
        """These settings for an output of ``output_voxels``: the Gaussian counts are sized for a
        :data:`REFERENCE_VOXELS` output and shrink in proportion below it (the same Gaussians
        per voxel, so each starts as wide in voxels and an iteration costs in proportion),
        never under :data:`MIN_GAUSSIANS` unless the settings ask for fewer; above it they stay
        (the preset's caps)."""
        share = min(1.0, output_voxels / REFERENCE_VOXELS)
        scaled = lambda count: min(count, max(MIN_GAUSSIANS, round(count * share)))
        return replace(self, init_gaussians=scaled(self.init_gaussians), max_gaussians=scaled(self.max_gaussians))

    @classmethod
    def preset(cls, name: str, **overrides) -> "FitSettings":
        """"fast", "standard" or "quality", with any field overridden."""
        presets = {
            "fast": dict(iterations=600, init_gaussians=20000, max_gaussians=40000),
            "standard": dict(),
            "quality": dict(iterations=4000, init_gaussians=50000, max_gaussians=200000),
        }
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(presets)}")
        return replace(cls(**presets[name]), **overrides)


@dataclass
class FitResult:
    gaussians: SignedGaussians
    residual: torch.Tensor          # dV [K, J, I], normalized intensity
    history: list = field(default_factory=list)  # per logged iteration: dict
    seconds: float = 0.0


def fit_residual(Y: torch.Tensor, P_up: torch.Tensor, V_up: torch.Tensor, geometry: ConeGeometry,
                 settings: FitSettings | None = None, progress: Progress | None = None,
                 seed: int = 0) -> FitResult:
    """Fit signed Gaussians so that their projections match ``Y - relu(P_up)``; return them and
    their voxelization ``dV`` (the HR estimate is ``relu(dV + V_up)``). Cancellable through
    ``progress`` (raises :class:`ctsr.errors.Cancelled`)."""
    settings = settings or FitSettings()
    progress = progress or SilentProgress()
    start = time.monotonic()
    expected = (geometry.n_views, *geometry.nDetector)
    if tuple(Y.shape) != expected or tuple(P_up.shape) != expected or tuple(V_up.shape) != geometry.nVoxel:
        raise ValueError(f"Y and P_up must be {expected} and V_up {geometry.nVoxel}")
    generator = torch.Generator().manual_seed(seed)
    base = torch.relu(P_up)
    target = Y - base
    progress.update("nabgs", 0.0, "initial residual (FDK)")
    init_residual = fdk(target, geometry)
    gaussians = initialize(init_residual, geometry, settings.init_gaussians, generator, settings.gamma)
    for p in gaussians.parameters():
        p.requires_grad_(True)
    optimizer = _optimizer(gaussians, settings)
    score = torch.zeros(len(gaussians), device=Y.device)
    seen = torch.zeros(len(gaussians), device=Y.device)
    window = _ssim_window(Y.dtype, Y.device)
    data_range = float(Y.max() - Y.min()) or 1.0
    split_sigma = 1.5 * min(geometry.dVoxel)
    history = []
    iterations = settings.iterations
    for it in range(iterations):
        progress.check()
        _set_rates(optimizer, settings, it / max(1, iterations - 1))
        views = torch.randint(geometry.n_views, (settings.views_per_iteration,), generator=generator)
        rendered = render(gaussians, geometry, views, settings.footprint_sigmas)
        predicted = torch.relu(rendered + base[views])
        loss = (F.l1_loss(predicted, Y[views]) + F.l1_loss(rendered, target[views])
                + settings.ssim_weight * (1 - _ssim(predicted, Y[views], window, data_range)))
        if settings.tv_weight > 0:
            loss = loss + settings.tv_weight * _tv_crop(gaussians, V_up, geometry, settings.tv_crop, generator,
                                                        settings.footprint_sigmas)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            grad = gaussians.means.grad.norm(dim=-1)
            score += grad
            seen += (grad > 0).float()
        optimizer.step()
        refine = (settings.densify_from <= it < settings.densify_until * iterations
                  and (it + 1) % settings.densify_every == 0)
        if refine:
            average = score / seen.clamp(min=1)
            gaussians, source = densify(gaussians, average, settings.densify_fraction,
                                        settings.max_gaussians, split_sigma, generator)
            gaussians, kept = prune(gaussians, geometry, settings.prune_density)
            source = source[kept]
            optimizer = _carry_optimizer(optimizer, gaussians, source, settings)
            score = torch.zeros(len(gaussians), device=Y.device)
            seen = torch.zeros(len(gaussians), device=Y.device)
        if it % 10 == 0 or it == iterations - 1:
            entry = {"iteration": it + 1, "loss": round(float(loss.detach()), 6), "gaussians": len(gaussians)}
            history.append(entry)
            progress.update("nabgs", (it + 1) / iterations,
                            f"iteration {it + 1}/{iterations}, {len(gaussians)} Gaussians", **entry)
    final = gaussians.detached()
    final, _ = prune(final, geometry, settings.prune_density)
    with torch.no_grad():
        residual = voxelize(final, geometry, sigmas=settings.footprint_sigmas)
    return FitResult(final, residual, history, time.monotonic() - start)


# -- optimizer ---------------------------------------------------------------------------------

_GROUPS = ("means", "log_scales", "quats", "raw_density", "gamma_raw")


def _optimizer(g: SignedGaussians, settings: FitSettings) -> torch.optim.Adam:
    rates = _rates(settings, 0.0)
    return torch.optim.Adam([{"params": [getattr(g, name)], "lr": rates[name], "name": name}
                             for name in _GROUPS], eps=1e-15)


def _rates(settings: FitSettings, progress: float) -> dict:
    decay = lambda pair: pair[0] * (pair[1] / pair[0]) ** progress
    return {"means": decay(settings.lr_position), "log_scales": decay(settings.lr_scale),
            "quats": decay(settings.lr_rotation), "raw_density": decay(settings.lr_density),
            "gamma_raw": settings.lr_gamma}


def _set_rates(optimizer, settings, progress):
    rates = _rates(settings, progress)
    for group in optimizer.param_groups:
        group["lr"] = rates[group["name"]]


def _carry_optimizer(old: torch.optim.Adam, g: SignedGaussians, source: torch.Tensor,
                     settings: FitSettings) -> torch.optim.Adam:
    """A new Adam over ``g``'s parameters whose moments are the old ones of each Gaussian's
    parent (``source``); the shared ``gamma_raw`` keeps its state."""
    for p in g.parameters():
        p.requires_grad_(True)
    new = _optimizer(g, settings)
    for old_group, new_group in zip(old.param_groups, new.param_groups):
        (old_param,), (new_param,) = old_group["params"], new_group["params"]
        state = old.state.get(old_param)
        if not state:
            continue
        if new_group["name"] == "gamma_raw":
            new.state[new_param] = {k: v.clone() for k, v in state.items()}
        else:
            new.state[new_param] = {"step": state["step"].clone(),
                                    "exp_avg": state["exp_avg"][source].clone(),
                                    "exp_avg_sq": state["exp_avg_sq"][source].clone()}
    for old_group, new_group in zip(old.param_groups, new.param_groups):
        new_group["lr"] = old_group["lr"]
    return new


# -- loss terms --------------------------------------------------------------------------------

def _ssim_window(dtype, device, size: int = 11, sigma: float = 1.5):
    """The normalized 1D Gaussian window [size] of the separable SSIM blur."""
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    w = torch.exp(-x**2 / (2 * sigma**2))
    return w / w.sum()


def _ssim(a: torch.Tensor, b: torch.Tensor, window: torch.Tensor, data_range: float) -> torch.Tensor:
    """Mean 2D SSIM of image stacks [V, H, W]: Gaussian window 11 x 11, sigma 1.5, population
    statistics, over the pixels whose window lies inside the image (scikit-image's
    ``structural_similarity(..., gaussian_weights=True, use_sample_covariance=False)``)."""
    n = a.shape[0]
    stats = torch.cat([a, b, a * a, b * b, a * b])[:, None]  # the five maps, blurred in one pass
    blurred = F.conv2d(F.conv2d(stats, window.view(1, 1, -1, 1)), window.view(1, 1, 1, -1))
    mu_a, mu_b, aa, bb, ab = blurred.split(n)
    var_a = aa - mu_a**2
    var_b = bb - mu_b**2
    cov = ab - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim.mean()


def _tv_crop(g: SignedGaussians, V_up: torch.Tensor, geometry: ConeGeometry, size: int,
             generator: torch.Generator, sigmas: float) -> torch.Tensor:
    """Mean absolute finite difference (3 axes) of ``relu(dV + V_up)`` on a random crop
    (``dV`` voxelized with footprints of ``sigmas`` standard deviations, as rendered)."""
    shape = geometry.nVoxel
    sides = [min(size, n) for n in shape]
    lo = [int(torch.randint(n - s + 1, (1,), generator=generator)) for n, s in zip(shape, sides)]
    hi = [l + s for l, s in zip(lo, sides)]
    crop = voxelize(g, geometry, region=(*lo, *hi), sigmas=sigmas)
    volume = torch.relu(crop + V_up[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])
    return sum(volume.diff(dim=d).abs().mean() for d in range(3))
