"""The numba CPU kernels against the torch reference (the oracle): forward values and gradients
of every parameter, cone and parallel beam, anisotropic rotated Gaussians with signed densities,
some partly or wholly outside the detector or the voxel region; float64 to 1e-10, float32 to
1e-5; torch's gradcheck on the kernels' own backward; the same bits on 1 and 2 threads."""

import pytest
import torch
import torch.nn.functional as F

from ctsr.gaussians import SignedGaussians, render, voxelize
from ctsr.gaussians.footprint import bounding_radius
from ctsr.gaussians.kernels import numba_available
from ctsr.geometry import ConeGeometry

pytestmark = pytest.mark.skipif(not numba_available(), reason="numba does not import here")

if numba_available():
    from ctsr.gaussians.kernels.render_numba import render_numba
    from ctsr.gaussians.kernels.voxelize_numba import voxelize_numba


def geometry(mode):
    return ConeGeometry(DSO=3.0, DSD=4.5, nDetector=(18, 22), dDetector=(0.12, 0.1),
                        nVoxel=(12, 10, 14), dVoxel=(0.15, 0.18, 0.14), offOrigin=(0.05, -0.1, 0.0),
                        angles=(0.0, 0.7, 2.0, 3.1), mode=mode)


def random_gaussians(n, seed, dtype=torch.float64, reach=1.3):
    """Anisotropic, rotated Gaussians with signed densities, some beyond the grid's edge."""
    gen = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=gen, dtype=dtype) * 2 - 1) * reach
    density = torch.randn(n, generator=gen, dtype=dtype) * 0.05
    g = SignedGaussians.isotropic(means, 0.12, density, gamma=0.2)
    g.log_scales = g.log_scales + 0.4 * torch.randn(n, 3, generator=gen, dtype=dtype)
    g.quats = F.normalize(torch.randn(n, 4, generator=gen, dtype=dtype), dim=-1)
    assert (density < 0).any() and (density > 0).any()
    return SignedGaussians(*[p.requires_grad_(True) for p in g.parameters()])


def value_and_gradients(function, g, weights):
    for p in g.parameters():
        p.grad = None
    out = function(g)
    (out * weights).sum().backward()
    return out.detach(), [p.grad.clone() for p in g.parameters()]


def assert_close(got, want, rtol):
    scale = want.abs().max()
    assert scale > 0
    assert (got - want).abs().max() <= rtol * scale, float((got - want).abs().max() / scale)


CASES = {
    "render": (lambda g, geo: render_numba(g, geo, [0, 2, 3]), lambda g, geo: render(g, geo, [0, 2, 3])),
    "voxelize": (lambda g, geo: voxelize_numba(g, geo), lambda g, geo: voxelize(g, geo)),
    "voxelize region": (lambda g, geo: voxelize_numba(g, geo, (2, 1, 3, 9, 10, 8)),
                        lambda g, geo: voxelize(g, geo, (2, 1, 3, 9, 10, 8))),
}


@pytest.mark.parametrize("mode", ["cone", "parallel"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_kernels_match_the_reference(mode, case, dtype, rtol):
    kernel, reference = CASES[case]
    geo = geometry(mode)
    g = random_gaussians(150, seed=3, dtype=dtype)
    with torch.no_grad():
        shape = reference(g, geo).shape
    weights = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    want, want_grads = value_and_gradients(lambda x: reference(x, geo), g, weights)
    got, got_grads = value_and_gradients(lambda x: kernel(x, geo), g, weights)
    assert got.dtype == dtype and got.shape == want.shape
    assert_close(got, want, rtol)
    for got_grad, want_grad in zip(got_grads[:4], want_grads[:4]):  # means, scales, quats, density
        assert_close(got_grad, want_grad, 10 * rtol)


@pytest.mark.parametrize("mode", ["cone", "parallel"])
def test_backward_passes_gradcheck(mode):
    geo = geometry(mode)
    g = random_gaussians(4, seed=5, reach=0.4)
    inputs = (g.means, g.precisions().detach().requires_grad_(True), g.density().detach().requires_grad_(True))
    from ctsr.gaussians.kernels.numba_function import KernelFunction
    from ctsr.gaussians.kernels.render_numba import _Launch as RenderLaunch
    from ctsr.gaussians.kernels.voxelize_numba import _Launch as VoxelLaunch
    radius = bounding_radius(g)
    render_launch = RenderLaunch(g.means.detach(), radius, geo, [1, 2])
    voxel_launch = VoxelLaunch(g.means.detach(), radius, geo, (0, 0, 0, *geo.nVoxel))
    # precisions perturbed symmetrically: the kernels read the upper triangle only
    symmetric = lambda f, launch: (lambda m, p, d: f(m, (p + p.transpose(1, 2)) / 2, d, launch))
    assert torch.autograd.gradcheck(symmetric(KernelFunction.apply, render_launch), inputs, atol=1e-7)
    assert torch.autograd.gradcheck(symmetric(KernelFunction.apply, voxel_launch), inputs, atol=1e-7)


def test_results_do_not_depend_on_the_thread_count():
    geo = geometry("cone")
    g = random_gaussians(300, seed=7, dtype=torch.float32)
    weights = torch.randn(2, *geo.nDetector, generator=torch.Generator().manual_seed(2))
    saved = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            runs.append(value_and_gradients(lambda x: render_numba(x, geo, [1, 3]), g, weights)
                        + value_and_gradients(lambda x: voxelize_numba(x, geo), g, torch.ones(geo.nVoxel)))
    finally:
        torch.set_num_threads(saved)
    (img1, grads1, vol1, vgrads1), (img2, grads2, vol2, vgrads2) = runs
    assert torch.equal(img1, img2) and torch.equal(vol1, vol2)
    assert all(torch.equal(a, b) for a, b in zip(grads1 + vgrads1, grads2 + vgrads2))


def test_gaussians_off_the_detector_and_grid_add_nothing():
    geo = geometry("cone")
    far = SignedGaussians.isotropic(torch.tensor([[9.0, 9.0, 9.0], [0.0, 0.0, 8.0]]), 0.1,
                                    torch.tensor([1.0, -1.0]))
    assert torch.count_nonzero(render_numba(far, geo)) == 0
    assert torch.count_nonzero(voxelize_numba(far, geo)) == 0


def test_cuda_tensors_are_refused():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    g = random_gaussians(3, seed=0, dtype=torch.float32)
    g = SignedGaussians(*[p.detach().cuda() for p in g.parameters()])
    with pytest.raises(ValueError, match="CPU"):
        render_numba(g, geometry("cone"))
