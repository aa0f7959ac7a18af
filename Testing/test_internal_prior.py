"""The internal prior: its training pair is made by the LR model's operator, its plan follows
the scale, inference in tiles equals one pass, and it is seeded, cancellable and useful."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from ctsr import internal_prior as ip
from ctsr import residual_cnn as rc
from ctsr.baselines import upsample_interpolate
from ctsr.errors import Cancelled
from ctsr.fidelity import enforce_lr_consistency
from ctsr.grids import hr_grid
from ctsr.lrmodel import LRModel, LROperator, Profile, simulate_lr
from ctsr.metrics import evaluate
from ctsr.progress import CallbackProgress, SilentProgress
from ctsr.volume import Volume

TINY = ip.InternalPriorSettings(steps=6, plane_steps=6, patch=8, batch=2, channels=4, layers=3)


def test_second_degradation_is_the_lr_model_operator(sample):
    model = LRModel.parse("box,noise:0")
    low = ip.degrade_again(sample, (2, 2, 2), model)
    np.testing.assert_array_equal(low.array, LROperator.for_volume(model, (2, 2, 2), sample)(sample.array))
    np.testing.assert_allclose(low.ijk_to_ras, simulate_lr(sample, (2, 2, 2), model).ijk_to_ras)


def test_second_degradation_tops_the_noise_up_to_the_model_sd(sample):
    """``L2`` gets white noise of SD noise * sqrt(1 - g^2) on top of ``D(L)``."""
    model = LRModel.parse("gauss:1,noise:20")
    operator = LROperator.for_volume(model, (2, 2, 2), sample)
    extra = ip.degrade_again(sample, (2, 2, 2), model, seed=3).array - operator(sample.array)
    gain = operator.noise_gain()
    assert np.std(extra) == pytest.approx(20 * np.sqrt(1 - gain**2), rel=0.05)
    assert abs(np.mean(extra)) < 1.0


def test_the_training_pair_is_fast_applied_to_the_second_degradation(sample):
    model = LRModel.parse("gauss:1,noise:0")
    the_plan = ip.plan(sample, (2, 2, 2), model)
    source, target = ip.training_pair(sample, the_plan)
    expected = ip.consistent_upsample(ip.degrade_again(sample, (2, 2, 2), model), (2, 2, 2), model).array
    np.testing.assert_array_equal(source, expected)
    np.testing.assert_array_equal(target, sample.array[: source.shape[0], : source.shape[1], : source.shape[2]])


def test_plan_follows_the_scale(sample):
    model = LRModel.parse("gauss:1,slab:3mm,noise:5")
    assert ip.plan(sample, (2, 2, 2), model).kind == "volume"
    through = ip.plan(sample, (1, 1, 4), model)
    assert through.kind == "through-plane" and through.pair_scale == (4, 1, 1)
    # z's 3 mm slab at HR z spacing (1.5 mm / 4) is 8 HR voxels; along x (1.5 mm) that is 12 mm.
    assert through.pair_model.profiles[0].kind == "slab"
    assert through.pair_model.profiles[0].value == pytest.approx(3.0 * 1.5 / (1.5 / 4))
    too_small = ip.plan(Volume(sample.array[:20, :20, :20], sample.ijk_to_ras), (2, 2, 2), model)
    assert too_small.kind is None and "too small" in too_small.reason
    two = ip.plan(sample, (4, 4, 4), model)
    # x4: the pair at x2, the Gaussian's sigma halved in HR voxels twice as large, the slab in mm kept
    assert two.kind == "two levels" and two.pair_scale == (2, 2, 2)
    assert two.pair_model.profiles[0] == Profile("gauss", 0.5) and two.pair_model.profiles[2] == Profile("slab", 3.0)
    assert "not measured" in ip.plan(sample, (8, 8, 8), model).reason


def test_no_pair_is_made_with_an_assumed_blur(sample):
    """A profile that is the default (not given, read or estimated), or given but much wider
    than the input looks, teaches nothing."""
    from ctsr.lrestimate import resolve_lr_model

    # 56 slices at 1x1x4: 14 LR slices, too few to estimate the slice profile
    lr = simulate_lr(Volume(sample.array[:56], sample.ijk_to_ras), (1, 1, 4), LRModel.parse("gauss:1,noise:0"))
    estimated = resolve_lr_model(lr, (1, 1, 4))
    assert estimated.source["z"].startswith("default")
    assert "blur along z is assumed" in ip.plan(lr, (1, 1, 4), estimated).reason
    lr = simulate_lr(sample, (2, 2, 2), LRModel.parse("box,noise:10"), seed=1)
    assert "looks" in ip.plan(lr, (2, 2, 2), resolve_lr_model(lr, (2, 2, 2), "gauss:2")).reason
    through = simulate_lr(sample, (1, 1, 4), LRModel.parse("gauss:1,noise:0"))
    assert ip.plan(through, (1, 1, 4), resolve_lr_model(through, (1, 1, 4), slice_thickness_mm=3.0)).kind == "through-plane"


@pytest.mark.parametrize("kernel", [(3, 3, 3), (1, 3, 3)])
@pytest.mark.parametrize("budget", [150, 2000])
def test_inference_in_tiles_equals_one_pass(monkeypatch, kernel, budget):
    """The halo makes tile-wise inference seamless: same numbers as the whole volume at once,
    with tiles cut along every axis."""
    torch.manual_seed(0)
    network = rc.ResidualCNN(channels=4, layers=3, kernel=kernel)
    torch.nn.init.normal_(network.body[-1].weight, std=0.1)
    array = np.random.default_rng(0).normal(0, 300, (21, 18, 20)).astype(np.float32)
    with torch.no_grad():
        whole = array + network(torch.from_numpy(array / rc.HU_SCALE)[None, None])[0, 0].numpy() * rc.HU_SCALE
    monkeypatch.setattr(rc, "TILE_VOXELS", budget)
    tile = rc.tile_shape(array.shape, network.halo)
    assert tile != array.shape
    if budget < 18 * 20:  # not even one plane fits: cut in-plane too
        assert any(e < n for e, n in zip(tile[1:], array.shape[1:]))
    seen = []
    network.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0][0, 0].numel()))
    tiled = rc.apply_in_tiles(network, array, torch.device("cpu"), SilentProgress())
    np.testing.assert_allclose(tiled, whole, atol=1e-3)
    # what tile_shape weighs is what the network computes
    assert sum(seen) == math.prod(rc.computed_extent(n, e, h) for n, e, h in zip(array.shape, tile, network.halo))


def test_tiles_fit_the_budget_and_cut_axes_without_a_halo_first():
    for shape, halo in [((96, 1024, 1024), (6, 6, 6)), ((512, 512, 192), (0, 6, 6)), ((7, 300, 5), (2, 2, 2))]:
        for budget in (10_000, 2_000_000):
            tile = rc.tile_shape(shape, halo, budget)
            padded = math.prod(min(n, e + 2 * h) for n, e, h in zip(shape, tile, halo))
            assert padded <= budget or tile == (1, 1, 1)
            assert all(1 <= e <= n for e, n in zip(tile, shape))
    assert rc.tile_shape((512, 512, 192), (0, 6, 6))[1:] == (512, 192)  # whole planes: no halo to pay
    assert rc.tile_shape((10, 10, 10), (6, 6, 6)) == (10, 10, 10)  # fits: one tile


def test_flip_ensemble_is_the_largest_group_within_the_budget():
    """Each ensemble is a group of flips (closed under composition, so averaging over it
    commutes with its flips), and the budget of voxel-passes picks 8, 4, 2 or 1 passes."""
    for flips in ip.FLIP_ENSEMBLES:
        as_sets = {frozenset(axes) for axes in flips}
        assert flips[0] == () and len(as_sets) == len(flips)
        assert all(a ^ b in as_sets for a in as_sets for b in as_sets)
    shape = (10, 20, 30)
    assert [len(ip.flip_ensemble(shape, budget)) for budget in (48_000, 47_999, 24_000, 12_000, 11_999, 0)] == \
        [8, 4, 4, 2, 1, 1]


@pytest.mark.parametrize("budget, equivariant", [(10**9, [(0,), (1, 2), (0, 1, 2)]), (4 * 9 * 10 * 12, [(0, 1), (1, 2)])])
def test_flip_ensemble_is_the_mean_over_its_flips_and_commutes_with_them(budget, equivariant):
    """The volume kind's result is the mean of the network's results on the flips of the
    ensemble, each flipped back (computed here in torch, independently); it then commutes with
    every flip of the ensemble, which one pass of a trained network does not."""
    torch.manual_seed(1)
    network = rc.ResidualCNN(channels=4, layers=3)
    torch.nn.init.normal_(network.body[-1].weight, std=0.1)
    array = np.random.default_rng(2).normal(0, 300, (9, 10, 12)).astype(np.float32)
    volume = Volume(array, np.diag([0.7, 0.7, 1.5, 1.0]))
    the_plan = ip.PairPlan("volume")
    ensemble = lambda v: ip.apply(network, the_plan, v, flip_budget=budget).array
    x = torch.from_numpy(array / rc.HU_SCALE)[None, None]
    with torch.no_grad():
        passes = [network(x.flip([2 + a for a in axes])).flip([2 + a for a in axes]) if axes else network(x)
                  for axes in ip.flip_ensemble(array.shape, budget)]
    expected = array + torch.stack(passes).mean(0)[0, 0].numpy() * rc.HU_SCALE
    np.testing.assert_allclose(ensemble(volume), expected, atol=1e-3)
    single = lambda v: ip.apply(network, the_plan, v, flip_budget=0).array
    np.testing.assert_array_equal(single(volume), rc.apply_in_tiles(network, array, torch.device("cpu"),
                                                                    SilentProgress()))
    for axes in equivariant:
        flipped = volume.with_array(np.ascontiguousarray(np.flip(array, axes)))
        np.testing.assert_allclose(ensemble(flipped), np.flip(ensemble(volume), axes), atol=1e-3)
        assert np.abs(single(flipped) - np.flip(single(volume), axes)).max() > 0.1


def test_untrained_network_changes_nothing(sample):
    network = rc.ResidualCNN(channels=4, layers=3)
    the_plan = ip.plan(sample, (2, 2, 2), LRModel.parse("box,noise:0"))
    out = ip.apply(network, the_plan, sample)
    np.testing.assert_array_equal(out.array, sample.array)


def _parameters(network):
    return torch.cat([p.detach().flatten() for p in network.parameters()])


def test_training_is_deterministic_for_a_seed(sample):
    model = LRModel.parse("gauss:1,noise:10")
    first, _ = ip.train(sample, (2, 2, 2), model, TINY, seed=4)
    second, _ = ip.train(sample, (2, 2, 2), model, TINY, seed=4)
    other, _ = ip.train(sample, (2, 2, 2), model, TINY, seed=5)
    assert torch.equal(_parameters(first), _parameters(second))
    assert not torch.equal(_parameters(first), _parameters(other))


def test_fine_tuning_starts_from_the_initial_network_and_leaves_it_alone(sample):
    """``initial``: training continues from its weights (with a zero learning rate it returns
    them), and the initial network itself is not changed."""
    model = LRModel.parse("gauss:1,noise:10")
    source, target = ip.training_pair(sample, ip.plan(sample, (2, 2, 2), model))
    fit = lambda settings, initial=None: rc.fit_residual_network(
        source / rc.HU_SCALE, target / rc.HU_SCALE, (3, 3, 3), settings, 0, "cpu", SilentProgress(), "t",
        initial=initial)
    initial = fit(TINY)
    before = _parameters(initial).clone()
    frozen = fit(dataclasses.replace(TINY, learning_rate=0.0), initial)
    assert torch.equal(_parameters(frozen), before)
    tuned = fit(TINY, initial)
    assert torch.equal(_parameters(initial), before) and not torch.equal(_parameters(tuned), before)
    assert not torch.equal(_parameters(tuned), _parameters(fit(TINY)))


def test_axis_permutations_teach_a_relation_along_every_axis():
    """A pair whose residual is the second difference along K alone: trained without
    permutations the network learns it along K (swapping K and I does not commute with it);
    with ``permute_axes`` each batch sees the relation along another axis, and the network
    learns one that commutes with the swap (the mean over the three axes)."""
    rng = np.random.default_rng(0)
    source = rng.standard_normal((20, 20, 20)).astype(np.float32)
    padded = np.pad(source, 1, mode="edge")
    target = source + 0.5 * (padded[2:, 1:-1, 1:-1] + padded[:-2, 1:-1, 1:-1] - 2 * source)
    settings = ip.InternalPriorSettings(steps=300, patch=10, batch=4, channels=8, layers=3, learning_rate=1e-2)
    probe = rng.standard_normal((16, 16, 16)).astype(np.float32)
    swap = lambda a: np.ascontiguousarray(a.transpose(2, 1, 0))

    def commutator(permute_axes):
        network = rc.fit_residual_network(source, target, (3, 3, 3), settings, 0, "cpu", SilentProgress(), "t",
                                          permute_axes=permute_axes)
        residual = lambda a: rc.apply_in_tiles(network, a, torch.device("cpu"), SilentProgress(), unit=1.0) - a
        return np.linalg.norm(residual(swap(probe)) - swap(residual(probe))) / np.linalg.norm(residual(probe))

    assert commutator(False) > 0.5
    assert commutator(True) < 0.3


@pytest.mark.parametrize("scale, steps", [((2, 2, 2), 3), ((1, 1, 4), 5)])
def test_each_kind_trains_for_its_own_step_count(sample, scale, steps):
    """The volume kind trains ``steps`` Adam steps, the through-plane kind ``plane_steps``; the
    progress events and the provenance say the number that ran."""
    model = LRModel.parse("gauss:1,noise:0")
    lr = simulate_lr(sample, scale, model)
    settings = dataclasses.replace(TINY, steps=3, plane_steps=5)
    events = []
    _, info = ip.upsample_with_internal_prior(lr, scale, model, settings, progress=CallbackProgress(events.append))
    iterations = [e["iteration"] for e in events if e.get("stage") == "internal prior" and "iteration" in e]
    assert max(iterations) == steps and f", {steps} steps from zero" in info["internal_prior"]


def test_training_can_be_cancelled(sample):
    steps = []

    def on_event(event):
        if event.get("stage") == "internal prior" and event.get("iteration"):
            steps.append(event["iteration"])
            progress.cancel()

    progress = CallbackProgress(on_event)
    with pytest.raises(Cancelled):
        ip.train(sample, (2, 2, 2), LRModel.parse("box,noise:0"), ip.InternalPriorSettings(steps=200, patch=8),
                 progress=progress)
    assert steps == [1]


def test_at_x4_a_default_blur_carried_to_x2_is_learned_from(sample):
    """A 24^3 LR at x4 with no flags: the blur is estimated at neither level, and the two
    levels learn from a pair made with x4's default carried to x2 at its width in mm (the
    narrowest blur assumed; a plain default teaches nothing, the test above)."""
    from ctsr.lrestimate import CARRIED_DEFAULT, resolve_lr_model

    small = Volume(np.ascontiguousarray(sample.array[:24, :24, :24]), sample.ijk_to_ras)
    model = resolve_lr_model(small, (4, 4, 4))
    the_plan = ip.plan(small, (4, 4, 4), model)
    assert the_plan.kind == "two levels" and the_plan.pair_model.source["x"].startswith(CARRIED_DEFAULT)
    assert the_plan.pair_model.profiles[0] == Profile("gauss", 0.25)
    out, info = ip.upsample_with_internal_prior(small, (4, 4, 4), model, TINY)
    assert info["internal_prior"].startswith("two levels") and out.shape_ijk == (96, 96, 96)


@pytest.mark.parametrize("scale, cell", [((2, 2, 2), "gauss:1,noise:10"), ((1, 1, 4), "gauss:1.5,noise:0")])
def test_it_adds_to_fast_on_a_real_ct(sample, scale, cell):
    """The sample's LR, its model known: the scan teaching itself beats ``fast`` (PSNR)."""
    model = LRModel.parse(cell)
    lr = simulate_lr(sample, scale, model, seed=1)
    fast = ip.consistent_upsample(lr, scale, model)
    settings = ip.InternalPriorSettings(steps=120, plane_steps=120)
    ours, info = ip.upsample_with_internal_prior(lr, scale, model, settings, seed=0)
    assert not info["internal_prior"].startswith("skipped")
    assert evaluate(ours, sample)["psnr"] > evaluate(fast, sample)["psnr"] + 0.1


