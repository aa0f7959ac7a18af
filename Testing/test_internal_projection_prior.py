"""The internal projection prior: its training source is the projection of the cubic upsampling
of the LR model's second degradation, it runs where the volume pair does, it is seeded and
cancellable, and on a real CT its projections beat ``P_up`` and the consistent ``P_up``."""

from dataclasses import replace

import pytest
import torch

from ctsr import internal_projection_prior as ipp
from ctsr.baselines import upsample_interpolate
from ctsr.errors import Cancelled
from ctsr.internal_prior import degrade_again
from ctsr.lrmodel import ASSUMED, LRModel, simulate_lr
from ctsr.metrics import psnr
from ctsr.geometry import scan_geometries
from ctsr.pipeline import consistent_p_up, projection_operator
from ctsr.progress import CallbackProgress
from ctsr.projector import project_hu
from ctsr.residual_cnn import TrainingSettings

TINY = TrainingSettings(steps=6, patch=8, batch=2, channels=4, layers=3)


@pytest.fixture(scope="module")
def scan(sample):
    """The sample's x2 LR (the model known), its cubic ``V_up``, the two scans, ``P_up`` and
    ``y`` on 12 views, and the truth's projections."""
    torch.set_num_threads(2)
    scale, model = (2, 2, 2), LRModel.parse("gauss:1,noise:0")
    lr = simulate_lr(sample, scale, model, seed=1)
    v_up = upsample_interpolate(lr, scale, "cubic")
    geometry, lr_geometry = scan_geometries(lr, v_up, scale, 12)
    return dict(lr=lr, scale=scale, model=model, v_up=v_up, geometry=geometry, lr_geometry=lr_geometry,
                p_up=project_hu(v_up.array, geometry), y=project_hu(lr.array, lr_geometry), truth=project_hu(sample.array, geometry))


def test_the_source_is_the_projection_of_cubic_of_the_second_degradation(scan):
    source = ipp.projection_training_pair(scan["lr"], scan["scale"], scan["model"], scan["lr_geometry"], seed=2)
    u2 = upsample_interpolate(degrade_again(scan["lr"], scan["scale"], scan["model"], seed=2), scan["scale"], "cubic")
    assert u2.array.shape == scan["lr"].array.shape  # 32^3 at x2: nothing to pad
    torch.testing.assert_close(source, project_hu(u2.array, scan["lr_geometry"]), rtol=0, atol=0)
    assert source.shape == scan["y"].shape


def test_it_plans_where_the_volume_pair_does(sample):
    model = LRModel.parse("gauss:1,slab:3mm,noise:5")
    assert ipp.projection_plan(sample, (2, 2, 2), model).kind == "projections"
    assert "not measured through-plane" in ipp.projection_plan(sample, (1, 1, 4), model).reason
    assert "no measured option" in ipp.projection_plan(sample, (4, 4, 4), model).reason
    assert "x8: not measured" in ipp.projection_plan(sample, (8, 8, 8), model).reason
    assumed = LRModel.parse("noise:5").with_profile(0, LRModel.parse("gauss:1").profiles[0], "default (assumed)", ASSUMED)
    assert "assumed" in ipp.projection_plan(sample, (2, 1, 1), assumed).reason


def _run(scan, settings, seed=0, progress=None):
    return ipp.upsample_projections_internally(scan["lr"], scan["scale"], scan["model"], scan["p_up"], scan["y"],
                                               scan["lr_geometry"], settings, seed=seed, progress=progress)


def test_it_is_deterministic_for_a_seed(scan):
    first, second, other = _run(scan, TINY, 4), _run(scan, TINY, 4), _run(scan, TINY, 5)
    assert first.shape == scan["p_up"].shape
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert not torch.equal(first, other)


def test_it_can_be_cancelled(scan):
    seen = []

    def on_event(event):
        if event.get("stage") == ipp.STAGE and event.get("iteration"):
            seen.append(event["iteration"])
            progress.cancel()

    progress = CallbackProgress(on_event)
    with pytest.raises(Cancelled):
        _run(scan, replace(TINY, steps=200), progress=progress)
    assert seen == [1]


def test_it_beats_p_up_and_the_consistent_p_up_on_a_real_ct(scan):
    """Against the truth's projections (PSNR over their range): the scan's projections teaching
    themselves beat ``P_up`` and its range-space correction by ``y``."""
    truth = scan["truth"].numpy()
    low, span = truth.min(), truth.max() - truth.min()
    score = lambda t: psnr((t.numpy() - low) / span, (truth - low) / span)
    ours = _run(scan, TrainingSettings(steps=300))
    operator = projection_operator(scan["model"], scan["v_up"], scan["scale"])
    consistent = consistent_p_up(scan["p_up"], scan["y"], operator)
    assert score(ours) > score(scan["p_up"]) + 0.3
    assert score(ours) > score(consistent) + 0.3
