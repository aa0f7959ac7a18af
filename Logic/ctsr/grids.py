"""Scale factors and the LR <-> HR grid relation.

A scale is three integers in **IJK order** ``(sx, sy, sz)`` (the image's x, y, z axes). An LR
voxel summarizes a block of ``sx * sy * sz`` HR voxels and its centre is the centre of that
block, so LR voxel ``i`` sits at HR continuous index ``s * i + (s - 1) / 2`` along each axis.
Hence the HR grid is recovered exactly from the LR grid and the scale (:func:`hr_grid`), and
:func:`lr_grid` is its inverse when each HR size is a multiple of the scale.
"""

from __future__ import annotations

import numpy as np

from .errors import UserError

Scale = tuple[int, int, int]
#: The image axes' names, in IJK order (x = I, y = J, z = K, the slice axis).
AXES = "xyz"

#: Largest scale factor accepted along one axis.
MAX_SCALE = 16


def parse_scale(text) -> Scale:
    """``"2"`` -> (2, 2, 2); ``"1x1x4"`` -> (1, 1, 4) (x, y, z); also accepts ints and tuples."""
    if isinstance(text, (int, np.integer)):
        parts = [int(text)] * 3
    elif isinstance(text, (tuple, list)):
        parts = [int(p) for p in text]
    else:
        try:
            parts = [int(p) for p in str(text).lower().split("x")]
        except ValueError:
            raise UserError(f"scale {text!r} is not a number like 2 or a per-axis scale like 1x1x4.") from None
        if len(parts) == 1:
            parts = parts * 3
    if len(parts) != 3 or any(p < 1 or p > MAX_SCALE for p in parts) or parts == [1, 1, 1]:
        raise UserError(
            f"scale {text!r} is not valid: give one factor from 2 to {MAX_SCALE} (2, 4 and 8 usual) or three "
            f"like 1x1x4, each from 1 to {MAX_SCALE}, at least one above 1."
        )
    return tuple(parts)


#: The scale text that lets each input's spacing choose its scale (:func:`suggested_scale`).
AUTO = "auto"


def scale_for(text, spacing_ijk) -> Scale:
    """``text`` as :func:`parse_scale` reads it, or for :data:`AUTO` the
    :func:`suggested_scale` of an input of ``spacing_ijk`` (mm, IJK)."""
    return suggested_scale(spacing_ijk) if is_auto(text) else parse_scale(text)


def is_auto(text) -> bool:
    """``text`` is :data:`AUTO` (any case, spaces around)."""
    return isinstance(text, str) and text.strip().lower() == AUTO


def check_scale(text) -> None:
    """Refuse (:class:`ctsr.errors.UserError`, one sentence) a scale that is neither
    :data:`AUTO` nor one :func:`parse_scale` takes, before any input is read."""
    if not is_auto(text):
        parse_scale(text)


def format_scale(scale: Scale) -> str:
    """(2, 2, 2) -> "2"; (1, 1, 4) -> "1x1x4"."""
    return str(scale[0]) if len(set(scale)) == 1 else "x".join(str(s) for s in scale)


def hr_grid(lr_ijk_to_ras: np.ndarray, lr_shape_ijk, scale: Scale):
    """The HR grid (IJK-to-RAS, shape IJK) that an LR grid summarizes at ``scale``."""
    s = np.asarray(scale, dtype=np.float64)
    matrix = np.array(lr_ijk_to_ras, dtype=np.float64)
    # HR voxel 0 sits (s - 1) / 2 HR steps before LR voxel 0's centre.
    matrix[:3, 3] = matrix[:3, 3] - matrix[:3, :3] @ ((s - 1) / (2 * s))
    matrix[:3, :3] = matrix[:3, :3] / s
    return matrix, tuple(int(n) * int(k) for n, k in zip(lr_shape_ijk, scale))


