"""ctsr.gaussians: exact renderer vs numerical ray integration, voxelize-then-project vs render,
gradients vs finite differences."""

import math

import numpy as np
import pytest
import torch

from ctsr.geometry import ConeGeometry
from ctsr.gaussians import SignedGaussians, render, voxelize
from ctsr.projector import forward_project
from ctsr.volume import Volume

torch.set_num_threads(2)


def _geometry(mode, shape=(20, 24, 22), spacing=2.0, n_views=3):
    volume = Volume.from_spacing(np.zeros(shape, np.float32), (spacing,) * 3)
    return ConeGeometry.from_volume(volume, n_views=n_views, mode=mode)


def _random_gaussians(n, spread, sigma_lo, sigma_hi, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return SignedGaussians(
        means=(torch.rand(n, 3, generator=gen, dtype=dtype) - 0.5) * spread,
        log_scales=torch.log(sigma_lo + (sigma_hi - sigma_lo) * torch.rand(n, 3, generator=gen, dtype=dtype)),
        quats=torch.randn(n, 4, generator=gen, dtype=dtype),
        raw_density=torch.randn(n, generator=gen, dtype=dtype) * 3,  # signed: negatives included
        gamma_raw=torch.tensor(0.3, dtype=dtype))


def _numerical(g, G, geometry, n_t=1500):
    """Midpoint-rule integration of the Gaussians along every ray (independent of the renderer)."""
    origin, direction = geometry.rays(dtype=torch.float64)
    far = geometry.DSD if geometry.mode == "cone" else 2 * geometry.DSO
    t = (torch.arange(n_t, dtype=torch.float64) + 0.5) * (far / n_t)
    rho, precision = G.density(), G.precisions()
    out = torch.zeros(geometry.n_views, *geometry.nDetector, dtype=torch.float64)
    for chunk in torch.split(t, 250):
        points = origin[..., None, :] + chunk[:, None] * direction[..., None, :]
        for i in range(len(G)):
            d = points - G.means[i]
            out += (rho[i] * torch.exp(-0.5 * ((d @ precision[i]) * d).sum(-1))).sum(-1) * (far / n_t)
    return out


@pytest.mark.parametrize("mode", ["cone", "parallel"])
def test_renderer_matches_numerical_ray_integration(mode):
    geometry = _geometry(mode)
    G = _random_gaussians(12, spread=1.0, sigma_lo=0.03, sigma_hi=0.15, seed=0)
    assert (G.density() < 0).any() and (G.density() > 0).any()
    with torch.no_grad():
        rendered = render(G, geometry)
        exact = _numerical(None, G, geometry)
    error = float((rendered - exact).norm() / exact.norm())
    assert error < 0.005, error  # measured ~0.06 %: the 3.5-sigma footprint bound


def test_small_and_negative_contributions_are_kept():
    """One faint negative Gaussian alone renders to its exact (tiny, negative) line integral."""
    geometry = _geometry("cone", n_views=1)
    G = SignedGaussians.isotropic(torch.zeros(1, 3, dtype=torch.float64), 0.05,
                                  torch.tensor([-1e-7], dtype=torch.float64), gamma=0.1)
    image = render(G, geometry)[0]
    # isotropic: integral = rho * sqrt(2 pi) * sigma * exp(-dist^2 / (2 sigma^2)), dist = ray to mean
    origin, direction = geometry.rays(dtype=torch.float64)
    closest = origin[0] - (origin[0] * direction[0]).sum(-1, keepdim=True) * direction[0]
    dist2 = (closest**2).sum(-1)
    exact = -1e-7 * math.sqrt(2 * math.pi) * 0.05 * torch.exp(-dist2 / (2 * 0.05**2))
    inside = image != 0
    assert int(inside.sum()) >= 16  # the footprint, not just the peak
    assert float(image.max()) <= 0.0
    assert torch.allclose(image[inside], exact[inside], rtol=1e-9, atol=0)
    assert float(exact[~inside].abs().max()) < 1e-7 * 0.126 * math.exp(-3.5**2 / 2) * 1.01


@pytest.mark.parametrize("mode", ["cone", "parallel"])
def test_voxelize_then_project_matches_render(mode):
    # Gaussians of 3.5 to 7 voxels: the projector's trilinear interpolation error stays < 1 %
    geometry = _geometry(mode, shape=(80, 96, 88), spacing=0.5, n_views=2)
    G = _random_gaussians(15, spread=0.7, sigma_lo=0.08, sigma_hi=0.16, seed=1)
    with torch.no_grad():
        rendered = render(G, geometry)
        projected = forward_project(voxelize(G, geometry), geometry)
    error = float((projected - rendered).norm() / rendered.norm())
    assert error < 0.01, error


def test_voxelize_region_is_a_crop_of_the_full_grid():
    geometry = _geometry("cone")
    G = _random_gaussians(30, spread=1.2, sigma_lo=0.05, sigma_hi=0.2, seed=2)
    with torch.no_grad():
        full = voxelize(G, geometry)
        crop = voxelize(G, geometry, region=(3, 5, 2, 15, 20, 12))
        # exact values at a voxel centre
        k, j, i = 7, 9, 4
        x = geometry.voxel_centres(dtype=torch.float64)[k, j, i]
        d = x - G.means
        direct = (G.density() * torch.exp(-0.5 * ((d[:, None, :] @ G.precisions() @ d[:, :, None])[:, 0, 0])))
        inside = (d.abs() <= 3.5 * G.scales().amax(-1, keepdim=True)).all(-1)
    assert torch.allclose(crop, full[3:15, 5:20, 2:12])
    assert float(full[k, j, i]) == pytest.approx(float(direct[inside].sum()), rel=1e-9)


@pytest.mark.parametrize("mode", ["cone", "parallel"])
def test_render_gradients_pass_gradcheck(mode):
    geometry = _geometry(mode, shape=(8, 10, 9), spacing=4.0, n_views=2)
    G = _random_gaussians(3, spread=0.6, sigma_lo=0.15, sigma_hi=0.3, seed=3)
    G.raw_density.data = G.raw_density.data.abs() + 0.5  # keep away from the PReLU kink
    G.raw_density.data[0] = -G.raw_density.data[0]
    names = ("means", "log_scales", "quats", "raw_density", "gamma_raw")

    def fn(*params):
        return render(SignedGaussians(*params), geometry)

    params = tuple(getattr(G, name).clone().requires_grad_(True) for name in names)
    assert torch.autograd.gradcheck(fn, params, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_voxelize_gradients_pass_gradcheck():
    geometry = _geometry("cone", shape=(8, 10, 9), spacing=4.0)
    G = _random_gaussians(3, spread=0.6, sigma_lo=0.15, sigma_hi=0.3, seed=4)
    G.raw_density.data = G.raw_density.data.abs() + 0.5

    def fn(*params):
        return voxelize(SignedGaussians(*params), geometry)

    params = tuple(p.clone().requires_grad_(True) for p in G.parameters())
    assert torch.autograd.gradcheck(fn, params, eps=1e-6, atol=1e-6, rtol=1e-4)
