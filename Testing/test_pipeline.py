"""The zero-shot pipeline end to end on a real CT crop, with tiny settings (speed is measured in
benchmarks/quality_bench.py, not here): grid, determinism, progress, cancellation, the prior
path, blocks, ROI and uncertainty through ``ctsr.upsampling.upsample``."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from ctsr.blocks import upsample_in_blocks
from ctsr.fidelity import enforce_lr_consistency
from ctsr.errors import Cancelled
from ctsr.gaussians.fit import FitSettings
from ctsr.gaussians.kernels import numba_available
from ctsr.grids import hr_grid
from ctsr.internal_prior import InternalPriorSettings
from ctsr.lrmodel import PAPER, LRModel, simulate_lr
from ctsr.metrics import evaluate, normalize, psnr
from ctsr.pipeline import PRESETS, Preset, super_resolve
from ctsr.progress import CallbackProgress
from ctsr.volume import Volume

TINY = Preset("tiny", n_views=8, prior_steps=2,
              fit=FitSettings(iterations=6, init_gaussians=400, max_gaussians=800, densify_from=2,
                              densify_every=2, tv_crop=8),
              consistency=True)


@pytest.fixture(scope="module")
def hr(sample):
    return Volume(sample.array[:32, :32, :32], sample.ijk_to_ras)


@pytest.fixture(scope="module")
def lr(hr):
    torch.set_num_threads(2)
    return simulate_lr(hr, (2, 2, 2))


def test_output_grid_progress_and_determinism(lr):
    events = []
    out, info = super_resolve(lr, (2, 2, 2), TINY, PAPER, device="cpu", seed=3, progress=CallbackProgress(events.append))
    matrix, shape = hr_grid(lr.ijk_to_ras, lr.shape_ijk, (2, 2, 2))
    assert out.shape_ijk == shape and np.allclose(out.ijk_to_ras, matrix)
    assert np.isfinite(out.array).all()
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["fraction"] for e in progress] == sorted(e["fraction"] for e in progress)
    assert progress[-1]["fraction"] == 1.0
    assert {"upsample", "project", "nabgs", "consistency"} <= {e["stage"] for e in progress}
    assert info["target"].startswith("consistent P_up") and info["gaussians"] > 0
    cpu_backend = "numba" if numba_available() else "torch"  # the CPU kernels, else the reference
    assert info["render_backend"] == cpu_backend
    assert any(f"{cpu_backend} renderer" in e.get("message", "") for e in events if e["event"] == "log")
    assert info["lr_residual"]["rms_hu"] < 30.0
    again, _ = super_resolve(lr, (2, 2, 2), TINY, PAPER, device="cpu", seed=3)
    np.testing.assert_array_equal(out.array, again.array)


def test_the_fit_is_sized_for_the_output(lr):
    """A preset sized for 128^3 (64k Gaussians) starts a 32^3 output with a 64th of them."""
    big = Preset("big", n_views=8, prior_steps=0, fit=FitSettings(iterations=2, init_gaussians=64000,
                                                                   max_gaussians=128000), consistency=False)
    events = []
    _, info = super_resolve(lr, (2, 2, 2), big, PAPER, device="cpu", progress=CallbackProgress(events.append))
    assert any("1000 Gaussians to start (up to 2000)" in e.get("message", "") for e in events)
    assert 0 < info["gaussians"] <= 1000


def test_cancel_stops_the_fit(lr):
    def cancel_in_fit(event):
        if event["event"] == "progress" and event["stage"] == "nabgs":
            raise Cancelled("user pressed cancel")

    with pytest.raises(Cancelled):
        super_resolve(lr, (2, 2, 2), TINY, PAPER, device="cpu", progress=CallbackProgress(cancel_in_fit))


def test_prior_path_runs_with_a_diffusion_model(lr):
    from ctsr.prior.model import Prior, make_unet

    torch.manual_seed(0)
    prior = Prior.from_unet(make_unet("tiny", sample_size=32))
    out, info = super_resolve(lr, (2, 2, 2), TINY, PAPER, prior=prior, device="cpu")
    assert info["target"].startswith("diffusion prior") and 0 <= info["prior_steps_mean"] <= TINY.prior_steps
    assert np.isfinite(out.array).all()


TINY_NETWORK = InternalPriorSettings(steps=3, patch=8, batch=1, channels=4, layers=2)


def test_the_internal_projection_prior_makes_the_target_where_it_can(sample, lr):
    """On the 64^3 sample's x2 LR it runs; on a 32^3 crop's (16 LR voxels, 8 after a second
    degradation) it cannot, and the target is the consistent ``P_up``."""
    preset = replace(TINY, projection_prior=TINY_NETWORK)
    events = []
    _, info = super_resolve(simulate_lr(sample, (2, 2, 2)), (2, 2, 2), preset, PAPER, device="cpu",
                            progress=CallbackProgress(events.append))
    assert info["target"].startswith("internal projection prior") and info["projection_prior"] == "internal, 3 steps"
    assert any(e.get("stage") == "projection prior" and e.get("iteration") == 3 for e in events)
    _, info = super_resolve(lr, (2, 2, 2), preset, PAPER, device="cpu")
    assert info["target"].startswith("consistent P_up") and "too small" in info["projection_prior"]


def test_at_x4_an_external_projection_prior_of_that_scale_makes_the_target_if_its_self_check_passes(
        hr, monkeypatch):
    """x4 has no internal projection pair: a pretrained network for x4 makes ``Y`` where its
    self-check on the scan's own projections is positive, else ``Y`` is ``P_up``; one for
    another scale is not used (the consistent ``P_up``)."""
    from ctsr import external_projection_prior
    from ctsr.external_projection_prior import INPUTS, KERNEL
    from ctsr.network_folder import PretrainedNetwork
    from ctsr.residual_cnn import ResidualCNN

    network = ResidualCNN(4, 2, KERNEL, INPUTS).eval()
    torch.nn.init.normal_(network.body[-1].weight, std=1e-3)  # a network that adds something
    lr4 = simulate_lr(hr, (4, 4, 4))
    preset = replace(TINY, projection_prior=TINY_NETWORK)
    checks = []
    real_check = external_projection_prior.self_check
    monkeypatch.setattr(external_projection_prior, "self_check", lambda *a, **k: checks.append(real_check(*a, **k))
                        or checks[-1])
    external = PretrainedNetwork(network, (4, 4, 4), "x4 test", {})
    _, info = super_resolve(lr4, (4, 4, 4), preset, PAPER, device="cpu", external_projection=external)
    expected = "external projection prior" if checks[-1] > 0 else "P_up (the external projection prior declined)"
    assert info["target"].startswith(expected)
    monkeypatch.setattr(external_projection_prior, "self_check", lambda *a, **k: -1.0)
    events = []
    declined, info = super_resolve(lr4, (4, 4, 4), preset, PAPER, device="cpu", external_projection=external,
                                   progress=CallbackProgress(events.append))
    assert info["target"].startswith("P_up") and info["projection_prior"].startswith("external declined")
    # Y = P_up leaves NAB-GS nothing to fit: it is skipped, and the result is fast's.
    assert info["gaussians"] == 0 and not any(e.get("stage") == "nabgs" for e in events)
    assert info["target"].endswith("NAB-GS skipped: fast's lanczos volume")
    fast, _ = super_resolve(lr4, (4, 4, 4), PRESETS["fast"], PAPER, device="cpu")
    np.testing.assert_array_equal(declined.array, fast.array)
    monkeypatch.setattr(external_projection_prior, "self_check", lambda *a, **k: 1.0)
    _, info = super_resolve(lr4, (4, 4, 4), preset, PAPER, device="cpu", external_projection=external)
    assert info["target"].startswith("external projection prior") and "+1.00 dB" in info["projection_prior"]
    assert info["gaussians"] > 0
    monkeypatch.setattr(external_projection_prior, "self_check", real_check)
    _, info = super_resolve(simulate_lr(Volume(hr.array[:28], hr.ijk_to_ras), (4, 4, 4)), (4, 4, 4), preset, PAPER,
                            device="cpu", external_projection=external)
    assert info["projection_prior"] == "external declined: the input is too small to check it on (z: 7 voxels, 8 needed)"
    other = PretrainedNetwork(network, (2, 2, 2), "x2 test", {})
    _, info = super_resolve(lr4, (4, 4, 4), preset, PAPER, device="cpu", external_projection=other)
    assert info["target"].startswith("consistent P_up") and info["projection_prior"].startswith("skipped")


def test_blocked_and_whole_runs_agree(lr, hr):
    """The same small volume in one piece and in 4 overlapping blocks: their PSNRs against the
    truth agree to 0.1 dB, and the blend leaves no seam (the two outputs are close everywhere)."""
    preset = replace(TINY, prior_steps=0, fit=replace(TINY.fit, iterations=3))
    run = lambda piece, progress: super_resolve(piece, (2, 2, 2), preset, PAPER, device="cpu", progress=progress)[0]
    whole = run(lr, CallbackProgress(lambda e: None))
    blocked = upsample_in_blocks(lr, (2, 2, 2), run, (16, 10, 10), overlap=4)
    blocked, _ = enforce_lr_consistency(blocked, lr, (2, 2, 2), PAPER)  # as ctsr.upsampling does on the blend
    assert blocked.same_grid(whole)
    assert abs(evaluate(blocked, hr)["psnr"] - evaluate(whole, hr)["psnr"]) < 0.1
    assert psnr(normalize(blocked.array), normalize(whole.array)) > 40.0


def test_presets_are_ordered_by_effort():
    fast, standard, quality = (PRESETS[k] for k in ("fast", "standard", "quality"))
    assert fast.n_views <= standard.n_views <= quality.n_views
    assert fast.fit is None and standard.fit.iterations <= quality.fit.iterations


def test_upsample_with_roi_and_uncertainty(oblique_sample):
    """Through the public entry: an ROI box in RAS on an oblique volume comes out at the new
    resolution in place, with K runs' standard deviation beside it (seeds differ)."""
    from ctsr.roi import Roi, crop_to_roi
    from ctsr.upsampling import upsample

    lr = simulate_lr(oblique_sample, (1, 1, 4))
    corner = lambda ijk: (lr.ijk_to_ras @ np.append(ijk, 1.0))[:3]
    a, b = corner([10, 12, 3]), corner([40, 50, 12])
    roi = Roi("ras", tuple(np.minimum(a, b)), tuple(np.maximum(a, b)))
    result = upsample(lr, "1x1x4", "balanced", uncertainty=2, roi=roi)
    crop = crop_to_roi(lr, roi)
    matrix, shape = hr_grid(crop.ijk_to_ras, crop.shape_ijk, (1, 1, 4))
    assert result.volume.shape_ijk == shape and np.allclose(result.volume.ijk_to_ras, matrix)
    assert result.provenance["roi"] == str(roi) and result.provenance["uncertainty_runs"] == 2
    assert result.uncertainty.same_grid(result.volume)
    # too small a box for the internal prior: balanced falls back to fast, whose runs agree
    assert result.provenance["internal_prior"].startswith("skipped")
    assert np.all(result.uncertainty.array == 0)


