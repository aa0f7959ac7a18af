"""The Triton kernels against the torch reference (the oracle): forward values and gradients of
means, log-scales, quaternions and densities to 1e-4 relative, cone and parallel beam, signed
densities, a few hundred Gaussians, 8 x 8 = 64 rays per tile.

Without CUDA the kernels run in Triton's CPU interpreter: TRITON_INTERPRET=1 is set only while
this module imports Triton and while its tests run (a module-scoped fixture), then restored; the
interpreted kernel modules are dropped from sys.modules afterwards. With CUDA the same tests run
the compiled kernels on the GPU. Skipped, with the reason, only where Triton cannot import.
"""

import contextlib
import importlib
import os
import sys

import pytest
import torch
import torch.nn.functional as F

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
KERNEL_MODULES = ("ctsr.gaussians.kernels.render_triton", "ctsr.gaussians.kernels.voxelize_triton")
RTOL = 1e-4


@contextlib.contextmanager
def interpreter_setting():
    """TRITON_INTERPRET=1 on CPU while Triton decorates kernels (its own standard-library
    kernels at ``import triton``, ours at their import), restored afterwards."""
    saved = os.environ.get("TRITON_INTERPRET")
    if DEVICE == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = saved


TRITON_WAS_IMPORTED = "triton" in sys.modules
with interpreter_setting():
    try:
        import triton.language  # noqa: F401
        SKIP = None
    except Exception as error:  # ImportError, or a broken install failing at import
        SKIP = f"Triton does not import here ({error}); install it with pip install --no-deps triton"
if SKIP is None and DEVICE == "cpu" and TRITON_WAS_IMPORTED and os.environ.get("TRITON_INTERPRET") != "1":
    SKIP = "Triton was imported outside its interpreter before this module; run it on its own"
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")

from ctsr.gaussians import SignedGaussians, render, voxelize  # noqa: E402
from ctsr.geometry import ConeGeometry  # noqa: E402


@pytest.fixture(scope="module")
def kernels():
    """The two kernel modules, interpreted on CPU, compiled on CUDA; the setting holds while
    this module's tests run (Triton reads it again at launch) and the modules are dropped after."""
    with interpreter_setting():
        for name in KERNEL_MODULES:  # decorate the kernels under the setting above
            sys.modules.pop(name, None)
        yield [importlib.import_module(name) for name in KERNEL_MODULES]
    for name in KERNEL_MODULES:
        sys.modules.pop(name, None)


def random_gaussians(n, box, sigma, seed):
    """Anisotropic, rotated Gaussians with signed densities (both PReLU branches)."""
    gen = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=gen) * 2 - 1) * torch.tensor(box)
    density = torch.randn(n, generator=gen) * 0.05
    g = SignedGaussians.isotropic(means, sigma, density, gamma=0.2)
    g.log_scales = g.log_scales + 0.3 * torch.randn(n, 3, generator=gen)
    g.quats = F.normalize(torch.randn(n, 4, generator=gen), dim=-1)
    params = [p.to(DEVICE).requires_grad_(True) for p in g.parameters()]
    assert (density < 0).any() and (density > 0).any()
    return SignedGaussians(*params)


def assert_matches(out, ref, name):
    scale = ref.abs().max()
    assert scale > 0, f"{name}: the reference is all zero, the case tests nothing"
    err = (out - ref).abs().max() / scale
    assert err < RTOL, f"{name}: max error {err:.2e} of the reference's max magnitude"


def check_against_reference(out, reference, gaussians, seed):
    """``out``: the float32 kernel result for ``gaussians``; ``reference(g)``: the torch
    reference, evaluated in float64 on a copy of the parameters (the exact value the float32
    kernel approximates: sums with cancellation, like d/d gamma_raw, are compared to it)."""
    exact = SignedGaussians(*[p.detach().double().requires_grad_(True) for p in gaussians.parameters()])
    ref = reference(exact)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert_matches(out.double(), ref, "values")
    weights = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed)).to(DEVICE)
    names = ["means", "log_scales", "quats", "raw_density", "gamma_raw"]
    grads_ref = torch.autograd.grad((ref * weights.double()).sum(), exact.parameters())
    grads_out = torch.autograd.grad((out * weights).sum(), gaussians.parameters())
    for name, g_out, g_ref in zip(names, grads_out, grads_ref):
        assert_matches(g_out.double(), g_ref, f"d/d {name}")


def small_geometry(mode, angles):
    return ConeGeometry(DSO=5.0, DSD=7.5, nDetector=(16, 24), dDetector=(0.12, 0.12),
                        nVoxel=(16, 24, 24), dVoxel=(1 / 12,) * 3, angles=angles, mode=mode)


@pytest.mark.parametrize("mode, views", [("cone", [0, 1]), ("parallel", [1])])
def test_render_matches_reference(kernels, mode, views):
    render_module, _ = kernels
    geometry = small_geometry(mode, (0.3, 2.0))
    gaussians = random_gaussians(200, (0.8, 0.8, 0.5), 0.06, seed=len(views))
    out = render_module.render_triton(gaussians, geometry, views, tile=(8, 8))
    check_against_reference(out, lambda g: render(g, geometry, views), gaussians, seed=3)


def test_voxelize_matches_reference_on_a_region(kernels):
    _, voxelize_module = kernels
    geometry = ConeGeometry(DSO=5.0, DSD=7.5, nDetector=(16, 16), dDetector=(0.2, 0.2),
                            nVoxel=(12, 16, 16), dVoxel=(0.125,) * 3, angles=(0.0,),
                            offOrigin=(0.05, -0.1, 0.02))
    gaussians = random_gaussians(150, (1.0, 1.0, 0.75), 0.1, seed=5)
    region = (2, 3, 1, 11, 14, 12)  # partial blocks on every axis, Gaussians clipped at its faces
    out = voxelize_module.voxelize_triton(gaussians, geometry, region, block=4)
    check_against_reference(out, lambda g: voxelize(g, geometry, region), gaussians, seed=6)


def test_tile_size_does_not_change_the_render(kernels):
    """Different binnings sum the same pairs in the same per-pixel order: identical bits."""
    render_module, _ = kernels
    geometry = small_geometry("cone", (0.7,))
    gaussians = random_gaussians(60, (0.8, 0.8, 0.5), 0.06, seed=7)
    with torch.no_grad():
        a = render_module.render_triton(gaussians, geometry, tile=(8, 8))
        b = render_module.render_triton(gaussians, geometry, tile=(4, 16))
    assert torch.equal(a, b)


def test_dispatch_runs_the_kernels_when_triton_is_chosen(kernels, monkeypatch):
    from ctsr.gaussians import kernels as backends
    monkeypatch.setenv(backends.BACKEND_ENV, "triton")
    geometry = small_geometry("cone", (1.1,))
    gaussians = random_gaussians(30, (0.8, 0.8, 0.5), 0.06, seed=8)
    with torch.no_grad():
        out = backends.render(gaussians, geometry)
        expected = kernels[0].render_triton(gaussians, geometry)
        volume = backends.voxelize(gaussians, geometry, region=(4, 4, 4, 12, 12, 12))
    assert torch.equal(out, expected)
    assert_matches(volume, voxelize(gaussians, geometry, (4, 4, 4, 12, 12, 12)), "voxelized")