def lr_grid(hr_ijk_to_ras: np.ndarray, hr_shape_ijk, scale: Scale):
    """The LR grid (IJK-to-RAS, shape IJK) of an HR grid at ``scale``; trailing HR voxels that
    do not fill a whole block are left out."""
    s = np.asarray(scale, dtype=np.float64)
    matrix = np.array(hr_ijk_to_ras, dtype=np.float64)
    matrix[:3, 3] = matrix[:3, 3] + matrix[:3, :3] @ ((s - 1) / 2)
    matrix[:3, :3] = matrix[:3, :3] * s
    shape = tuple(int(n) // int(k) for n, k in zip(hr_shape_ijk, scale))
    if min(shape) < 2:
        raise UserError(f"a volume of size {tuple(hr_shape_ijk)} is too small to downsample by {format_scale(scale)}.")
    return matrix, shape


def is_through_plane(scale: Scale) -> bool:
    """Only z (the slice axis) is scaled: x and y are already at full resolution (IJK)."""
    return scale[0] == scale[1] == 1 and scale[2] > 1


def is_z_coarsest(scale: Scale) -> bool:
    """x and y share one factor and z's is larger (IJK): through-plane (``1x1x4``), or large
    pixels with thicker slices (``2x2x4``). The in-plane axes then show, at a finer spacing, what
    z would look like without its blur."""
    return scale[0] == scale[1] < scale[2]


def in_plane_then_through_plane(scale: Scale) -> tuple[Scale, Scale] | None:
    """A scale with x and y by one factor above 1 and z by a larger one (``2x2x4``) as its two
    parts, ``((a, a, 1), (1, 1, c))``: in-plane first, then through-plane; None for any other."""
    if scale[0] > 1 and is_z_coarsest(scale):
        return (int(scale[0]), int(scale[1]), 1), (1, 1, int(scale[2]))
    return None


def slice_axis(scale: Scale) -> int | None:
    """The axis across the slices of a job, whatever the scan's orientation (IJK: 0, 1 or 2):
    the one whose factor is larger than the other two's, which are equal: the one scaled axis
    of a through-plane job (``1x1x4``, ``4x1x1``), or the thick axis of large pixels with thick
    slices (``2x2x4``, ``4x2x2``); None for any other scale (``2``, ``4x4x2``, ``2x1x4``)."""
    for axis in range(3):
        others = [scale[a] for a in range(3) if a != axis]
        if others[0] == others[1] < scale[axis]:
            return axis
    return None


#: A scan whose slices are more than this many times farther apart than its finest pixel
#: spacing is a thick-slice scan: a larger scale across the slices than in-plane is what it
#: needs (:func:`suggested_scale`).
THICK_SLICE_RATIO = 2.0


def is_thick_slice(spacing_ijk) -> bool:
    """The largest spacing (mm) is more than :data:`THICK_SLICE_RATIO` times the smallest."""
    spacing = np.asarray(spacing_ijk, dtype=np.float64)
    return bool(spacing.max() > THICK_SLICE_RATIO * spacing.min())


#: In-plane pixels coarser than this (mm) are not yet fine: a thick-slice scan with them is
#: scaled x2 in-plane as well as across its slices (``2x2x4`` for 3 x 3 x 10 mm).
COARSE_PIXEL_MM = 1.5


def suggested_scale(spacing_ijk) -> Scale:
    """The scale of an input of ``spacing_ijk`` (mm, IJK) when none is chosen (``--scale
    auto``; the Slicer panel on selecting it). A scan without thick slices
    (:func:`is_thick_slice`): x2 on every axis. A thick-slice scan: in-plane x2 where its pixels
    are coarser than :data:`COARSE_PIXEL_MM`, else 1 (they are already fine); across its slices
    (:func:`slice_axis_of_spacing`) by 2 or 4, whichever brings them nearer the output's pixel
    spacing: 0.7 x 0.7 x 5 mm -> 1x1x4 (1.25 mm slices), 1 x 1 x 2.5 mm -> 1x1x2,
    3 x 3 x 10 mm -> 2x2x4 (1.5 x 1.5 x 2.5 mm)."""
    if not is_thick_slice(spacing_ijk):
        return (2, 2, 2)
    spacing = np.asarray(spacing_ijk, dtype=np.float64)
    in_plane = 2 if spacing.min() > COARSE_PIXEL_MM else 1
    across = 4 if spacing.max() / (spacing.min() / in_plane) > 2 * np.sqrt(2.0) else 2
    scale = [in_plane] * 3
    scale[slice_axis_of_spacing(spacing)] = across
    return tuple(scale)


def slice_axis_of_spacing(spacing_ijk) -> int:
    """The index axis (0 = I, 1 = J, 2 = K) across the slices: the one with the largest
    spacing (mm); on a tie the later axis (K for an isotropic or in-plane-square scan)."""
    spacing = np.asarray(spacing_ijk, dtype=np.float64)
    largest = spacing.max()
    return int(max(axis for axis in range(3) if spacing[axis] >= largest * (1 - 1e-6)))


def halved(scale: Scale) -> Scale:
    """``scale`` one level down: each scaled axis halved (IJK; an unscaled axis stays 1)."""
    return tuple(max(1, int(s) // 2) for s in scale)