def test_uncertainty_is_the_spread_of_the_seeds_runs_and_the_result_is_the_first(sample, monkeypatch):
    """K runs of balanced (a prior that trains: seeds differ) give the voxelwise standard
    deviation of the K volumes that runs with seeds seed .. seed + K - 1 give one by one; the
    volume and its provenance (the LR residual) are the first run's (40 steps here, not 300)."""
    from ctsr.fidelity import lr_residual
    from ctsr.upsampling import upsample

    balanced = PRESETS["balanced"]
    monkeypatch.setitem(PRESETS, "balanced", replace(balanced, internal_prior=replace(balanced.internal_prior,
                                                                                      steps=40, flip_budget=0)))
    lr = simulate_lr(Volume(sample.array[:48, :48, :48], sample.ijk_to_ras), (2, 2, 2),
                     LRModel.parse("gauss:1,noise:5"))
    result = upsample(lr, 2, "balanced", seed=4, uncertainty=3, lr_model="gauss:1,noise:5", pretrained="none")
    assert result.provenance["internal_prior"].startswith("volume")
    one_by_one = [upsample(lr, 2, "balanced", seed=s, lr_model="gauss:1,noise:5", pretrained="none").volume.array
                  for s in (4, 5, 6)]
    np.testing.assert_array_equal(result.volume.array, one_by_one[0])
    np.testing.assert_allclose(result.uncertainty.array, np.std(np.stack(one_by_one), axis=0), atol=1e-3)
    assert result.uncertainty.array.max() > 0.1
    model = LRModel.parse(result.provenance["lr_model"]["model"])
    assert result.provenance["lr_residual"] == lr_residual(result.volume, lr, (2, 2, 2), model)


