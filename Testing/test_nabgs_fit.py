"""The NAB-GS residual fit on a small real CT crop: it learns from true projections, returns
the upsampled volume when the target is P_up, reports progress, cancels, and is seeded."""

import numpy as np
import pytest
import torch

from ctsr.baselines import upsample_interpolate
from ctsr.errors import Cancelled
from ctsr.gaussians.fit import MIN_GAUSSIANS, FitSettings, fit_residual
from ctsr.geometry import ConeGeometry
from ctsr.io import read_volume
from ctsr.lrmodel import simulate_lr
from ctsr.metrics import normalize, psnr
from ctsr.progress import CallbackProgress
from ctsr.projector import forward_project
from ctsr.resources import sample_volume_path
from ctsr.volume import Volume

torch.set_num_threads(2)
SETTINGS = FitSettings(iterations=30, init_gaussians=1500, max_gaussians=2000, views_per_iteration=2,
                       densify_from=10, densify_every=10, tv_crop=12)


@pytest.fixture(scope="module")
def problem():
    """A 24^3 crop of the bundled real chest CT, x2: truth, cubic V_up, their projections."""
    sample = read_volume(sample_volume_path())
    hr = Volume(sample.array[20:44, 20:44, 20:44], sample.ijk_to_ras)
    up = upsample_interpolate(simulate_lr(hr, (2, 2, 2)), (2, 2, 2), "cubic")
    truth = torch.from_numpy(normalize(hr.array).astype(np.float32))
    v_up = torch.from_numpy(normalize(up.array).astype(np.float32))
    geometry = ConeGeometry.from_volume(hr, n_views=24)
    return truth, v_up, geometry, forward_project(truth, geometry), forward_project(v_up, geometry)


def test_fit_to_true_projections_improves_on_cubic(problem):
    truth, v_up, geometry, y, p_up = problem
    result = fit_residual(y, p_up, v_up, geometry, SETTINGS, seed=0)
    before = psnr(v_up.numpy(), truth.numpy())
    after = psnr(torch.relu(v_up + result.residual).clamp(max=1).numpy(), truth.numpy())
    assert after > before + 0.3, (before, after)
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-3:]) < losses[0]
    assert len(result.gaussians) > 0 and torch.isfinite(result.residual).all()


def test_target_equal_to_p_up_gives_back_the_upsampled_volume(problem):
    truth, v_up, geometry, y, p_up = problem
    result = fit_residual(p_up, p_up, v_up, geometry, SETTINGS, seed=0)
    out = torch.relu(v_up + result.residual).numpy()
    assert abs(psnr(out, truth.numpy()) - psnr(v_up.numpy(), truth.numpy())) < 0.3
    assert float(result.residual.abs().max()) < 0.05


def test_progress_events_and_seeded_determinism(problem):
    truth, v_up, geometry, y, p_up = problem
    settings = FitSettings(**{**SETTINGS.__dict__, "iterations": 12})
    events = []
    first = fit_residual(y, p_up, v_up, geometry, settings, CallbackProgress(events.append), seed=5)
    steps = [e for e in events if e.get("iteration")]
    assert steps and {"loss", "gaussians", "eta", "fraction"} <= set(steps[-1])
    assert steps[-1]["iteration"] == 12 and steps[-1]["fraction"] == 1.0
    second = fit_residual(y, p_up, v_up, geometry, settings, seed=5)
    assert torch.equal(first.residual, second.residual)


def test_cancellation_stops_the_fit(problem):
    truth, v_up, geometry, y, p_up = problem
    seen = []

    def on_event(event):
        seen.append(event)
        if event.get("iteration", 0) >= 11:
            progress.cancel()

    progress = CallbackProgress(on_event)
    with pytest.raises(Cancelled):
        fit_residual(y, p_up, v_up, geometry, SETTINGS, progress, seed=0)
    assert max(e.get("iteration", 0) for e in seen) < 30


def test_gaussian_counts_scale_down_with_the_output_and_never_up():
    standard = FitSettings.preset("standard")
    assert standard.scaled_to(128**3) == standard == standard.scaled_to(512**3)
    small = standard.scaled_to(32 * 64 * 64)  # a sixteenth of 128^3
    assert (small.init_gaussians, small.max_gaussians) == (30000 // 16, 80000 // 16)
    assert small.iterations == standard.iterations
    assert standard.scaled_to(10).init_gaussians == MIN_GAUSSIANS
    few = FitSettings(init_gaussians=400, max_gaussians=800)
    assert few.scaled_to(10) == few  # the floor never raises what the settings ask for


def test_presets_and_bad_shapes():
    assert FitSettings.preset("fast").iterations < FitSettings.preset("quality").iterations
    with pytest.raises(ValueError):
        FitSettings.preset("turbo")
    g = ConeGeometry.from_volume(Volume.from_spacing(np.zeros((8, 8, 8), np.float32)), n_views=2)
    with pytest.raises(ValueError):
        fit_residual(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4), torch.zeros(8, 8, 8), g)


def test_fit_ssim_loss_is_scikit_image_ssim():
    from skimage.metrics import structural_similarity

    from ctsr.gaussians.fit import _ssim, _ssim_window

    gen = torch.Generator().manual_seed(0)
    a = torch.rand(3, 30, 26, generator=gen, dtype=torch.float64)
    b = (a + 0.2 * torch.randn(3, 30, 26, generator=gen, dtype=torch.float64)).clamp(0, 1)
    ours = _ssim(a, b, _ssim_window(a.dtype, a.device), data_range=1.0)
    theirs = np.mean([structural_similarity(x.numpy(), y.numpy(), data_range=1.0, gaussian_weights=True,
                                            sigma=1.5, use_sample_covariance=False)
                      for x, y in zip(a, b)])
    assert abs(float(ours) - theirs) < 1e-6 and 0.1 < theirs < 0.95
