"""The zero-shot super-resolution pipeline (DESIGN.md section 2), stage by stage.

1. ``V_up``: the LR volume (HU) upsampled onto the HR grid by the preset's interpolator (cubic
   B-spline; Lanczos-3 for ``fast``, which has no later stage that needs ``V_up``), then the HU
   window mapped to [0, 1] ("normalized intensity"; every stage below works in it).
2. The scan: a cone-beam geometry around the HR grid (:class:`ctsr.geometry.ConeGeometry`,
   scene units), ``P_up`` = projections of ``V_up`` on the HR detector, ``y`` = projections
   of the LR volume on the LR detector (HR detector binned by the scale: rows by ``sz``,
   columns by ``sx``); ``A``, the projection-domain image of the LR model
   (:class:`ctsr.prior.operators.DetectorBinning`), relates the two detectors.
3. ``Y``, the target HR projections: by default the internal projection prior
   (:mod:`ctsr.internal_projection_prior`, a 2D CNN the scan's own projections train at run
   time: ``P_up + f(P_up)``); at x4, where the scan cannot teach itself, the external one
   (:mod:`ctsr.external_projection_prior`, pretrained on other scans, used where its
   self-check on the scan passes, else ``P_up``); with a diffusion model (``prior``), DDNM
   samples HR projections from ``P_up`` (:func:`ctsr.prior.upsample_projections`, the paper's
   option), their range-space part held at ``A(P_up)`` (which scored 0.1 to 0.5 dB above
   holding it at ``y``; ``y`` sets each projection's normalization); where none runs, the consistent ``P_up``
   (``A_pinv(y) + P_up - A_pinv(A(P_up))``, in ``A``'s range space).
4. NAB-GS: signed Gaussians fitted to the residual ``Y - P_up`` and voxelized: ``dV``. Where
   ``Y`` is ``P_up`` there is nothing to fit: the volume is then ``fast``'s (Lanczos-3 instead of
   ``V_up``, the same stage 5), which beats ``V_up``.
5. ``max(0, V_up + dV)`` back to HU, then the data-consistency step of :mod:`ctsr.fidelity`
   (the output, degraded by the LR model, reproduces the input down to its noise).

``balanced`` takes another road after stage 1: the internal prior of :mod:`ctsr.internal_prior`
(a CNN trained on the scan itself) is added to ``fast``'s result, then stage 5.

Everything runs under one :class:`ctsr.progress.Progress` (stage names ``upsample``,
``internal prior``, ``project``, ``projection prior``, ``nabgs``, ``consistency``), is cancellable at every
progress event, and is deterministic for a seed on the CPU (on CUDA, the Triton kernels' atomic
gradient sums make NAB-GS reproducible to about 1 %, the internal prior to 0.01 HU).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .baselines import upsample_interpolate
from .errors import UserError
from .fidelity import enforce_lr_consistency, lr_residual
from .gaussians.fit import FitSettings, fit_residual
from .geometry import ConeGeometry, detector_binning, scan_geometries
from .grids import Scale
from .internal_prior import InternalPriorSettings, upsample_with_internal_prior
from .lrmodel import LRModel
from .metrics import DEFAULT_WINDOW, denormalize, normalize
from .progress import Progress, SilentProgress
from .projector import forward_project, project_hu
from .residual_cnn import TrainingSettings
from .volume import Volume


@dataclass(frozen=True)
class Preset:
    """Knobs of one preset of the zero-shot method.

    n_views:        projections over 180 degrees (0 when the preset makes none);
    prior_steps:    DDIM steps of a diffusion projection prior, when one is given (the paper's
                    option: ``--prior DIR`` or ``shipped``);
    projection_prior: the settings of the internal projection prior
                    (:mod:`ctsr.internal_projection_prior`), the target ``Y`` when no diffusion
                    prior is given (at x4 the external projection prior takes its place), or
                    None (``Y`` = consistent ``P_up``);
    fit:            the NAB-GS settings (iterations, Gaussian counts, learning rates), or None
                    to skip the reconstruction (the output is then the interpolated volume made
                    consistent with the input);
    consistency:    whether the final data-consistency step runs;
    interpolator:   the baseline ``V_up`` comes from (:mod:`ctsr.baselines`);
    internal_prior: the settings of the internal prior (:mod:`ctsr.internal_prior`: a CNN the
                    scan trains on itself, added to ``fast``'s result), or None.
    """

    name: str
    n_views: int
    prior_steps: int
    fit: FitSettings | None
    consistency: bool
    interpolator: str = "cubic"
    internal_prior: InternalPriorSettings | None = None
    projection_prior: TrainingSettings | None = None

    @property
    def max_gaussians(self) -> int:
        return self.fit.max_gaussians if self.fit is not None else 0


#: The internal projection prior of the NAB-GS presets: 1500 steps (77 to 90 s on 2 CPU
#: cores at a 144^2 detector; 300 steps kept about half of its gain and fell below ``P_up`` on two of
#: nine cells, benchmarks/projection_prior.md).
PROJECTION_PRIOR = TrainingSettings(steps=1500)

PRESETS = {
    "fast": Preset("fast", n_views=0, prior_steps=0, fit=None, consistency=True, interpolator="lanczos"),
    "balanced": Preset("balanced", n_views=0, prior_steps=0, fit=None, consistency=True, interpolator="lanczos",
                       internal_prior=InternalPriorSettings()),
    "standard": Preset("standard", n_views=72, prior_steps=20, fit=FitSettings.preset("standard"), consistency=True,
                       projection_prior=PROJECTION_PRIOR),
    "quality": Preset("quality", n_views=100, prior_steps=20, fit=FitSettings.preset("quality"), consistency=True,
                      projection_prior=PROJECTION_PRIOR),
}
"""The presets. ``fast`` and ``balanced`` keep only the stages that helped on the measured
data (README, "Why ``balanced`` is the default"); the NAB-GS presets take their target from the
internal projection prior at x2 and the external one at x4, which beat the consistent ``P_up``
(benchmarks/projection_prior.md, benchmarks/external_projection_prior.md),
unlike the shipped diffusion model (benchmarks/prior_bench.md), which runs only when asked for."""


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; ``"cuda"`` without a GPU is a user error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for, but no CUDA GPU is available; use 'auto' or 'cpu'.")
    return torch.device(device)


def projection_operator(lr_model: LRModel, hr: Volume, scale: Scale):
    """``A`` of the scan: the LR model's profiles on the detector (rows: z, columns: x), binned
    by :func:`detector_binning`; widths in HR voxels (``slab`` via the HR spacing)."""
    from .prior.operators import DetectorBinning

    return DetectorBinning.from_lr_model(lr_model, detector_binning(scale), (hr.spacing[2], hr.spacing[0]))


def consistent_p_up(p_up: torch.Tensor, y: torch.Tensor, operator) -> torch.Tensor:
    """``A_pinv(y) + P_up - A_pinv(A(P_up))``: ``P_up`` with its range-space part replaced by
    ``y``'s (``operator``: ``A``, see :func:`projection_operator`)."""
    from .prior.operators import project_to_range

    return project_to_range(p_up[:, None], y[:, None], operator)[:, 0]


def super_resolve(lr: Volume, scale: Scale, preset: Preset, lr_model: LRModel, *, prior=None, device: str = "auto",
                  seed: int = 0, progress: Progress | None = None, window=DEFAULT_WINDOW,
                  oracle: Volume | None = None, external=None, external_projection=None) -> tuple[Volume, dict]:
    """Super-resolve ``lr`` (HU) by ``scale`` (IJK) with ``preset``; returns the HR volume (HU)
    and a dict of what was done (device, views, detector, target, Gaussians, LR residual).

    lr_model: the complete LR model (:func:`ctsr.lrestimate.resolve_lr_model`): the range space
            of the projections and the forward model of the consistency step;

    prior:  a loaded diffusion :class:`ctsr.prior.model.Prior` (DDNM makes ``Y``), or None: the
            preset's internal projection prior, or the consistent ``P_up`` where it has none or
            cannot run; ignored when the preset has ``prior_steps == 0``;
    external: a :class:`ctsr.network_folder.PretrainedNetwork` the preset's internal prior starts
            from (fine-tuning) where it runs at that network's scale, or None (from zero);
    external_projection: a :class:`ctsr.network_folder.PretrainedNetwork`,
            the target ``Y`` of a preset with a projection prior where the internal one has no
            pair and the job's scale is that network's, or None;
    oracle: the true HR volume, for benchmarks only: ``Y`` = its projections (the ceiling of
            what the reconstruction can recover from perfect projections); runs NAB-GS with the
            preset's settings, or the standard ones when the preset has none.
    """
    progress = progress or SilentProgress()
    torch_device = resolve_device(device)
    torch.manual_seed(seed)
    info = {"device": torch_device.type, "preset": preset.name}

    if preset.internal_prior is not None:
        hr, details = upsample_with_internal_prior(lr, scale, lr_model, preset.internal_prior, seed, torch_device,
                                                   progress.span(0.0, 0.97), external)
        info.update(details, target="none: fast's volume plus the internal prior")
        info["lr_residual"] = lr_residual(hr, lr, scale, lr_model)
        progress.update("consistency", 1.0, "done")
        return hr, info
    progress.update("upsample", 0.0, f"{preset.interpolator} upsampling")
    hr = upsample_interpolate(lr, scale, preset.interpolator)
    if preset.fit is not None or oracle is not None:
        hr = _reconstruct(lr, hr, scale, preset, lr_model, prior, torch_device, seed, window, oracle, progress,
                          info, external_projection)
    else:
        info["target"] = f"none: the preset keeps the {preset.interpolator} volume and only enforces consistency"
    if preset.consistency:
        # After NAB-GS the step is a few seconds of a long job; after interpolation, most of it.
        progress.update("consistency", 0.95 if preset.fit is not None or oracle is not None else 0.3,
                        f"matching the LR input ({lr_model})")
        hr, info["consistency"] = enforce_lr_consistency(hr, lr, scale, lr_model)
    info["lr_residual"] = lr_residual(hr, lr, scale, lr_model)
    progress.update("consistency", 1.0, "done")
    return hr, info


def _external_target(prior, lr: Volume, scale: Scale, lr_model: LRModel, p_up: torch.Tensor, y: torch.Tensor,
                     lr_geometry: ConeGeometry, seed: int, device: torch.device, window, progress: Progress,
                     info: dict) -> torch.Tensor:
    """``Y`` from the external projection prior where its self-check on the scan's own
    projections one level down is positive (:func:`ctsr.external_projection_prior.self_check`),
    else ``P_up`` (which beat the consistent ``P_up`` on every x4 cell measured,
    ``benchmarks/projection_prior_x4.md``)."""
    from .external_projection_prior import STAGE, TooSmallToCheck, self_check, upsample_projections_externally

    progress.update(STAGE, 0.08, "checking the pretrained projection prior on the scan itself")
    try:
        check = self_check(prior, lr, scale, lr_model, y, lr_geometry, seed, device, window)
        declined = None if check > 0 else (f"{prior.name} made the scan's own projections one level down "
                                           f"{-check:.2f} dB worse")
    except TooSmallToCheck as why:
        declined = str(why)
    if declined is not None:
        progress.log(f"external projection prior declined: {declined}")
        info["target"] = "P_up (the external projection prior declined)"
        info["projection_prior"] = f"external declined: {declined}"
        return p_up
    info["target"] = f"external projection prior (P_up + a 2D CNN pretrained on other scans: {prior.name})"
    info["projection_prior"] = f"external, {prior.name}, self-check {check:+.2f} dB"
    return upsample_projections_externally(prior, p_up, y, scale, device, progress.span(0.1, 0.40))


def _reconstruct(lr: Volume, v_up: Volume, scale: Scale, preset: Preset, lr_model: LRModel, prior,
                 device: torch.device,
                 seed: int, window, oracle: Volume | None, progress: Progress, info: dict,
                 external_projection=None) -> Volume:
    """Stages 2 to 4: projections, the target ``Y``, the NAB-GS fit; ``relu(V_up + dV)`` in HU."""
    v_up_n = torch.from_numpy(normalize(v_up.array, window).astype(np.float32)).to(device)

    progress.update("project", 0.03, f"{preset.n_views} cone-beam views")
    geometry, lr_geometry = scan_geometries(lr, v_up, scale, preset.n_views)
    operator = projection_operator(lr_model, v_up, scale)
    with torch.no_grad():
        p_up = forward_project(v_up_n, geometry)
    y = project_hu(lr.array, lr_geometry, window, device)
    info.update(views=preset.n_views, detector=list(geometry.nDetector))

    if oracle is not None:
        target = project_hu(oracle.array, geometry, window, device)
        info["target"] = "oracle: projections of the true HR volume"
    elif prior is not None and preset.prior_steps > 0:
        from .prior import upsample_projections

        result = upsample_projections(prior, y[:, None], operator, steps=preset.prior_steps, pas=True,
                                      generator=torch.Generator().manual_seed(seed), init=p_up[:, None],
                                      progress=progress.span(0.08, 0.40))
        target = result.images[:, 0].to(device)
        info["target"] = "diffusion prior (DDNM with PAS, init P_up)"
        info["prior_steps_mean"] = round(float(result.steps.float().mean()), 2)
    else:
        target = None
        if preset.projection_prior is not None:
            from .internal_projection_prior import projection_plan, upsample_projections_internally

            the_plan = projection_plan(lr, scale, lr_model)
            if the_plan.kind is None and external_projection is not None and tuple(scale) == external_projection.scale:
                target = _external_target(external_projection, lr, scale, lr_model, p_up, y, lr_geometry, seed,
                                          device, window, progress, info)
            elif the_plan.kind is None:
                progress.log(f"projection prior skipped: {the_plan.reason}")
                info["projection_prior"] = f"skipped: {the_plan.reason}"
            else:
                target = upsample_projections_internally(lr, scale, lr_model, p_up, y, lr_geometry,
                                                         preset.projection_prior, seed, device,
                                                         progress.span(0.08, 0.40), window)
                info["target"] = "internal projection prior (P_up + a 2D CNN trained on the scan's own projections)"
                info["projection_prior"] = f"internal, {preset.projection_prior.steps} steps"
        if target is None:
            target = consistent_p_up(p_up, y, operator)
            info["target"] = "consistent P_up (no prior)"

    if target is p_up:  # nothing for NAB-GS to fit: fast's volume, which beats V_up
        fast = PRESETS["fast"].interpolator
        progress.log(f"NAB-GS skipped: its target is P_up, so the residual it would fit is zero; the {fast} "
                     "volume instead, as fast")
        info["gaussians"] = 0
        info["target"] += f"; NAB-GS skipped: fast's {fast} volume"
        return upsample_interpolate(lr, scale, fast)
    from .gaussians.kernels import select_backend

    info["render_backend"] = select_backend(device)
    settings = (preset.fit or PRESETS["standard"].fit).scaled_to(v_up.array.size)
    progress.log(f"NAB-GS on {device.type} with the {info['render_backend']} renderer, "
                 f"{settings.init_gaussians} Gaussians to start (up to {settings.max_gaussians})")
    fit = fit_residual(target, p_up, v_up_n, geometry, settings,
                       progress.span(0.40, 0.93), seed)
    info["gaussians"] = len(fit.gaussians)
    hr_n = torch.clamp(v_up_n + fit.residual, min=0).cpu().numpy()
    return v_up.with_array(denormalize(hr_n, window))
