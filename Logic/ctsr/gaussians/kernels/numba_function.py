"""What the numba kernels share: the thread count, the float64 hand-over, and one autograd
``Function`` that runs a launch's forward and backward kernels."""

from __future__ import annotations

import numba
import numpy as np
import torch

from .packing import pack_precisions, unpack_gradients


def set_threads() -> None:
    """Run the kernels on as many threads as torch uses (``torch.set_num_threads``), within
    numba's pool (launches read it back with ``numba.get_num_threads()``)."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def as_float64(tensor: torch.Tensor) -> np.ndarray:
    """A contiguous float64 NumPy view (or copy) of a CPU tensor, detached."""
    return np.ascontiguousarray(tensor.detach().to(torch.float64).numpy())


class KernelFunction(torch.autograd.Function):
    """``apply(means [N, 3], precision [N, 3, 3], density [N], launch)``: the launch's forward
    kernel on float64 copies of the Gaussians, its output in the means' dtype; the backward
    kernel fills one gradient row [10] per Gaussian (:mod:`.packing`). ``launch`` has
    ``run_forward(means, prec6, density) -> ndarray`` and
    ``run_backward(means, prec6, density, grad_out, grad)``."""

    @staticmethod
    def forward(ctx, means, precision, density, launch):
        arrays = (as_float64(means), as_float64(pack_precisions(precision)), as_float64(density))
        set_threads()
        out = launch.run_forward(*arrays)
        ctx.arrays, ctx.launch, ctx.dtype = arrays, launch, means.dtype
        return torch.from_numpy(out).to(means.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        set_threads()
        grad = np.zeros((ctx.arrays[0].shape[0], 10))
        ctx.launch.run_backward(*ctx.arrays, as_float64(grad_out), grad)
        return unpack_gradients(torch.from_numpy(grad).to(ctx.dtype)) + (None,)
