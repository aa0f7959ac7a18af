"""The one entry point that turns an LR volume into an HR one: :func:`upsample`.

The CLI, the background worker and the Slicer logic all call it, so a method name means the
same thing everywhere:

* ``fast``, ``balanced``, ``standard``, ``quality``: the zero-shot method
  (:mod:`ctsr.pipeline`) with the preset of that name (:data:`ctsr.pipeline.PRESETS`);
  ``balanced`` (``fast`` plus the internal prior of :mod:`ctsr.internal_prior`) is the default
  (the README says why);
* ``nabgs``: NAB-GS with no projection prior (the sanity path: ``Y`` = consistent ``P_up``),
  standard settings;
* ``trilinear``, ``cubic``, ``lanczos``: the interpolation baselines of :mod:`ctsr.baselines`.

Heavy packages (torch, diffusers) are imported only when a zero-shot method runs, so that the
Slicer module can load before its first-use installation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import __version__
from .baselines import METHODS as INTERPOLATION_METHODS
from .baselines import upsample_interpolate
from .fidelity import enforce_lr_consistency, lr_residual
from .grids import (AXES, Scale, format_scale, is_auto, is_thick_slice, scale_for, slice_axis, slice_axis_of_spacing,
                    suggested_scale)
from .lrestimate import resolve_lr_model
from .lrmodel import LRModel
from .progress import Progress, SilentProgress
from .roi import Roi, crop_to_roi
from .volume import Volume

ZERO_SHOT_PRESETS = ("fast", "balanced", "standard", "quality")
METHODS = ZERO_SHOT_PRESETS + ("nabgs",) + INTERPOLATION_METHODS
#: The presets that fit NAB-GS to projections made better by a projection prior (``prior``).
PROJECTION_PRIOR_METHODS = ("standard", "quality")
#: Methods with no random stage (no training, prior sampling or Gaussian fit): no uncertainty.
DETERMINISTIC_METHODS = INTERPOLATION_METHODS + ("fast",)
#: ``prior`` and ``pretrained`` values of :func:`upsample` other than a model folder: none
#: (no projection prior; an internal prior from zero); the shipped model.
NONE, SHIPPED = "none", "shipped"
#: What ``ctsr upsample``, the worker and the Slicer panel run when no method is given.
DEFAULT_METHOD = "balanced"


@dataclass
class UpsampleResult:
    """The HR volume (HU, on the grid of :func:`ctsr.grids.hr_grid` of the (cropped) input),
    how it was made, and, with ``uncertainty`` > 1, the voxelwise standard deviation (HU) over
    that many runs with different seeds."""

    volume: Volume
    provenance: dict = field(default_factory=dict)
    uncertainty: Volume | None = None


def upsample(lr: Volume, scale, method: str = DEFAULT_METHOD, progress: Progress | None = None,
             seed: int = 0, device: str = "auto", roi: str | Roi | None = None,
             uncertainty: int = 0, prior: str | None = None, lr_model: str | LRModel | None = None,
             slice_thickness_mm: float | None = None, pretrained: str | None = None) -> UpsampleResult:
    """Super-resolve ``lr`` (HU) by ``scale`` (int, "1x1x4", an IJK tuple, or "auto": chosen
    from ``lr``'s spacing by :func:`ctsr.grids.suggested_scale`) with ``method``.
    A scale along one axis only is through-plane along it: x or y run as z (the methods' slice
    axis) on the volume with that axis and z exchanged, and the result is turned back.

    roi:         only this box of the input (``"ras:..."`` / ``"ijk:..."``, see :mod:`ctsr.roi`);
    uncertainty: K > 1 runs the zero-shot method K times (seeds ``seed .. seed + K - 1``) and
                 returns the voxelwise standard deviation beside the first run's volume (refused
                 for :data:`DETERMINISTIC_METHODS`; zero where ``balanced`` falls back to ``fast``,
                 and where ``standard`` and ``quality`` skip NAB-GS);
    prior:       the projection prior of the NAB-GS presets: None, the internal projection
                 prior (:mod:`ctsr.internal_projection_prior`), at x4 the shipped external
                 one (:mod:`ctsr.external_projection_prior`); a folder written by ``ctsr
                 pretrain --projections``: that external one instead of the shipped one (at its
                 scale only); "none": no prior, ``Y`` = consistent ``P_up``; "shipped" or a
                 diffusion model folder: that model with DDNM (the paper's option);
    lr_model:    how the input was made from the HR scan (:class:`ctsr.lrmodel.LRModel` or its
                 text, e.g. ``"gauss:1"``, ``"box,noise:15"``, ``"z=slab:5mm"``; a slab with no
                 axis named is the one scaled axis's, else z's); what it leaves out is read
                 from ``slice_thickness_mm`` (DICOM SliceThickness, for the z profile when z is
                 scaled) or estimated from the input (:func:`ctsr.lrestimate.resolve_lr_model`);
                 the model used is ``provenance["lr_model"]``;
    pretrained:  where ``balanced``'s internal prior starts (:mod:`ctsr.external_prior`): None or
                 "shipped", the shipped network pretrained on other CT scans (where the pair
                 is at its scale, x2: at x2 and in the first level of x4; elsewhere from
                 zero); "none": from zero; or a folder written by ``ctsr pretrain``. Loaded
                 once, before any work; ``provenance["pretrained"]`` names the network where
                 it was used. Refused for the other methods.
    """
    from .errors import UserError, check_seed

    chosen_by_spacing = is_auto(scale)
    scale: Scale = scale_for(scale, lr.spacing)
    seed = check_seed(seed)
    progress = progress or SilentProgress()
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    uncertainty = check_uncertainty_runs(uncertainty, method)
    if pretrained is not None and method != "balanced":
        raise UserError(f"a pretrained start (--pretrained) is for balanced's internal prior; {method} has none.")
    if prior is not None and method not in PROJECTION_PRIOR_METHODS:
        raise UserError(f"a projection prior (--prior) is for {' and '.join(PROJECTION_PRIOR_METHODS)}; "
                        f"{method} has none.")
    lr.check_usable()
    if method not in INTERPOLATION_METHODS:  # a device that is not here is refused before any work
        from .pipeline import resolve_device

        resolve_device(device)
    progress.log(f"input {'x'.join(map(str, lr.shape_ijk))} voxels, spacing "
                 f"{'x'.join(f'{s:.3g}' for s in lr.spacing)} mm")
    if chosen_by_spacing:
        progress.log(f"scale {format_scale(scale)}, chosen from the spacing (ctsr.grids.suggested_scale)")
    thick_axis = slice_axis(scale)
    # Thick slices along x or y (through-plane, or large pixels with thicker slices) run with
    # that axis as z (the methods' slice axis), then turn back (below); a network is chosen
    # for the scale it runs at.
    turn = thick_axis if thick_axis in (0, 1) else None
    external = _load_pretrained(pretrained, device) if method == "balanced" and pretrained != NONE else None
    external_projection = (_load_external_projection(prior, scale if turn is None else _swap_z(scale, turn), device)
                           if method in PROJECTION_PRIOR_METHODS else None)
    if external_projection is not None and prior is not None:
        prior = None  # a folder of the external projection prior: beside it, the internal one where it runs
    if roi is not None:
        roi = roi if isinstance(roi, Roi) else Roi.parse(roi)
        lr = crop_to_roi(lr, roi)
    start = time.monotonic()
    provenance = {"method": method, "scale": format_scale(scale), "seed": seed, "version": __version__}
    if roi is not None:
        provenance["roi"] = str(roi)
    std = None
    _check_output_size(lr, scale)
    given = lr_model if isinstance(lr_model, LRModel) else LRModel.parse(lr_model, thick_axis)
    if turn is not None:  # DICOM's SliceThickness describes z, which is then not the scaled axis
        lr, scale, given, slice_thickness_mm = _swap_z(lr, turn), _swap_z(scale, turn), _swap_z(given, turn), None
        provenance["slice_axis"] = f"{AXES[turn]} (run as z)"
    if (is_thick_slice(lr.spacing) and sum(s > 1 for s in scale) > 1
            and slice_axis(scale) != slice_axis_of_spacing(lr.spacing)):
        progress.log(f"note: the input has thick slices ({' x '.join(f'{s:.3g}' for s in lr.spacing)} mm); a larger "
                     f"scale across them than in-plane (like {format_scale(suggested_scale(lr.spacing))}, what "
                     "--scale auto picks) is what it needs")
    progress.update("lr model", 0.0, "reading or estimating how the input was made")
    model = resolve_lr_model(lr, scale, given, slice_thickness_mm)
    reported = model if turn is None else _swap_z(model, turn)
    provenance["lr_model"] = reported.describe()
    progress.log(f"LR model: {reported} ({'; '.join(f'{k}: {v}' for k, v in reported.source.items())})")
    # Beside the methods with no training or fit, the model takes about as long as the rest.
    share = 0.4 if method in DETERMINISTIC_METHODS else 0.01
    progress.update("lr model", share, f"{reported}")
    progress = progress.span(share, 1.0)
    # Every method gives a constant input back as that constant: nothing to learn or fit (the
    # internal prior would train for minutes to learn that its correction is zero).
    constant = method not in INTERPOLATION_METHODS and float(lr.array.min()) == float(lr.array.max())
    if method in INTERPOLATION_METHODS or constant:
        progress.update("upsample", 0.0, f"{'cubic' if constant else method} x{format_scale(scale)}")
        hr = upsample_interpolate(lr, scale, "cubic" if constant else method)
        provenance["device"] = "cpu"
        provenance["lr_residual"] = lr_residual(hr, lr, scale, model)
        if constant:
            progress.log(f"the input is constant ({float(lr.array.flat[0]):g} HU): so is the result; {method} "
                         "has nothing to add")
            provenance["constant_input"] = f"{float(lr.array.flat[0]):g} HU: the result is that constant"
            if uncertainty:
                std, provenance["uncertainty_runs"] = hr.with_array(np.zeros_like(hr.array)), uncertainty
        progress.update("upsample", 1.0, "done")
    else:
        runs = max(1, uncertainty)
        hr, info = _zero_shot(lr, scale, method, model, seed, device, prior, external, external_projection,
                              progress.span(0.0, 1.0 / runs))  # the result, and what the provenance describes
        if runs > 1:
            others = [_zero_shot(lr, scale, method, model, seed + k, device, prior, external, external_projection,
                                 progress.span(k / runs, (k + 1) / runs))[0].array for k in range(1, runs)]
            std = hr.with_array(np.std(np.stack([hr.array, *others]), axis=0))
            info["uncertainty_runs"] = runs
        provenance.update(info)
    if turn is not None:
        hr, std = _swap_z(hr, turn), None if std is None else _swap_z(std, turn)
    provenance["duration_s"] = round(time.monotonic() - start, 2)
    return UpsampleResult(hr, provenance, std)


def _swap_z(thing, axis: int):
    """A volume, an LR model or a scale (IJK) with index axis ``axis`` and z exchanged."""
    if isinstance(thing, tuple):
        swapped = list(thing)
        swapped[axis], swapped[2] = thing[2], thing[axis]
        return tuple(swapped)
    return thing.with_axes_swapped(axis, 2)


def upsample_file(input_path, output_path, scale, method: str = DEFAULT_METHOD, progress: Progress | None = None,
                  *, uncertainty_output=None, compress: bool = True, **options) -> tuple[UpsampleResult, dict]:
    """What ``ctsr upsample``, the worker and each scan of a batch do: check the outputs can be
    written (none of them the input) and the LR model text, read ``input_path`` (a volume file
    or a DICOM series folder, whose SliceThickness is read unless ``slice_thickness_mm`` is
    given), :func:`upsample` it with ``options``, and write the HR volume to ``output_path``
    and the uncertainty map to ``uncertainty_output`` (default :func:`ctsr.io.uncertainty_path`),
    both or neither; a default map path where a file already is, which the caller did not name,
    is refused. Returns the result and the paths written (:func:`ctsr.io.write_result`)."""
    from .errors import UserError
    from .io import check_writable, read_slice_thickness, read_volume, uncertainty_path, write_result

    check_writable(output_path, inputs=[input_path])
    if check_uncertainty_runs(options.get("uncertainty"), method):
        beside = uncertainty_path(Path(output_path))
        check_writable(uncertainty_output or beside, inputs=[input_path, output_path])
        if uncertainty_output is None and beside.exists():
            raise UserError(f"{beside} exists and was not named as an output; move it or name another output "
                            "(the uncertainty map is written beside the output, as OUT_uncertainty).")
    if not isinstance(options.get("lr_model"), LRModel):
        LRModel.parse(options.get("lr_model"))  # a bad model is refused before reading
    lr = read_volume(input_path)
    if options.get("slice_thickness_mm") is None:
        options["slice_thickness_mm"] = read_slice_thickness(input_path)
    result = upsample(lr, scale, method, progress, **options)
    return result, write_result(result.volume, output_path, result.uncertainty, uncertainty_output, compress)


def check_uncertainty_runs(uncertainty, method: str) -> int:
    """The number of uncertainty runs (0: none), or :class:`UserError` for anything but 0 or
    K >= 2, and for :data:`DETERMINISTIC_METHODS` (every run would be the same)."""
    from .errors import UserError

    try:
        runs = int(uncertainty or 0)
    except (TypeError, ValueError):
        raise UserError(f"uncertainty runs must be a whole number, not {uncertainty!r}.") from None
    if runs == 0:
        return 0
    if runs < 2:
        raise UserError("uncertainty needs at least 2 runs (or 0 for none).")
    if method in DETERMINISTIC_METHODS:
        raise UserError(f"{method} is deterministic, so it has no uncertainty; pick balanced, standard or "
                        "quality, or set the uncertainty runs to 0.")
    return runs


def _check_output_size(lr: Volume, scale: Scale) -> None:
    """Refuse, before any work, an output larger than the engine accepts or than the free RAM
    can hold (the interpolators need about three float32 copies of it)."""
    from .errors import UserError
    from .memory import available_ram_bytes, format_bytes
    from .planning import SAFETY
    from .volume import MAX_VOXELS

    voxels = int(np.prod(lr.shape_ijk, dtype=np.int64)) * int(np.prod(scale))
    needed = 12 * voxels
    if voxels > MAX_VOXELS or needed > SAFETY * available_ram_bytes():
        raise UserError(f"the output would have {voxels:,} voxels and need about {format_bytes(needed)} of "
                        f"memory ({format_bytes(available_ram_bytes())} free); use an ROI or a smaller scale.")


def _load_pretrained(pretrained: str | None, device: str):
    """The :class:`ctsr.network_folder.PretrainedNetwork` that ``balanced`` starts from: the shipped
    one for None or "shipped", else the folder ``pretrained``; on the resolved ``device``."""
    from .external_prior import load_external_prior
    from .pipeline import PRESETS, resolve_device

    folder = None if pretrained in (None, SHIPPED) else pretrained
    return load_external_prior(folder, PRESETS["balanced"].internal_prior, resolve_device(device))


def _load_external_projection(prior: str | None, scale: Scale, device: str):
    """The :class:`ctsr.network_folder.PretrainedNetwork` of the external projection prior on the
    resolved ``device``: for ``prior`` None the shipped one where it was pretrained for
    ``scale`` (else None); for a folder written by ``ctsr pretrain --projections`` that one
    (:class:`UserError` when it was pretrained for another scale); otherwise None (``prior``
    names no prior or a diffusion model)."""
    from .errors import UserError
    from .external_projection_prior import FORMAT, load_external_projection_prior
    from .network_folder import folder_format
    from .pipeline import resolve_device

    if prior is None:
        return load_external_projection_prior(None, resolve_device(device), only_for=scale)
    if prior in (NONE, SHIPPED) or folder_format(Path(prior)) != FORMAT:
        return None
    network = load_external_projection_prior(prior, resolve_device(device))
    if network.scale != tuple(scale):
        raise UserError(f"the projection prior in {prior} was pretrained for x{format_scale(network.scale)}; "
                        f"this job is x{format_scale(scale)}.")
    return network


def _zero_shot(lr: Volume, scale: Scale, method: str, model: LRModel, seed: int, device: str, prior_path,
               external, external_projection, progress: Progress):
    """One run of the zero-shot pipeline, in blocks when memory requires it; ``external_projection``:
    the shipped external projection prior where it applies, or None; ``external``: the
    pretrained start of ``balanced``'s internal prior, or None."""
    from .blocks import upsample_in_blocks
    from .pipeline import PRESETS, resolve_device, super_resolve
    from .planning import BLOCK_OVERLAP, plan_job

    preset = PRESETS["standard" if method == "nabgs" else method]
    if method == "nabgs" or prior_path == NONE:
        preset = replace(preset, projection_prior=None)
    torch_device = resolve_device(device)
    prior = None
    info = {}
    if method != "nabgs" and prior_path not in (None, NONE) and preset.prior_steps > 0:
        from .prior import load_prior

        prior = load_prior(None if prior_path == SHIPPED else prior_path, device=torch_device)
        info["model"] = prior.metadata.get("name", str(prior_path))
    plan = plan_job(lr.array.shape, scale, preset.n_views, preset.max_gaussians, torch_device)
    progress.log(plan.describe())
    info["memory_plan"] = plan.describe()

    def run(piece: Volume, piece_progress: Progress) -> Volume:
        hr, details = super_resolve(piece, scale, preset, model, prior=prior, device=str(torch_device), seed=seed,
                                    progress=piece_progress, external=external,
                                    external_projection=external_projection)
        info.update(details)
        return hr

    if plan.block_shape_kji is None:
        return run(lr, progress), info
    hr = upsample_in_blocks(lr, scale, run, plan.block_shape_kji, BLOCK_OVERLAP, progress)
    # The step once more on the whole blend (it is cheap and global): no seams where blocks
    # met; the residual reported is the blend's, not the last block's.
    hr, info["consistency"] = enforce_lr_consistency(hr, lr, scale, model)
    info["lr_residual"] = lr_residual(hr, lr, scale, model)
    return hr, info
