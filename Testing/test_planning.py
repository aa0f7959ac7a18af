"""Memory planning: one piece when it fits, blocks when it does not, a clear refusal below that."""

import pytest

from ctsr.errors import UserError
from ctsr.planning import SAFETY, estimate_bytes, plan_job

GiB = 1 << 30


def test_estimate_grows_with_voxels_views_and_gaussians():
    base = estimate_bytes((64, 64, 64), (2, 2, 2), 48, 20_000)
    assert estimate_bytes((64, 64, 64), (4, 4, 4), 48, 20_000) > base
    assert estimate_bytes((64, 64, 64), (2, 2, 2), 100, 20_000) > base
    assert estimate_bytes((64, 64, 64), (2, 2, 2), 48, 100_000) > base


def test_small_job_runs_in_one_piece():
    plan = plan_job((64, 64, 64), (2, 2, 2), 48, 20_000, available=16 * GiB)
    assert plan.block_shape_kji is None and plan.estimate < SAFETY * 16 * GiB
    assert "estimated peak memory" in plan.describe()


@pytest.mark.parametrize("available_gib", [24, 12])
def test_a_512x512x300_input_at_x2_is_blocked_to_fit(available_gib):
    plan = plan_job((300, 512, 512), (2, 2, 2), 72, 50_000, available=available_gib * GiB)
    assert plan.block_shape_kji is not None
    assert all(b <= n for b, n in zip(plan.block_shape_kji, (300, 512, 512)))
    assert plan.estimate <= SAFETY * available_gib * GiB
    assert "blocks" in plan.describe()


def test_refused_with_the_memory_it_needs_when_nothing_fits():
    with pytest.raises(UserError, match=r"needs about [\d.]+ GiB of memory even in blocks, but only 2.0 GiB"):
        plan_job((300, 512, 512), (2, 2, 2), 72, 50_000, available=2 * GiB)


def test_an_absurd_output_is_refused_before_any_work(sample):
    """x16 of a 128 x 64 x 64 input is 2.1e9 output voxels: one sentence, no allocation."""
    import numpy as np

    from ctsr.upsampling import upsample
    from ctsr.volume import Volume

    lr = Volume(np.concatenate([sample.array, sample.array]), sample.ijk_to_ras)
    with pytest.raises(UserError, match=r"the output would have 2,147,483,648 voxels .* use an ROI"):
        upsample(lr, 16, "cubic")
