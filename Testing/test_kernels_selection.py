"""Backend selection (auto / forced by argument or CTSR_RENDER_BACKEND), the dispatching
render/voxelize, and the tile binning by a torch sort against a brute-force listing."""

import itertools

import pytest
import torch

from ctsr.errors import UserError
from ctsr.gaussians import SignedGaussians, render, voxelize
from ctsr.gaussians import kernels
from ctsr.gaussians.kernels import BACKEND_ENV, numba_available, select_backend, triton_available
from ctsr.gaussians.kernels.binning import bin_boxes
from ctsr.geometry import ConeGeometry


@pytest.fixture(autouse=True)
def no_forced_backend(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def test_auto_picks_numba_on_cpu_and_triton_on_cuda():
    assert select_backend("cpu") == ("numba" if numba_available() else "torch")
    assert select_backend("cuda") == ("triton" if triton_available() else "torch")
    assert select_backend(torch.device("cuda", 0), "auto") == select_backend("cuda")


def test_environment_variable_and_argument_force_a_backend(monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, "torch")
    assert select_backend("cuda") == "torch"
    assert select_backend("cuda", None) == "torch"
    assert select_backend("cpu", "torch") == "torch"
    monkeypatch.setenv(BACKEND_ENV, "Triton ")
    if triton_available():
        assert select_backend("cuda") == "triton"
    with pytest.raises(UserError, match="needs a CUDA device|not installed"):
        select_backend("cpu")  # triton forced on CPU outside the interpreter
    assert select_backend("cpu", "torch") == "torch"  # the argument wins over the variable
    monkeypatch.setenv(BACKEND_ENV, "numba")
    if numba_available():
        assert select_backend("cpu") == "numba"
    with pytest.raises(UserError, match="runs on the CPU|not installed"):
        select_backend("cuda")


def test_bad_names_are_user_errors(monkeypatch):
    with pytest.raises(UserError, match="one of auto, torch, numba, triton"):
        select_backend("cpu", "cuda")
    monkeypatch.setenv(BACKEND_ENV, "fast")
    with pytest.raises(UserError, match=BACKEND_ENV):
        select_backend("cpu")


def test_triton_on_cpu_is_allowed_in_the_interpreter_only(monkeypatch):
    if not triton_available():
        pytest.skip("Triton does not import here")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert select_backend("cpu", "triton") == "triton"


def test_dispatch_on_the_torch_backend_is_the_reference():
    geometry = ConeGeometry(DSO=5.0, DSD=7.5, nDetector=(16, 16), dDetector=(0.15, 0.15),
                            nVoxel=(8, 8, 8), dVoxel=(0.2,) * 3, angles=(0.0, 1.0))
    gen = torch.Generator().manual_seed(0)
    g = SignedGaussians.isotropic(torch.rand(20, 3, generator=gen) - 0.5, 0.1,
                                  torch.randn(20, generator=gen) * 0.05)
    assert torch.equal(kernels.render(g, geometry, [1], backend="torch"), render(g, geometry, [1]))
    assert torch.equal(kernels.voxelize(g, geometry, backend="torch"), voxelize(g, geometry))


def brute_force_bins(lo, hi, tile, grid):
    tiles = [range((n + t - 1) // t) for n, t in zip(grid, tile)]
    bins = []
    for cell in itertools.product(*tiles):
        t_lo = [c * t for c, t in zip(cell, tile)]
        t_hi = [min((c + 1) * t, n) - 1 for c, t, n in zip(cell, tile, grid)]
        bins.append([p for p in range(len(lo))
                     if all(lo[p][a] <= t_hi[a] and hi[p][a] >= t_lo[a] and hi[p][a] >= lo[p][a]
                            for a in range(len(grid)))])
    return bins


@pytest.mark.parametrize("tile, grid", [((4, 8), (13, 21)), ((1, 3, 2), (3, 7, 5))])
def test_binning_lists_every_box_tile_overlap_in_index_order(tile, grid):
    gen = torch.Generator().manual_seed(len(grid))
    n = 60
    grid_t = torch.tensor(grid)
    lo = (torch.rand(n, len(grid), generator=gen) * grid_t).long()
    hi = lo + (torch.rand(n, len(grid), generator=gen) * grid_t / 2).long() - 1  # some empty
    hi = torch.minimum(hi, grid_t - 1)
    items, offsets = bin_boxes(lo, hi, tile, grid)
    expected = brute_force_bins(lo.tolist(), hi.tolist(), tile, grid)
    assert offsets.dtype == items.dtype == torch.int32
    assert len(offsets) == len(expected) + 1 and offsets[-1] == len(items)
    got = [items[offsets[t]:offsets[t + 1]].tolist() for t in range(len(expected))]
    assert got == expected
    assert any(len(b) > 1 for b in expected) and any((hi < lo).any(-1))
