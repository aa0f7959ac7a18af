"""The final data-consistency step and the LR residual reported with every result."""

import numpy as np
import pytest

from ctsr.baselines import spline_matrix, upsample_interpolate
from ctsr.fidelity import HU_MARGIN, MIN_LAMBDA, enforce_lr_consistency, hu_bounds, lr_residual
from ctsr.lrmodel import PAPER, LRModel, LROperator, simulate_lr
from ctsr.metrics import evaluate


@pytest.mark.parametrize("scale", [(2, 2, 2), (1, 1, 4), (2, 2, 1)])
def test_spline_matrix_is_the_cubic_baseline(sample, scale):
    """U of the step (one matrix per axis) is exactly the cubic baseline's upsampling."""
    lr = simulate_lr(sample, scale)
    ours = lr.array.astype(np.float64)
    for axis, s in enumerate(scale[::-1]):
        ours = np.moveaxis(np.tensordot(spline_matrix(ours.shape[axis], s, "cubic"), np.moveaxis(ours, axis, 0), 1), 0, axis)
    np.testing.assert_allclose(ours, upsample_interpolate(lr, scale, "cubic").array, atol=0.05)


@pytest.mark.parametrize("scale", [(2, 2, 2), (1, 1, 4)])
def test_with_the_true_model_and_no_noise_it_moves_towards_the_truth(sample, scale):
    """The paper's LR, its operator given: the residual falls and the PSNR rises."""
    lr = simulate_lr(sample, scale)
    cubic = upsample_interpolate(lr, scale, "cubic")
    consistent, info = enforce_lr_consistency(cubic, lr, scale, PAPER)
    assert lr_residual(consistent, lr, scale, PAPER)["rms_hu"] < 0.5 * lr_residual(cubic, lr, scale, PAPER)["rms_hu"]
    assert info["lambda"] == pytest.approx(MIN_LAMBDA) and info["stopped_by"] == "regularization floor"
    assert evaluate(consistent, sample)["psnr"] > evaluate(cubic, sample)["psnr"] + 0.05


@pytest.mark.parametrize("noise", [15.0, 30.0])
def test_it_stops_at_the_noise_level_never_below(sample, noise):
    """Discrepancy principle: the LR residual ends at the model's noise SD."""
    model = LRModel.parse(f"gauss:1.5,noise:{noise}")
    lr = simulate_lr(sample, (2, 2, 2), model, seed=2)
    cubic = upsample_interpolate(lr, (2, 2, 2), "cubic")
    before = lr_residual(cubic, lr, (2, 2, 2), model)
    assert before["rms_hu"] > noise  # there is something to correct
    out, info = enforce_lr_consistency(cubic, lr, (2, 2, 2), model)
    after = lr_residual(out, lr, (2, 2, 2), model)
    assert info["stopped_by"].startswith("discrepancy")
    assert after["noise_hu"] == noise
    assert abs(after["rms_hu"] - noise) < 0.03 * noise, after  # clipping moves it a hair


def test_a_result_already_within_the_noise_is_left_alone(sample):
    lr = simulate_lr(sample, (2, 2, 2))
    model = LRModel.parse("gauss:1,noise:1000")
    cubic = upsample_interpolate(lr, (2, 2, 2), "cubic")
    out, info = enforce_lr_consistency(cubic, lr, (2, 2, 2), model)
    assert info["lambda"] is None
    np.testing.assert_array_equal(out.array, np.clip(cubic.array, *hu_bounds(lr)))


def test_output_stays_in_the_widened_input_range_even_with_a_wrong_model(sample):
    """A model far too wide (gauss:3 for a box LR) must not ring beyond the stated margin."""
    lr = simulate_lr(sample, (2, 2, 2), LRModel.parse("box"))
    out, _ = enforce_lr_consistency(upsample_interpolate(lr, (2, 2, 2), "cubic"), lr, (2, 2, 2),
                                    LRModel.parse("gauss:3,noise:0"))
    low, high = float(lr.array.min()), float(lr.array.max())
    margin = HU_MARGIN * (high - low)
    assert out.array.min() >= low - margin - 1e-3 and out.array.max() <= high + margin + 1e-3


@pytest.mark.parametrize("given, mismatch", [("gauss:2.5,noise:0", True), ("box,noise:0", False)])
def test_a_model_that_cannot_explain_the_input_is_not_applied(sample, given, mismatch):
    """Block-mean LR: a far too wide blur explains under half of the residual even at the
    floor, so the step leaves the result alone (it would ring); the right model is applied."""
    lr = simulate_lr(sample, (2, 2, 2), LRModel.parse("box"))
    lanczos = upsample_interpolate(lr, (2, 2, 2), "lanczos")
    out, info = enforce_lr_consistency(lanczos, lr, (2, 2, 2), LRModel.parse(given))
    assert info["stopped_by"].startswith("model mismatch") == mismatch, info
    if mismatch:
        np.testing.assert_array_equal(out.array, np.clip(lanczos.array, *hu_bounds(lr)))
    else:
        assert evaluate(out, sample)["psnr"] > evaluate(lanczos, sample)["psnr"]


def test_residual_is_zero_for_the_truth_and_grids_must_pair(sample):
    lr = simulate_lr(sample, (2, 2, 2))
    assert lr_residual(sample, lr, (2, 2, 2), PAPER)["rms_hu"] < 1e-3
    with pytest.raises(ValueError, match="HR grid"):
        lr_residual(sample, lr, (4, 4, 4), PAPER)


def test_simulate_lr_and_the_consistency_step_share_one_operator(sample, tmp_path):
    """`ctsr simulate-lr --lr-model M` makes an LR that the truth explains exactly under M (the
    step's forward model), and not under another model."""
    from ctsr.cli import main
    from ctsr.io import read_volume, write_volume

    hr_path, lr_path = tmp_path / "hr.nrrd", tmp_path / "lr.nrrd"
    write_volume(sample, hr_path)
    assert main(["simulate-lr", str(hr_path), str(lr_path), "--scale", "1x1x4", "--lr-model", "z=slab:4mm",
                 "--quiet"]) == 0
    lr = read_volume(lr_path)
    model = LRModel.parse("z=slab:4mm,noise:0")
    assert lr_residual(sample, lr, (1, 1, 4), model)["rms_hu"] < 0.01
    np.testing.assert_allclose(LROperator.for_volume(model, (1, 1, 4), sample)(sample.array), lr.array, atol=1e-3)
    assert lr_residual(sample, lr, (1, 1, 4), LRModel.parse("gauss:1.5"))["rms_hu"] > 1.0
    out, _ = enforce_lr_consistency(sample, lr, (1, 1, 4), model)  # the truth needs no correction
    np.testing.assert_allclose(out.array, sample.array, atol=0.05)


def test_consistency_keeps_detail_beyond_the_lr_resolution(sample):
    """Detail the LR model cannot see (a checkerboard at the HR Nyquist rate, which the block
    mean averages out) survives the step."""
    scale = (2, 2, 2)
    model = LRModel.parse("box,noise:0")
    lr = simulate_lr(sample, scale, model)
    cubic = upsample_interpolate(lr, scale, "cubic")
    k, j, i = np.indices(cubic.array.shape)
    checker = 50.0 * (-1.0) ** (i + j + k)
    detailed = cubic.with_array(cubic.array + checker)
    out, _ = enforce_lr_consistency(detailed, lr, scale, model)
    plain, _ = enforce_lr_consistency(cubic, lr, scale, model)
    kept = np.mean((out.array - plain.array) * checker) / 2500.0
    assert kept > 0.9
