"""ctsr.projector: exact line integrals of an analytic phantom, adjointness, autograd, FDK."""

import numpy as np
import pytest
import torch

from ctsr.geometry import ConeGeometry
from ctsr.io import read_volume
from ctsr.metrics import normalize, psnr
from ctsr.projector import back_project, fdk, forward_project
from ctsr.resources import sample_volume_path
from ctsr.volume import Volume

torch.set_num_threads(2)


def _geometry(mode, n_views, factor=1):
    volume = Volume.from_spacing(np.zeros((24 * factor, 32 * factor, 28 * factor), np.float32),
                                 (2.0 / factor, 2.4 / factor, 3.0 / factor))
    return ConeGeometry.from_volume(volume, n_views=n_views, mode=mode)


def _smooth_ellipsoid(g, centre, axes):
    """Density (1 - q)^2 inside the ellipsoid q < 1 (q the squared ellipsoidal radius) on the
    voxel centres, and its exact line integral for every pixel of ``g``."""
    c = g.voxel_centres(dtype=torch.float64)
    q = (((c - centre) / axes) ** 2).sum(-1)
    density = (1 - q).clamp(min=0) ** 2
    origin, direction = g.rays(dtype=torch.float64)
    o, d = (origin - centre) / axes, direction / axes
    a, b, cc = (d * d).sum(-1), (o * d).sum(-1), (o * o).sum(-1)
    # along the ray q(t) = a (t - t*)^2 + q_min; the integral of (a (w^2 - tau^2))^2 over |tau| < w
    w2 = ((1 - (cc - b * b / a)) / a).clamp(min=0)
    return density, a * a * 16 * w2**2.5 / 15


@pytest.mark.parametrize("mode", ["cone", "parallel"])
def test_projections_of_an_analytic_ellipsoid_match_its_exact_line_integrals(mode):
    g = _geometry(mode, n_views=3, factor=4)
    centre = torch.tensor([0.1, -0.05, 0.08], dtype=torch.float64)
    axes = torch.tensor([0.5, 0.35, 0.3], dtype=torch.float64)
    density, exact = _smooth_ellipsoid(g, centre, axes)
    projected = forward_project(density, g, samples_per_voxel=1.0)
    error = float((projected - exact).norm() / exact.norm())
    assert error < 0.01, error
    # the error is the O(h^2) trilinear-interpolation error: coarser voxels, about 4x larger
    coarse = _geometry(mode, n_views=3, factor=2)
    density_c, exact_c = _smooth_ellipsoid(coarse, centre, axes)
    error_c = float((forward_project(density_c, coarse) - exact_c).norm() / exact_c.norm())
    assert 3.0 < error_c / error < 5.0


@pytest.mark.parametrize("mode", ["cone", "parallel"])
def test_back_projection_is_the_exact_adjoint(mode):
    g = _geometry(mode, n_views=7)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(g.nVoxel, dtype=torch.float64, generator=gen)
    y = torch.randn(g.n_views, *g.nDetector, dtype=torch.float64, generator=gen)
    lhs = float((forward_project(x, g) * y).sum())
    rhs = float((x * back_project(y, g)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-10)


def test_autograd_of_the_projector_matches_finite_differences_and_batches():
    g = _geometry("cone", n_views=3)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, *g.nVoxel, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.randn(2, 2, *g.nDetector, dtype=torch.float64, generator=gen)
    loss = (forward_project(x, g, views=[0, 2]) * y).sum()
    (grad,) = torch.autograd.grad(loss, x)
    direction = torch.randn(x.shape, dtype=torch.float64, generator=gen)
    eps = 1e-3
    with torch.no_grad():
        plus = (forward_project(x + eps * direction, g, views=[0, 2]) * y).sum()
        minus = (forward_project(x - eps * direction, g, views=[0, 2]) * y).sum()
    assert float((grad * direction).sum()) == pytest.approx(float(plus - minus) / (2 * eps), rel=1e-6)
    # a batch is the stack of single projections; a view subset is a slice of all views
    single = forward_project(x[1].detach(), g)
    assert torch.allclose(forward_project(x.detach(), g, views=[0, 2])[1], single[[0, 2]])


@pytest.mark.parametrize("mode, floor, bias", [("parallel", 33.0, 0.02), ("cone", 26.0, 0.08)])
def test_fdk_recovers_a_real_ct_crop(mode, floor, bias):
    volume = read_volume(sample_volume_path())  # real chest CT, 64^3 at 1.5 mm
    truth = torch.from_numpy(normalize(volume.array).astype(np.float32))
    g = ConeGeometry.from_volume(volume, n_views=90, mode=mode)
    recon = fdk(forward_project(truth, g), g)
    value = psnr(recon.clamp(0, 1).numpy(), truth.numpy())
    print(f"FDK {mode} PSNR {value:.2f} dB")
    # measured: parallel 35.5 dB; cone 27.9 dB (a 180-degree cone scan is incomplete, no Parker weights)
    assert value > floor
    mean_error = abs(float(recon.mean() - truth.mean())) / float(truth.mean())
    assert mean_error < bias  # measured: parallel 0.5 %, cone 5.6 %


def test_shape_errors_are_reported():
    g = _geometry("cone", n_views=2)
    with pytest.raises(ValueError):
        forward_project(torch.zeros(3, 3, 3), g)
    with pytest.raises(ValueError):
        back_project(torch.zeros(2, 5, 5), g)
    with pytest.raises(ValueError):
        forward_project(torch.zeros(g.nVoxel), g, views=[2])
