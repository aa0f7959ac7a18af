"""DDNM / DDNM+ / PAS sampler: the null-space guarantee, PAS step counts, determinism, and the
DDIM algebra against an oracle denoiser that knows the answer."""

import math
from types import SimpleNamespace

import pytest
import torch

from ctsr.errors import UserError
from diffusers import UNet2DModel

from ctsr.prior import Prior, consistent_init, upsample_projections
from ctsr.prior.model import make_scheduler
from ctsr.prior.operators import DetectorBinning
from ctsr.prior.sampling import _ddnm_plus_weights, ddim_timesteps


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def prior():
    torch.manual_seed(0)  # a real diffusers UNet, narrower than the presets to keep the tests fast
    return Prior.from_unet(UNet2DModel(sample_size=32, in_channels=1, out_channels=1,
                                       block_out_channels=(8, 16, 16), layers_per_block=1,
                                       down_block_types=("DownBlock2D",) * 3,
                                       up_block_types=("UpBlock2D",) * 3, norm_num_groups=4))


def _lr(n, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, h, w, generator=g)
    return 100 + 50 * base  # arbitrary units and offset: the sampler normalizes per projection


@pytest.mark.parametrize("scale", [(2, 2), (4, 4), (8, 8), (1, 4), (4, 1)])
def test_output_block_means_equal_lr(prior, scale):
    lr = _lr(3, 4, 4)
    out = upsample_projections(prior, lr, scale, steps=4, pas=True)
    assert out.images.shape == (3, 1, 4 * scale[0], 4 * scale[1])
    err = (DetectorBinning.average(scale)(out.images) - lr).abs().max() / (lr.max() - lr.min())
    assert err < 1e-3


def test_output_lies_in_the_matched_range_space(prior):
    """With the LR model's binning (blur + binning), A(output) == y for that A, not for the
    block mean."""
    from ctsr.lrmodel import Profile

    operator = DetectorBinning(Profile("gauss", 1.0), Profile("slab", 2.0), (2, 2), (1.0, 0.5))
    lr = _lr(2, 8, 8, seed=4)
    out = upsample_projections(prior, lr, operator, steps=4, pas=True)
    spread = lr.max() - lr.min()
    assert (operator(out.images) - lr).abs().max() / spread < 1e-3
    assert (DetectorBinning.average((2, 2))(out.images) - lr).abs().max() / spread > 1e-2


def test_pas_never_runs_more_steps_than_full(prior):
    lr = _lr(5, 8, 8)
    full = upsample_projections(prior, lr, (2, 2), steps=6, pas=False)
    assert torch.all(full.steps == 6)
    for threshold in (0.0, 0.05, 10.0):
        res = upsample_projections(prior, lr, (2, 2), steps=6, pas=True, pas_threshold=threshold)
        assert torch.all(res.steps >= 0) and torch.all(res.steps <= 6)
    assert torch.all(upsample_projections(prior, lr, (2, 2), steps=6, pas_threshold=10.0).steps == 6)


def test_pas_keeps_the_start_image_where_the_prior_fails_the_threshold(prior):
    lr = _lr(3, 8, 8)
    init = _lr(3, 16, 16, seed=7)
    res = upsample_projections(prior, lr, (2, 2), steps=6, pas_threshold=0.0, init=init, range_target="y")
    assert torch.all(res.steps == 0) and torch.all(res.start_t == -1)
    assert torch.allclose(res.images, consistent_init(init, lr, (2, 2)), atol=1e-4)


def test_same_seed_same_output_other_seed_differs(prior):
    lr = _lr(2, 8, 8)
    run = lambda seed: upsample_projections(prior, lr, (2, 2), steps=3, pas=False,
                                            generator=torch.Generator().manual_seed(seed)).images
    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_batching_does_not_change_per_projection_consistency(prior):
    lr = _lr(5, 8, 8)
    res = upsample_projections(prior, lr, (2, 2), steps=3, batch_size=2)
    assert res.images.shape[0] == 5 and res.steps.shape == (5,)
    assert (DetectorBinning.average((2, 2))(res.images) - lr).abs().max() / 50 < 1e-3


