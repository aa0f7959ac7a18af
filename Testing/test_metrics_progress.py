"""Metrics against independent computations, and the progress contract."""

import io
import json

import numpy as np
import pytest

from ctsr.errors import Cancelled, UserError
from ctsr.metrics import evaluate, normalize, psnr, ssim3, ssim_along_axis
from ctsr.progress import CallbackProgress, JsonLinesProgress
from ctsr.volume import Volume


def test_psnr_of_a_known_error():
    a = np.zeros((4, 4, 4))
    assert psnr(a, a + 0.1) == pytest.approx(20.0)
    assert psnr(a, a) == float("inf")


def test_normalize_clips_to_the_window():
    np.testing.assert_allclose(normalize(np.array([-2000.0, -1024.0, 1023.5, 3071.0, 5000.0])),
                               [0.0, 0.0, 0.5, 1.0, 1.0])


def test_ssim_matches_scikit_image_slice_by_slice(sample):
    """Our vectorized 3-axis SSIM equals skimage's 2D SSIM averaged over slices."""
    metrics = pytest.importorskip("skimage.metrics", reason="scikit-image is in the test extra")
    truth = normalize(sample.array[:40, :36, :32])
    rng = np.random.default_rng(0)
    noisy = np.clip(truth + rng.normal(0, 0.02, truth.shape), 0, 1)
    for axis in range(3):
        reference = np.mean([metrics.structural_similarity(
            np.take(noisy, n, axis), np.take(truth, n, axis), data_range=1.0, gaussian_weights=True,
            sigma=1.5, use_sample_covariance=False) for n in range(truth.shape[axis])])
        assert ssim_along_axis(noisy, truth, axis) == pytest.approx(reference, abs=1e-6)
    assert ssim3(truth, truth) == pytest.approx(1.0)


def test_evaluate_refuses_grids_that_do_not_match(sample):
    assert evaluate(sample, sample)["ssim"] == pytest.approx(1.0)
    with pytest.raises(UserError, match="different sizes"):
        evaluate(sample, Volume(sample.array[1:], sample.ijk_to_ras))
    shifted = sample.ijk_to_ras.copy()
    shifted[0, 3] += 0.5
    with pytest.raises(UserError, match="different spacing, origin or direction"):
        evaluate(sample, Volume(sample.array, shifted))


def test_json_lines_are_valid_and_fractions_never_decrease():
    stream = io.StringIO()
    progress = JsonLinesProgress(stream)
    stage = progress.span(0.5, 1.0)
    progress.update("a", 0.2, "first")
    stage.update("b", 0.5, "half of the second half", iteration=3)
    stage.update("b", 0.1, "a stage may not move the bar back")
    progress.log("hello")
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["progress"] * 3 + ["log"]
    assert [e["fraction"] for e in events[:3]] == [0.2, 0.75, 0.75]
    assert events[1]["iteration"] == 3 and events[1]["stage"] == "b"
    assert all({"stage", "fraction", "message", "elapsed", "eta"} <= set(e) for e in events[:3])


def test_cancel_stops_the_next_update():
    seen = []
    progress = CallbackProgress(seen.append)
    progress.span(0, 0.5).cancel()
    with pytest.raises(Cancelled):
        progress.update("x", 0.1)
    assert seen == []


def test_stage_clock_charges_each_interval_to_the_stage_of_the_event_that_opened_it():
    from ctsr.progress import StageClock

    readings = iter([0.0, 1.0, 1.5, 4.0, 6.0, 7.0])
    clock = StageClock(now=lambda: next(readings))  # t = 0
    clock({"stage": "upsample", "fraction": 0})  # t = 1: the second before it belongs to no stage
    clock({"stage": "upsample", "fraction": 0.5})  # same stage: the clock is not read
    clock({"message": "a log line"})             # no stage: not read either
    clock({"stage": "nabgs"})                    # t = 1.5: upsample 0.5 s
    clock({"stage": "consistency"})              # t = 4: nabgs 2.5 s
    clock({"stage": "nabgs"})                    # t = 6: consistency 2 s
    assert clock.total() == 7.0                  # t = 7: nabgs 1 s more
    assert clock.seconds == {"upsample": 0.5, "nabgs": 3.5, "consistency": 2.0}
