"""Properties of the projection degradation operators: ``A`` (the LR model's detector
binning; the block mean as the paper's special case) and its pseudo-inverse."""

import pytest
import torch
import torch.nn.functional as F

from ctsr.lrmodel import LRModel, Profile
from ctsr.prior.operators import (DetectorBinning, bicubic, from_model_range, minmax_bounds, normalize_image,
                                  project_to_range, to_model_range)

SCALES = [(2, 2), (4, 4), (8, 8), (1, 4), (4, 1), (3, 2)]
OPERATORS = [DetectorBinning.average(s) for s in SCALES] + [
    DetectorBinning(Profile("gauss", 1.0), Profile("gauss", 0.5), (2, 2)),
    DetectorBinning(Profile("slab", 5.0), Profile("box"), (4, 1), (1.25, 0.7)),
    DetectorBinning.from_lr_model(LRModel.parse("xy=gauss:1.5,z=slab:3mm"), (4, 2), (1.0, 0.8)),
]


def _hr_and_lr(scale, count, side, seed):
    """A generator, ``count`` random HR images ``side * scale`` and LR images ``side`` (float64)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(count, 1, side * scale[0], side * scale[1], generator=g, dtype=torch.float64)
    y = torch.randn(count, 1, side, side, generator=g, dtype=torch.float64)
    return g, x, y


@pytest.mark.parametrize("scale", SCALES)
def test_average_binning_is_average_pooling_and_its_pinv_replicates(scale):
    _, x, y = _hr_and_lr(scale, 3, 8, seed=1)
    sy, sx = scale
    a = DetectorBinning.average(scale)
    assert torch.allclose(a(x), F.avg_pool2d(x, scale, scale))
    assert torch.allclose(a.pinv(y), y.repeat_interleave(sy, -2).repeat_interleave(sx, -1))


@pytest.mark.parametrize("operator", OPERATORS, ids=repr)
def test_pinv_is_right_inverse_and_a_pinv_a_is_an_orthogonal_projection(operator):
    g, x, y = _hr_and_lr(operator.scale, 3, 8, seed=1)
    assert torch.allclose(operator(operator.pinv(y)), y, atol=1e-8)
    p = lambda v: operator.pinv(operator(v))
    assert torch.allclose(p(p(x)), p(x), atol=1e-8)
    z = torch.randn(x.shape, generator=g, dtype=torch.float64)
    assert torch.allclose((p(x) * z).sum(), (x * p(z)).sum())


@pytest.mark.parametrize("operator", OPERATORS, ids=repr)
def test_range_projection_matches_target_and_keeps_null_space(operator):
    _, x, target = _hr_and_lr(operator.scale, 2, 4, seed=2)
    out = project_to_range(x, target, operator)
    assert torch.allclose(operator(out), target, atol=1e-8)
    null = lambda v: v - operator.pinv(operator(v))
    assert torch.allclose(null(out), null(x), atol=1e-8)
    half = project_to_range(x, target, operator, weight=0.5)
    assert torch.allclose(operator(half), (operator(x) + target) / 2, atol=1e-8)


def test_normalization_round_trip_and_range():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 1, 9, 7, generator=g) * torch.tensor([1.0, 10.0, 100.0, 0.0]).view(4, 1, 1, 1)
    low, high = minmax_bounds(x)
    n = to_model_range(x, low, high)
    assert torch.allclose(from_model_range(n, low, high), x, atol=1e-5)
    m = normalize_image(x)
    assert torch.allclose(m[:3].amin((1, 2, 3)), torch.full((3,), -1.0))
    assert torch.allclose(m[:3].amax((1, 2, 3)), torch.full((3,), 1.0))
    assert torch.all(m[3] == -1)  # a flat image does not divide by zero


def test_bicubic_reproduces_constant_and_shape():
    y = torch.full((1, 1, 5, 6), 3.0)
    out = bicubic(y, (4, 2))
    assert out.shape == (1, 1, 20, 12)
    assert torch.allclose(out, torch.full_like(out, 3.0))