def test_without_a_plan_it_falls_back_to_fast(sample):
    model = LRModel.parse("gauss:1,noise:0")
    lr = simulate_lr(sample, (4, 4, 4), model)
    out, info = ip.upsample_with_internal_prior(lr, (4, 4, 4), model, TINY)
    assert info["internal_prior"] == f"skipped: {ip.plan(lr, (4, 4, 4), model).reason}"
    fast, _ = enforce_lr_consistency(upsample_interpolate(lr, (4, 4, 4), "lanczos"), lr, (4, 4, 4), model)
    np.testing.assert_array_equal(out.array, fast.array)


def test_at_x4_it_learns_at_x2_and_lanczos_does_the_rest(sample):
    """A 48 x 48 x 8 LR at 4x4x1: the pair is made at 2x2x1 (24 voxels left, 12 after the second
    degradation), the output is on the x4 grid, seeded, and not ``fast``'s."""
    lr = Volume(sample.array[:8, :48, :48], sample.ijk_to_ras)
    scale, model = (4, 4, 1), LRModel.parse("box,noise:10")
    out, info = ip.upsample_with_internal_prior(lr, scale, model, TINY, seed=1)
    assert info["internal_prior"].startswith("two levels (the volume pair at x2 under xy=box,noise:10")
    matrix, shape = hr_grid(lr.ijk_to_ras, lr.shape_ijk, scale)
    assert out.shape_ijk == shape and np.allclose(out.ijk_to_ras, matrix)
    again, _ = ip.upsample_with_internal_prior(lr, scale, model, TINY, seed=1)
    np.testing.assert_array_equal(out.array, again.array)
    assert np.abs(out.array - ip.consistent_upsample(lr, scale, model).array).max() > 1.0


