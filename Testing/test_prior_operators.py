"""Properties of the projection degradation operators (A = block mean, A_pinv = replicate)."""

import pytest
import torch

from ctsr.prior.operators import (bicubic, from_model_range, minmax_bounds, normalize_image, pool,
                                  project_to_range, to_model_range, unpool)

SCALES = [(2, 2), (4, 4), (8, 8), (1, 4), (4, 1), (3, 2)]


@pytest.mark.parametrize("scale", SCALES)
def test_pinv_is_right_inverse_and_adjoint_up_to_block_size(scale):
    g = torch.Generator().manual_seed(1)
    sy, sx = scale
    x = torch.randn(3, 1, 8 * sy, 8 * sx, generator=g, dtype=torch.float64)
    y = torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64)
    assert torch.allclose(pool(unpool(y, scale), scale), y)
    # A^T = A_pinv / (sy * sx): <A x, y> == <x, A^T y>
    assert torch.allclose((pool(x, scale) * y).sum(), (x * unpool(y, scale)).sum() / (sy * sx))
    # A_pinv A is an orthogonal projection: idempotent and symmetric
    p = lambda v: unpool(pool(v, scale), scale)
    assert torch.allclose(p(p(x)), p(x))
    z = torch.randn(x.shape, generator=g, dtype=torch.float64)
    assert torch.allclose((p(x) * z).sum(), (x * p(z)).sum())


@pytest.mark.parametrize("scale", SCALES)
def test_range_projection_matches_target_and_keeps_null_space(scale):
    g = torch.Generator().manual_seed(2)
    sy, sx = scale
    x = torch.randn(2, 1, 4 * sy, 4 * sx, generator=g, dtype=torch.float64)
    target = torch.randn(2, 1, 4, 4, generator=g, dtype=torch.float64)
    out = project_to_range(x, target, scale)
    assert torch.allclose(pool(out, scale), target)
    null = lambda v: v - unpool(pool(v, scale), scale)
    assert torch.allclose(null(out), null(x))
    half = project_to_range(x, target, scale, weight=0.5)
    assert torch.allclose(pool(half, scale), (pool(x, scale) + target) / 2)


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
