"""What a job is: the scale per axis, the output's name and the worker's job file.

Scales are in IJK order ``(sx, sy, sz)`` like :mod:`ctsr.grids`; spacings are in mm, IJK order.
"""

from __future__ import annotations

import json
from pathlib import Path

from ctsr.errors import UserError, check_seed
from ctsr.grids import Scale, format_scale, parse_scale, scale_for, slice_axis_of_spacing, suggested_scale

#: The factors the panel offers in-plane and across the slices (1 leaves that direction as it is).
PANEL_SCALES = (1, 2, 4, 8)

#: Panel / API device names -> the engine's ``--device``.
DEVICES = {"auto": "auto", "gpu": "cuda", "cuda": "cuda", "cpu": "cpu"}


def panel_scale(in_plane: int, across_slices: int, spacing_ijk) -> Scale:
    """The per-axis scale (IJK) of the panel's two factors: ``across_slices`` on the slice axis
    (:func:`ctsr.grids.slice_axis_of_spacing`: the largest spacing, mm), ``in_plane`` on the two
    others; e.g. 2 and 4 on a 3 x 3 x 10 mm scan -> (2, 2, 4), 1 and 4 on a 0.7 x 0.7 x 5 mm
    scan -> (1, 1, 4). Both 1 is a :class:`ctsr.errors.UserError`."""
    if int(in_plane) == int(across_slices) == 1:
        raise UserError("choose a scale above 1 in-plane, across the slices, or both.")
    axis = slice_axis_of_spacing(spacing_ijk)
    return parse_scale(tuple(int(across_slices) if a == axis else int(in_plane) for a in range(3)))


def factors_for_input(spacing_ijk) -> tuple[int, int]:
    """The panel's (in-plane, across-slices) factors for a newly selected input of
    ``spacing_ijk`` (mm): those of :func:`ctsr.grids.suggested_scale` (x2 everywhere; for thick
    slices x2 or x4 across them, and x2 in-plane only where the pixels are coarse)."""
    scale, axis = suggested_scale(spacing_ijk), slice_axis_of_spacing(spacing_ijk)
    return scale[(axis + 1) % 3], scale[axis]


def resolve_scale(scale, spacing_ijk, through_plane_only: bool = False) -> Scale:
    """The per-axis scale of a job. ``scale`` is what :func:`ctsr.grids.scale_for` takes
    (2, "4", "1x1x4", (1, 1, 4), or "auto": from ``spacing_ijk``); with ``through_plane_only`` a
    single factor applies to the slice axis alone (thick-slice scans), e.g. 4 on a
    0.7 x 0.7 x 5 mm scan -> (1, 1, 4)."""
    parsed = scale_for(scale, spacing_ijk)
    if not through_plane_only:
        return parsed
    if len(set(parsed)) > 1:
        raise UserError(f"with throughPlaneOnly the scale is one factor (e.g. 4), not {format_scale(parsed)}.")
    return panel_scale(1, parsed[0], spacing_ijk)


def output_name(input_name: str, scale: Scale) -> str:
    """The default name of the output node: ``<input>_SRx<scale>`` (``CT_SRx2``, ``CT_SRx1x1x4``)."""
    return f"{input_name}_SRx{format_scale(scale)}"


def engine_device(device: str) -> str:
    """``"auto"``, ``"GPU"``/``"cuda"`` or ``"CPU"`` (any case) -> the engine's device name."""
    try:
        return DEVICES[str(device).strip().lower()]
    except KeyError:
        raise UserError(f"device {device!r} is not one of auto, GPU, CPU.") from None


def build_job(input_path, output_path, scale: Scale, method: str, device: str = "auto",
              seed: int = 0, options: dict | None = None, compress: bool = True,
              uncertainty_path=None) -> dict:
    """The job dict of ``python -m ctsr.worker`` (schema in ``docs/progress-protocol.md``);
    ``uncertainty_path``: where the worker writes the uncertainty volume, if it makes one."""
    job = {"input": str(input_path), "output": str(output_path),
           "scale": format_scale(parse_scale(scale)), "method": method,
           "device": engine_device(device), "seed": check_seed(seed), "compress": bool(compress),
           "options": dict(options or {})}
    if uncertainty_path is not None:
        job["uncertainty_output"] = str(uncertainty_path)
    return job


def uncertainty_options(uncertainty, method: str) -> dict:
    """The job ``options`` for ``uncertainty`` runs (0: none; K >= 2: the voxelwise standard
    deviation over K seeds), checked by the engine's rule
    (:func:`ctsr.upsampling.check_uncertainty_runs`) before any work."""
    from ctsr.upsampling import check_uncertainty_runs

    runs = check_uncertainty_runs(uncertainty, method)
    return {"uncertainty": runs} if runs else {}


def lr_model_options(lr_model, scale: Scale) -> dict:
    """The job ``options`` for an LR model text (empty or None: none, the engine reads or
    estimates it), parsed by the engine for ``scale`` (IJK) before any work: a typo is one
    sentence now, not seconds later in the worker."""
    from ctsr.grids import slice_axis
    from ctsr.lrmodel import LRModel

    if not lr_model:
        return {}
    LRModel.parse(str(lr_model), slice_axis(parse_scale(scale)))
    return {"lr_model": str(lr_model)}


def write_job(job: dict, path) -> Path:
    """Write the job file (UTF-8 JSON); returns its path."""
    path = Path(path)
    path.write_text(json.dumps(job, indent=2), encoding="utf-8")
    return path