@pytest.mark.parametrize("option, projection_prior, diffusion", [
    (None, True, False), ("none", False, False), ("shipped", True, True)])
def test_the_prior_option_picks_the_projection_prior(lr, monkeypatch, option, projection_prior, diffusion):
    """``upsample(..., prior=...)``: by default the preset's internal projection prior; "none"
    turns it off; "shipped" loads the shipped diffusion model (which then makes ``Y``). Only the
    pipeline call is stood in for: the route to it is what is tested."""
    import ctsr.pipeline as pipeline
    from ctsr.baselines import upsample_interpolate
    from ctsr.prior.model import Prior
    from ctsr.upsampling import upsample

    seen = {}

    def record(piece, scale, preset, model, prior=None, **options):
        seen.update(projection_prior=preset.projection_prior is not None, prior=prior)
        return upsample_interpolate(piece, scale, "cubic"), {}

    monkeypatch.setattr(pipeline, "super_resolve", record)
    upsample(lr, 2, "standard", device="cpu", prior=option)
    assert seen["projection_prior"] is projection_prior
    assert isinstance(seen["prior"], Prior) if diffusion else seen["prior"] is None


@pytest.mark.parametrize("scale, option, shipped", [(4, None, True), (2, None, False), (4, "none", False)])
def test_the_shipped_external_projection_prior_is_given_at_its_scale_only(lr, monkeypatch, scale, option, shipped):
    """``standard`` by default is handed the shipped x4 external projection prior at x4 (the
    pipeline uses it where the internal one has no pair), not at x2, and not with ``--prior none``;
    its weights are read only where it is given."""
    import ctsr.external_projection_prior as xp
    import ctsr.pipeline as pipeline
    from ctsr.baselines import upsample_interpolate
    from ctsr.external_projection_prior import SHIPPED_NAME
    from ctsr.upsampling import upsample

    seen = {}

    def record(piece, scale, preset, model, external_projection=None, **options):
        seen["external_projection"] = external_projection
        return upsample_interpolate(piece, scale, "cubic"), {}

    monkeypatch.setattr(pipeline, "super_resolve", record)
    reads, read_weights = [], xp.load_network_weights
    monkeypatch.setattr(xp, "load_network_weights", lambda *a: reads.append(a) or read_weights(*a))
    upsample(lr, scale, "standard", device="cpu", prior=option)
    assert bool(reads) is shipped
    given = seen["external_projection"]
    assert (given is not None and given.name == SHIPPED_NAME and given.scale == (4, 4, 4)) if shipped else given is None


