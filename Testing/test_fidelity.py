"""The final data-consistency step and the LR residual reported with every result."""

import numpy as np
import pytest

from ctsr.baselines import upsample_interpolate
from ctsr.degrade import degrade_array, simulate_lr
from ctsr.fidelity import enforce_lr_consistency, lr_residual
from ctsr.metrics import evaluate


@pytest.mark.parametrize("scale", [(2, 2, 2), (1, 1, 4)])
def test_consistency_makes_the_degraded_output_reproduce_the_input(sample, scale):
    lr = simulate_lr(sample, scale)
    cubic = upsample_interpolate(lr, scale, "cubic")
    before = lr_residual(cubic, lr, scale)
    consistent = enforce_lr_consistency(cubic, lr, scale, iterations=16)
    after = lr_residual(consistent, lr, scale)
    assert after["rms_hu"] < 0.1 * before["rms_hu"]
    assert np.percentile(np.abs(degrade_array(consistent.array, scale) - lr.array), 99) < 10.0  # HU
    # On data made by the same operator it moves towards the truth, not away from it.
    assert evaluate(consistent, sample)["psnr"] > evaluate(cubic, sample)["psnr"]


def test_residual_is_zero_for_the_truth_and_grids_must_pair(sample):
    lr = simulate_lr(sample, (2, 2, 2))
    assert lr_residual(sample, lr, (2, 2, 2))["rms_hu"] < 1e-3
    with pytest.raises(ValueError, match="HR grid"):
        lr_residual(sample, lr, (4, 4, 4))


def test_consistency_keeps_detail_beyond_the_lr_resolution(sample):
    """Detail the LR operator cannot see (a checkerboard at the HR Nyquist rate) survives."""
    scale = (2, 2, 2)
    lr = simulate_lr(sample, scale)
    cubic = upsample_interpolate(lr, scale, "cubic")
    k, j, i = np.indices(cubic.array.shape)
    checker = 50.0 * (-1.0) ** (i + j + k)
    detailed = cubic.with_array(cubic.array + checker)
    out = enforce_lr_consistency(detailed, lr, scale, iterations=8)
    kept = np.mean((out.array - enforce_lr_consistency(cubic, lr, scale, iterations=8).array) * checker) / 2500.0
    assert kept > 0.9
