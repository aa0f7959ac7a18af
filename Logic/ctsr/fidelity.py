"""Fidelity to the input: the LR residual of a result and the final data-consistency step.

The forward model is the LR model's operator ``D`` (:class:`ctsr.lrmodel.LROperator`): a
faithful HR result, degraded, gives the LR input back up to its noise. :func:`lr_residual`
measures how far it is; :func:`enforce_lr_consistency` moves a result ``X0`` towards
consistency with a smooth correction ``X = X0 + U z`` (``U`` the cubic B-spline upsampling,
``z`` on the LR grid) that solves the Tikhonov problem

    min_z ||D U z - r||^2 + lam ||z||^2,    r = y - D(X0),

exactly, in the separable SVD of ``D U`` (one small matrix per axis). ``lam`` follows the
**discrepancy principle**: the largest ``lam`` whose residual RMS reaches the LR noise SD of
the model (never below it: fitting the noise is what amplifies it), and never below
:data:`MIN_LAMBDA` (at most ``1 / (2 sqrt(MIN_LAMBDA))`` amplification of any LR frequency,
so a wrong model cannot ring without bound). When even at that floor the model explains less
than :data:`MISMATCH_RATIO` of the residual, it does not describe the input (a given blur far
wider than the truth: the correction lost over 11 dB to cubic, benchmarks/wrong_model.md) and
the step leaves the result as it is. The result is then clipped to the input's HU range
widened by :data:`HU_MARGIN` of that range on each side (no overshoot).
"""

from __future__ import annotations

import math

import numpy as np

from .baselines import spline_matrix
from .grids import Scale, hr_grid
from .lrmodel import LRModel, LROperator, apply_separable
from .volume import Volume

#: Smallest Tikhonov weight: the correction amplifies no LR frequency more than 1/(2 sqrt(.)).
MIN_LAMBDA = 4e-3
#: Output HU are clipped to [min - m, max + m] of the input, m = HU_MARGIN * (max - min).
HU_MARGIN = 0.05
#: At the floor, a residual RMS above this fraction of the starting one means the model does
#: not describe the input: the right model left at most 0.11 of it on the benchmark's inputs, a
#: blur 4x too wide 0.81 to 0.89 (and lost over 11 dB to cubic).
MISMATCH_RATIO = 0.5


def _check_pair(hr: Volume, lr: Volume, scale: Scale) -> None:
    matrix, shape = hr_grid(lr.ijk_to_ras, lr.shape_ijk, scale)
    if hr.shape_ijk != shape or not np.allclose(hr.ijk_to_ras, matrix, atol=1e-4):
        raise ValueError("the HR volume is not on the HR grid of the LR volume at this scale")


def lr_residual(hr: Volume, lr: Volume, scale: Scale, model: LRModel) -> dict:
    """How well ``hr`` (HU) explains ``lr`` (HU) under ``model``: ``rms_hu``, the RMS of
    ``D(hr) - lr`` in HU; ``relative``, that over the RMS of ``lr - mean(lr)``; ``noise_hu``,
    the model's LR noise SD (a faithful result has ``rms_hu`` near it, not below)."""
    _check_pair(hr, lr, scale)
    difference = LROperator.for_volume(model, scale, hr)(hr.array).astype(np.float64) - lr.array
    rms = float(np.sqrt(np.mean(difference**2)))
    spread = float(np.std(lr.array.astype(np.float64)))
    return {"rms_hu": round(rms, 3), "relative": round(rms / spread, 6) if spread else 0.0,
            "noise_hu": model.noise_hu}


def hu_bounds(lr: Volume) -> tuple[float, float]:
    """The plausible output range: the input's range widened by :data:`HU_MARGIN` each side."""
    low, high = float(lr.array.min()), float(lr.array.max())
    margin = HU_MARGIN * (high - low)
    return low - margin, high + margin


def enforce_lr_consistency(hr: Volume, lr: Volume, scale: Scale, model: LRModel) -> tuple[Volume, dict]:
    """``hr`` corrected towards ``D(hr) == lr`` down to the model's noise (module docstring);
    returns the volume and what was done (``lambda``, ``stopped_by``)."""
    _check_pair(hr, lr, scale)
    operator = LROperator.for_volume(model, scale, hr)
    residual = lr.array.astype(np.float32) - operator(hr.array)
    bases, singular = [], []
    for matrix, n_lr, s in zip(operator.matrices, lr.array.shape, scale[::-1]):
        if matrix is None:
            bases.append(None)
            singular.append(np.ones(n_lr))
            continue
        up = spline_matrix(n_lr, s, "cubic")
        p, values, qt = np.linalg.svd(np.asarray(matrix.todense(), dtype=np.float64) @ up)
        bases.append((p, qt, up))
        singular.append(values)
    # Dense per-axis matrices (BLAS); the rotations are small next to the volume.
    rotate = lambda x, which: apply_separable(x, [None if b is None else which(b).astype(np.float32) for b in bases])
    coefficients = rotate(residual, lambda b: b[0].T).astype(np.float64)
    energy = np.einsum("k,j,i->kji", *[v**2 for v in singular])
    noise = float(model.noise_hu or 0.0)

    def rms_after(lam: float) -> float:
        return math.sqrt(float(np.mean((lam / (energy + lam)) ** 2 * coefficients**2)))

    start = float(np.sqrt(np.mean(coefficients**2)))
    if start <= noise:
        return hr.with_array(np.clip(hr.array, *hu_bounds(lr))), {"lambda": None, "stopped_by": "already within the noise"}
    at_floor = rms_after(MIN_LAMBDA)
    if at_floor > MISMATCH_RATIO * start and at_floor > noise:
        return hr.with_array(np.clip(hr.array, *hu_bounds(lr))), {
            "lambda": None, "stopped_by": f"model mismatch (it explains under {1 - MISMATCH_RATIO:.0%} of the residual "
                                          "even at the floor): no correction"}
    if at_floor >= noise:
        lam, stopped_by = MIN_LAMBDA, "regularization floor"
    else:
        low, high = math.log(MIN_LAMBDA), math.log(1e6)
        for _ in range(40):
            middle = (low + high) / 2
            low, high = (low, middle) if rms_after(math.exp(middle)) > noise else (middle, high)
        lam, stopped_by = math.exp(low), "discrepancy principle (residual = noise)"
    correction = (np.sqrt(energy) / (energy + lam) * coefficients).astype(np.float32)
    correction = rotate(correction, lambda b: b[1].T)
    correction = apply_separable(correction, [None if b is None else b[2].astype(np.float32) for b in bases])
    array = np.clip(hr.array + correction, *hu_bounds(lr))
    return hr.with_array(array.astype(np.float32)), {"lambda": round(lam, 6), "stopped_by": stopped_by}