def test_through_plane_along_x_runs_as_along_z_and_turns_back(sample, monkeypatch):
    """A thick axis that is not K (4x1x1) gets what 1x1x4 gets on the same scan with x and z
    exchanged: the same voxels (turned back), the through-plane internal prior, the slab given
    without an axis on the scaled axis, and the model reported in the input's own axes (the
    prior trains 60 steps here instead of 1200, to keep the test short)."""
    from ctsr.upsampling import upsample

    balanced = PRESETS["balanced"]
    monkeypatch.setitem(PRESETS, "balanced", replace(balanced, internal_prior=replace(balanced.internal_prior,
                                                                                      plane_steps=60)))
    thick_z = simulate_lr(sample, (1, 1, 4), LRModel.parse("z=slab:6mm,noise:5"))
    thick_x = thick_z.with_axes_swapped(0, 2)
    along_z = upsample(thick_z, "1x1x4", "balanced", seed=3, lr_model="slab:6mm")
    along_x = upsample(thick_x, "4x1x1", "balanced", seed=3, lr_model="slab:6mm")
    turned = along_z.volume.with_axes_swapped(0, 2)
    assert along_x.volume.same_grid(turned)
    np.testing.assert_allclose(along_x.volume.array, turned.array, atol=1e-3)
    assert along_x.provenance["internal_prior"].startswith("through-plane")
    assert along_x.provenance["lr_model"]["model"].startswith("x=slab:6mm")
    assert along_x.provenance["lr_model"]["source"]["x"] == "given"
    assert along_x.provenance["slice_axis"] == "x (run as z)"
    assert along_x.provenance["scale"] == "4x1x1"