def test_in_plane_then_through_plane_runs_both_parts_and_matches_the_input(sample):
    """2x2x4: the in-plane pair (volume kind at 2x2x1), then the through-plane one on its result;
    the output is on the 2x2x4 grid, seeded, consistent with the LR input under the whole model,
    not ``fast``'s, and its progress rises from start to end."""
    from ctsr.lrestimate import resolve_lr_model

    scale = (2, 2, 4)
    lr = simulate_lr(sample, scale, LRModel.parse("gauss:1,noise:0"), seed=1)
    model = resolve_lr_model(lr, scale)
    events = []
    out, info = ip.upsample_with_internal_prior(lr, scale, model, TINY, seed=1,
                                                progress=CallbackProgress(events.append))
    assert info["internal_prior"].startswith("in-plane x2: volume")
    assert "then through-plane x4: through-plane" in info["internal_prior"]
    matrix, shape = hr_grid(lr.ijk_to_ras, lr.shape_ijk, scale)
    assert out.shape_ijk == shape and np.allclose(out.ijk_to_ras, matrix)
    again, _ = ip.upsample_with_internal_prior(lr, scale, model, TINY, seed=1)
    np.testing.assert_array_equal(out.array, again.array)
    fast = ip.consistent_upsample(lr, scale, model)
    assert np.abs(out.array - fast.array).max() > 1.0
    residual = LROperator.for_volume(model, scale, out)(out.array) - lr.array
    assert np.sqrt(np.mean(residual**2)) <= model.noise_hu * 1.02 + 0.5
    fractions = [e["fraction"] for e in events if "fraction" in e]
    assert fractions == sorted(fractions) and fractions[-1] >= 0.95


def test_in_plane_then_through_plane_is_fast_where_neither_part_learns(sample):
    """Every profile assumed: neither part has a pair, and the result is ``fast``'s at 2x2x4."""
    from ctsr.lrmodel import ASSUMED, DEFAULT_PROFILE

    scale = (2, 2, 4)
    lr = simulate_lr(sample, scale, LRModel.parse("gauss:0.5,noise:0"), seed=1)
    model = LRModel((DEFAULT_PROFILE,) * 3, 0.0, origin=dict.fromkeys("xyz", ASSUMED))
    out, info = ip.upsample_with_internal_prior(lr, scale, model, TINY)
    assert info["internal_prior"].startswith("skipped: in-plane the blur along x is assumed")
    assert "; through-plane the blur along z is assumed" in info["internal_prior"]
    np.testing.assert_array_equal(out.array, ip.consistent_upsample(lr, scale, model).array)
