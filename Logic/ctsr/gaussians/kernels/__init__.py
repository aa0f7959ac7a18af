"""Kernels for the signed-Gaussian renderer and voxelizer (Triton on GPU, numba on CPU), and
the backend choice.

Three backends compute the same thing, with the same exact line-integral maths and the same
footprint boxes, so the same Gaussian-pixel (and Gaussian-voxel) pairs are summed:

- ``"torch"``: :func:`ctsr.gaussians.render` and :func:`ctsr.gaussians.voxelize`, the reference
  (CPU and CUDA, the oracle of the kernels' tests);
- ``"numba"``: CPU loops (:mod:`.render_numba`, :mod:`.voxelize_numba`), float64 inside,
  deterministic; 8x (render) to 20x (voxelize) the reference's pair rate on 2 CPU cores
  (``benchmarks/kernels_bench.md``);
- ``"triton"``: tile-binned GPU kernels (:mod:`.render_triton`, :mod:`.voxelize_triton`);
  float32 only.

:func:`select_backend` picks one: ``"auto"`` (the default) takes Triton on a CUDA device when it
imports, numba on the CPU when it imports, the reference otherwise; ``requested`` or the
environment variable :data:`BACKEND_ENV` (``auto`` | ``torch`` | ``numba`` | ``triton``) forces
one. The returned name is what the pipeline reports in its progress stream and provenance.
:func:`render` and :func:`voxelize` here dispatch to the chosen backend with the reference's
signatures.
"""

from __future__ import annotations

import os

import torch

from ...errors import UserError
from ...geometry import ConeGeometry
from ..footprint import FOOTPRINT_SIGMAS
from ..model import SignedGaussians
from ..render import render as reference_render
from ..voxelize import voxelize as reference_voxelize

#: Environment variable that forces a backend: ``auto``, ``torch``, ``numba`` or ``triton``.
BACKEND_ENV = "CTSR_RENDER_BACKEND"
BACKENDS = ("auto", "torch", "numba", "triton")


def triton_available() -> bool:
    """Whether ``import triton`` works (it does not say whether a GPU is there)."""
    try:
        import triton  # noqa: F401
    except Exception:  # an ImportError, or a broken install failing at import time
        return False
    return True


def numba_available() -> bool:
    """Whether ``import numba`` works."""
    try:
        import numba  # noqa: F401
    except Exception:  # an ImportError, or a numba built for another NumPy failing at import
        return False
    return True


def _interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def select_backend(device, requested: str | None = None) -> str:
    """The backend (``"torch"``, ``"numba"`` or ``"triton"``) for tensors on ``device``.

    ``requested`` (or, when it is None, the environment variable :data:`BACKEND_ENV`) is one of
    :data:`BACKENDS`. ``auto`` gives ``triton`` on CUDA devices when Triton imports, ``numba``
    on the CPU when numba imports, and ``torch`` otherwise. ``numba`` needs a CPU device;
    ``triton`` needs a CUDA device, or Triton's interpreter (``TRITON_INTERPRET=1``, used by the
    tests) on the CPU.
    """
    device = torch.device(device)
    choice = requested if requested is not None else os.environ.get(BACKEND_ENV, "auto")
    choice = str(choice).strip().lower() or "auto"
    if choice not in BACKENDS:
        source = "the render backend" if requested is not None else f"{BACKEND_ENV}"
        raise UserError(f"{source} must be one of {', '.join(BACKENDS)}, got {choice!r}.")
    if choice == "auto":
        if device.type == "cuda":
            return "triton" if triton_available() else "torch"
        return "numba" if device.type == "cpu" and numba_available() else "torch"
    if choice == "triton":
        if not triton_available():
            raise UserError("the triton render backend was requested but Triton is not installed "
                            "(pip install --no-deps triton).")
        if device.type != "cuda" and not _interpreting():
            raise UserError(f"the triton render backend needs a CUDA device, not {device.type}; "
                            f"use the numba or torch backend.")
    if choice == "numba":
        if not numba_available():
            raise UserError("the numba render backend was requested but numba is not installed "
                            "(pip install numba).")
        if device.type != "cpu":
            raise UserError(f"the numba render backend runs on the CPU, not {device.type}; "
                            f"use the triton or torch backend.")
    return choice


def render(gaussians: SignedGaussians, geometry: ConeGeometry, views=None,
           sigmas: float = FOOTPRINT_SIGMAS, backend: str | None = None) -> torch.Tensor:
    """:func:`ctsr.gaussians.render` on the backend :func:`select_backend` picks."""
    choice = select_backend(gaussians.means.device, backend)
    if choice == "triton":
        from .render_triton import render_triton
        return render_triton(gaussians, geometry, views, sigmas)
    if choice == "numba":
        from .render_numba import render_numba
        return render_numba(gaussians, geometry, views, sigmas)
    return reference_render(gaussians, geometry, views, sigmas)


def voxelize(gaussians: SignedGaussians, geometry: ConeGeometry, region=None,
             sigmas: float = FOOTPRINT_SIGMAS, backend: str | None = None) -> torch.Tensor:
    """:func:`ctsr.gaussians.voxelize` on the backend :func:`select_backend` picks."""
    choice = select_backend(gaussians.means.device, backend)
    if choice == "triton":
        from .voxelize_triton import voxelize_triton
        return voxelize_triton(gaussians, geometry, region, sigmas)
    if choice == "numba":
        from .voxelize_numba import voxelize_numba
        return voxelize_numba(gaussians, geometry, region, sigmas)
    return reference_voxelize(gaussians, geometry, region, sigmas)


__all__ = ["BACKEND_ENV", "BACKENDS", "numba_available", "render", "select_backend",
           "triton_available", "voxelize"]