def test_large_pixels_with_thick_slices_along_x_run_as_along_z_and_turn_back(sample):
    """4x2x2 (thick slices along x) gets what 2x2x4 gets with x and z exchanged: the same voxels,
    the slice profile estimated on the thick axis and reported on x."""
    from ctsr.upsampling import upsample

    thick_z = simulate_lr(sample, (2, 2, 4), LRModel.parse("xy=gauss:1,z=box,noise:5"))
    thick_x = thick_z.with_axes_swapped(0, 2)
    along_z = upsample(thick_z, "2x2x4", "fast")
    along_x = upsample(thick_x, "4x2x2", "fast")
    turned = along_z.volume.with_axes_swapped(0, 2)
    assert along_x.volume.same_grid(turned)
    np.testing.assert_allclose(along_x.volume.array, turned.array, atol=1e-3)
    z_model, x_model = along_z.provenance["lr_model"], along_x.provenance["lr_model"]
    assert z_model["source"]["z"] == x_model["source"]["x"] and "in-plane axes as reference" in x_model["source"]["x"]
    assert along_x.provenance["slice_axis"] == "x (run as z)"


def test_a_thick_slice_input_scaled_in_plane_too_gets_a_note_naming_the_scale_across_its_slices(sample):
    from ctsr.upsampling import upsample

    thick = Volume.from_spacing(sample.array[:, :32, :32], (3.0, 0.6, 0.6))  # slices along x
    events = []
    upsample(thick, 2, "cubic", CallbackProgress(events.append))
    notes = [e["message"] for e in events if e.get("event") == "log" and "thick slices" in e["message"]]
    assert len(notes) == 1 and "like 4x1x1, what --scale auto picks" in notes[0]
    events.clear()
    for across_its_slices in ("2x1x1", "4x2x2"):  # large pixels and thicker slices: no note either
        upsample(thick, across_its_slices, "cubic", CallbackProgress(events.append))
        assert not [e for e in events if e.get("event") == "log" and "thick slices" in e["message"]]


def test_scale_auto_is_chosen_from_the_spacing_and_said(sample):
    from ctsr.upsampling import upsample

    for spacing, scale in (((3.0, 0.6, 0.6), "4x1x1"), ((1.0, 1.0, 1.0), "2"), ((2.0, 2.0, 6.0), "2x2x4")):
        events = []
        result = upsample(Volume.from_spacing(sample.array[:16, :16, :16], spacing), "auto", "cubic",
                          CallbackProgress(events.append))
        assert result.provenance["scale"] == scale
        assert f"scale {scale}, chosen from the spacing (ctsr.grids.suggested_scale)" in [e.get("message")
                                                                                          for e in events]


def test_upsample_runs_in_blocks_when_the_whole_job_does_not_fit(sample, monkeypatch):
    """With a little less memory free than the whole job needs, ``upsample`` plans blocks, and
    the blend (made consistent with the input once more) agrees with the whole run; the LR
    residual reported is the blend's."""
    import ctsr.planning as planning
    from ctsr.fidelity import lr_residual
    from ctsr.upsampling import upsample

    whole = upsample(sample, 2, "fast", lr_model="gauss:1,noise:5")
    needed = planning.estimate_bytes(sample.array.shape, (2, 2, 2), 0, 0)
    monkeypatch.setattr(planning, "available_ram_bytes", lambda: int((needed - 1) / planning.SAFETY))
    blocked = upsample(sample, 2, "fast", lr_model="gauss:1,noise:5")
    assert "blocks" in blocked.provenance["memory_plan"] and "blocks" not in whole.provenance["memory_plan"]
    assert blocked.volume.same_grid(whole.volume)
    assert psnr(normalize(blocked.volume.array), normalize(whole.volume.array)) > 45.0
    model = LRModel.parse(blocked.provenance["lr_model"]["model"])
    assert blocked.provenance["lr_residual"] == lr_residual(blocked.volume, sample, (2, 2, 2), model)