def test_uncertainty_over_samples(prior):
    lr = _lr(2, 8, 8)
    res = upsample_projections(prior, lr, (2, 2), steps=3, pas=False, n_samples=3)
    assert res.std.shape == res.images.shape and torch.all(res.std >= 0) and res.std.max() > 0
    assert upsample_projections(prior, lr, (2, 2), steps=3).std is None


def test_range_target_init_matches_block_means_of_init(prior):
    lr = _lr(2, 8, 8)
    init = _lr(2, 16, 16, seed=5)
    res = upsample_projections(prior, lr, (2, 2), steps=3, init=init, range_target="init")
    assert (DetectorBinning.average((2, 2))(res.images) - DetectorBinning.average((2, 2))(init)).abs().max() / 50 < 1e-3


def test_bad_arguments_are_user_errors(prior):
    lr = _lr(1, 8, 8)
    with pytest.raises(UserError):
        upsample_projections(prior, lr, (2, 2), init=torch.zeros(1, 1, 8, 8))
    with pytest.raises(UserError):
        upsample_projections(prior, lr, (2, 2), range_target="init")
    with pytest.raises(UserError):
        upsample_projections(prior, lr[0], (2, 2))


def test_ddnm_plus_weights_conserve_noise():
    assert _ddnm_plus_weights(0.5, 0.0) == (1.0, 1.0)
    for abar_next in (0.01, 0.3, 0.9, 0.999):
        for sigma_y in (0.01, 0.1, 1.0):
            lam, gam = _ddnm_plus_weights(abar_next, sigma_y)
            s = math.sqrt(1 - abar_next)
            injected = math.sqrt(abar_next) * lam * sigma_y
            assert 0 <= lam <= 1 and 0 <= gam <= 1
            assert injected <= s + 1e-12
            assert math.isclose(injected**2 + (gam * s) ** 2, s**2, rel_tol=1e-9, abs_tol=1e-12)
    assert _ddnm_plus_weights(1.0, 0.1)[0] == 0.0  # no correction onto a noisy y at the end


class _Oracle(torch.nn.Module):
    """Predicts the exact noise of ``x_t`` for a known clean image ``x0`` (in [-1, 1])."""

    def __init__(self, x0, alphas_cumprod):
        super().__init__()
        self.x0, self.abar = x0, alphas_cumprod
        self.config = SimpleNamespace(block_out_channels=(1, 1, 1))
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, t):
        a = float(self.abar[int(t[0])])
        x0 = self.x0[..., : x.shape[-2], : x.shape[-1]]
        return SimpleNamespace(sample=(x - math.sqrt(a) * x0) / math.sqrt(1 - a))


@pytest.mark.parametrize("pas", [False, True])
def test_oracle_denoiser_recovers_the_truth(pas):
    """With a perfect denoiser and eta = 0, DDIM + DDNM must return the true HR image."""
    g = torch.Generator().manual_seed(4)
    truth = torch.rand(2, 1, 16, 16, generator=g) * 2 - 1
    truth[:, :, 0, 0], truth[:, :, -1, -1] = -1.0, 1.0  # its own min-max range: [-1, 1]
    lr = DetectorBinning.average((4, 4))(truth)
    # the sampler normalizes by the LR min/max: give it an init that carries the true range
    init = truth.clone()
    abar = make_scheduler().alphas_cumprod.to(torch.float64)
    model = Prior(_Oracle(truth, abar), abar)
    res = upsample_projections(model, lr, (4, 4), steps=5, eta=0.0, pas=pas, init=init, pas_threshold=0.5)
    assert torch.allclose(res.images, truth, atol=1e-4)


def test_ddim_timesteps_cover_the_schedule():
    ts = ddim_timesteps(20)
    assert ts[0] == 999 and ts[-1] == 0 and len(ts) == 20 and torch.all(ts[:-1] > ts[1:])
    with pytest.raises(UserError):
        ddim_timesteps(0)
