"""The internal prior in the projection domain: the target ``Y`` of the NAB-GS presets.

The zero-shot construction of :mod:`ctsr.internal_prior`, one level up in the projections
(DESIGN.md section 2, stage 3). The pipeline has ``P_up`` (the cone-beam projections of the
cubic ``V_up`` on the HR detector) and ``y`` (those of the LR input ``L`` on the LR detector,
the HR detector binned by the scale). The same relation is made one level down: ``L`` is
degraded once more by the LR model (:func:`ctsr.internal_prior.degrade_again`), brought back to
``L``'s grid by cubic interpolation (``U2``, as ``V_up`` is made from ``L``), and projected on
the LR detector: ``P_up2``. A 2D residual CNN (3x3 kernels on each projection) learns
``P_up2 -> y`` and is applied one level up: ``Y = P_up + f(P_up)``. What it learns is what the
cubic volume's projections miss at this scale on this scan.

``Y`` is **not** forced into the range space of ``y`` (``A_pinv(y) + Y - A_pinv(A(Y))``):
``y`` is the projection of a coarse voxel grid, which is not the LR model's binning of the true
HR projections, and on the degradation matrix that replacement cost 0.8 to 8.8 dB against the
truth's projections, more than the whole of what the network had added
(``benchmarks/projection_prior.md``).

When it runs: where the volume kind of :func:`ctsr.internal_prior.plan` runs (every scaled axis
at most x2, the blur known or estimated, a second degradation keeping
:data:`ctsr.internal_prior.MIN_PAIR_VOXELS` voxels); elsewhere (x4: measured, below the
consistent ``P_up`` on some cells; through-plane: not measured) the pipeline falls back to the
external projection prior where one is pretrained for the scale (x4:
:mod:`ctsr.external_projection_prior`), else to the consistent ``P_up``. Arrays: projections
are (views, rows, columns) of line integrals of the normalized intensity (HU window mapped to
[0, 1]) in scene units; volumes are KJI in HU.
"""

from __future__ import annotations

import numpy as np
import torch

from .baselines import upsample_interpolate
from .geometry import ConeGeometry
from .grids import Scale, is_through_plane
from .internal_prior import MAX_VOLUME_SCALE, PairPlan, degrade_again, plan
from .lrmodel import LRModel
from .metrics import DEFAULT_WINDOW
from .progress import Progress, SilentProgress
from .projector import project_hu
from .residual_cnn import TrainingSettings, apply_in_tiles, fit_residual_network
from .volume import Volume

#: The stage name of its progress events.
STAGE = "projection prior"
#: The 2D kernel (views, rows, columns): each projection is an image of its own.
KERNEL = (1, 3, 3)


def projection_plan(lr: Volume, scale: Scale, model: LRModel) -> PairPlan:
    """:func:`ctsr.internal_prior.plan`'s volume kind (every scaled axis at most x2), renamed
    ``"projections"``. At x4 it has no plan: the options built on the volume prior's two levels
    (the x2 pair's network applied to ``P_up``, with or without the pair's noise; applied on the
    detector binned by 2 and brought up by bicubic) each fell below the consistent ``P_up`` on
    one or two of nine cells (by up to 0.72 dB), which ``P_up`` itself never did
    (``benchmarks/projection_prior_x4.md``). Through-plane it is not measured (a pair would
    need z degraded again)."""
    if is_through_plane(scale):  # before plan() estimates anything
        return PairPlan(None, reason="the projection-domain internal prior is not measured through-plane")
    if max(scale) > MAX_VOLUME_SCALE:
        why = ("no measured option beat the consistent P_up on every cell" if max(scale) == 2 * MAX_VOLUME_SCALE
               else "not measured")
        return PairPlan(None, reason=f"the projection-domain internal prior runs up to x{MAX_VOLUME_SCALE} (at "
                                     f"x{max(scale)}: {why})")
    the_plan = plan(lr, scale, model)
    if the_plan.kind == "volume":
        return PairPlan("projections", the_plan.pair_scale, the_plan.pair_model)
    return the_plan


def one_level_down(lr: Volume, scale: Scale, model: LRModel, seed: int = 0) -> tuple[np.ndarray, Volume]:
    """``(U2, L2)``: ``L2``, ``lr`` degraded once more (:func:`ctsr.internal_prior.degrade_again`),
    and ``U2``, its cubic upsampling on ``lr``'s grid (KJI, HU; its last planes, which a scale that
    does not divide the shape leaves out, repeat the edge)."""
    low = degrade_again(lr, scale, model, seed)
    u2 = upsample_interpolate(low, scale, "cubic").array
    return np.pad(u2, [(0, n - m) for n, m in zip(lr.array.shape, u2.shape)], mode="edge"), low


def projection_training_pair(lr: Volume, scale: Scale, model: LRModel, lr_geometry: ConeGeometry, seed: int = 0,
                             device: str | torch.device = "cpu", window=DEFAULT_WINDOW) -> torch.Tensor:
    """``P_up2``: the projections on ``lr_geometry`` (the LR detector) of ``U2``
    (:func:`one_level_down`). Shape (views, rows, columns)."""
    return project_hu(one_level_down(lr, scale, model, seed)[0], lr_geometry, window, device)


def upsample_projections_internally(lr: Volume, scale: Scale, model: LRModel, p_up: torch.Tensor, y: torch.Tensor,
                                    lr_geometry: ConeGeometry, settings: TrainingSettings, seed: int = 0,
                                    device: str | torch.device = "cpu", progress: Progress | None = None,
                                    window=DEFAULT_WINDOW) -> torch.Tensor:
    """``Y = P_up + f(P_up)``, ``f`` trained on ``P_up2 -> y`` (:func:`projection_training_pair`).

    ``p_up``: (views, rows, columns) on the HR detector; ``y``: the same views on the LR
    detector (``lr_geometry``); both in the pipeline's normalized line integrals. Raises
    ``ValueError`` when :func:`projection_plan` has none. Deterministic for a seed on the CPU."""
    progress = progress or SilentProgress()
    the_plan = projection_plan(lr, scale, model)
    if the_plan.kind is None:
        raise ValueError(the_plan.reason)
    progress.update(STAGE, 0.0, "making the projection training pair")
    source = projection_training_pair(lr, the_plan.pair_scale, the_plan.pair_model, lr_geometry, seed, device, window)
    network = fit_residual_network(source.cpu().numpy(), y.cpu().numpy(), KERNEL, settings, seed, device,
                                   progress.span(0.05, 0.9), STAGE)
    target = apply_in_tiles(network, p_up.cpu().numpy(), torch.device(device), progress.span(0.9, 1.0), unit=1.0,
                            stage=STAGE)
    return torch.from_numpy(target).to(p_up.device)
