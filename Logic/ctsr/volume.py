"""The ``Volume`` type every part of the engine passes around.

A volume is a float32 array in **KJI order** (``array[k, j, i]``: slice, row, column), exactly
what Slicer's ``slicer.util.arrayFromVolume`` returns, plus a 4x4 **IJK-to-RAS** matrix in
millimetres (Slicer's ``GetIJKToRASMatrix``): column ``c`` of its upper 3x3 block is the RAS
step of one voxel along index axis ``c`` (I, J, K), and its last column is the RAS position of
the centre of voxel (0, 0, 0). Values are whatever the file holds (HU for CT).

Per-axis tuples in this module are in **IJK order** ``(i, j, k)`` = ``(x, y, z)`` of the image,
the order of SimpleITK sizes and spacings; the array shape is the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import UserError

#: Largest number of voxels the engine accepts in one volume (about 4 GB as float32).
MAX_VOXELS = 1024**3


@dataclass(frozen=True)
class Volume:
    """A scalar volume: ``array`` float32 KJI, ``ijk_to_ras`` 4x4 float64 (mm)."""

    array: np.ndarray
    ijk_to_ras: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "array", np.ascontiguousarray(self.array, dtype=np.float32))
        matrix = np.asarray(self.ijk_to_ras, dtype=np.float64)
        if matrix.shape != (4, 4):
            raise ValueError(f"ijk_to_ras must be 4x4, got {matrix.shape}")
        object.__setattr__(self, "ijk_to_ras", matrix)

    @classmethod
    def from_spacing(cls, array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None):
        """Build from IJK-order ``spacing`` (mm), RAS ``origin`` (mm) and a 3x3 RAS ``direction``
        whose columns are the unit directions of the I, J and K axes (identity by default)."""
        direction = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64)
        return cls(array, ijk_to_ras_matrix(spacing, origin, direction))

    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        """Number of voxels along I, J, K (the reverse of ``array.shape``)."""
        return tuple(int(n) for n in self.array.shape[::-1])

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along I, J, K."""
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)

    @property
    def direction(self) -> np.ndarray:
        """3x3 RAS direction; column ``c`` is the unit vector of index axis ``c``."""
        return self.ijk_to_ras[:3, :3] / self.spacing

    @property
    def origin(self) -> np.ndarray:
        """RAS position (mm) of the centre of voxel (0, 0, 0)."""
        return self.ijk_to_ras[:3, 3].copy()

    def with_array(self, array) -> "Volume":
        """The same geometry with other voxel values (same shape)."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ValueError(f"shape {array.shape} differs from {self.array.shape}")
        return Volume(array, self.ijk_to_ras)

    def with_axes_swapped(self, a: int, b: int) -> "Volume":
        """The same voxels in the same places, with index axes ``a`` and ``b`` (IJK: 0, 1, 2)
        exchanged: the array's KJI axes ``2 - a`` and ``2 - b`` and the matrix's columns."""
        matrix = self.ijk_to_ras.copy()
        matrix[:, [a, b]] = matrix[:, [b, a]]
        return Volume(np.swapaxes(self.array, 2 - a, 2 - b), matrix)

    def same_grid(self, other: "Volume", tol: float = 1e-4) -> bool:
        """True if both volumes have the same shape and IJK-to-RAS matrix (to ``tol`` mm)."""
        return self.array.shape == other.array.shape and bool(
            np.allclose(self.ijk_to_ras, other.ijk_to_ras, atol=tol, rtol=0)
        )

    def check_usable(self, what: str = "the input volume") -> None:
        """Raise :class:`UserError` unless this is a finite 3D volume of sane size (a constant
        volume is valid: it super-resolves to the same constant)."""
        check_voxels(self.array, self.ijk_to_ras, what)


def check_voxels(array: np.ndarray, ijk_to_ras: np.ndarray, what: str = "the input volume") -> None:
    """:meth:`Volume.check_usable` for a KJI array of any voxel type (no float32 copy) and its
    4x4 IJK-to-RAS matrix."""
    array = np.asarray(array)
    matrix = np.asarray(ijk_to_ras, dtype=np.float64)
    shape_ijk = tuple(array.shape[::-1])
    if array.ndim != 3:
        raise UserError(f"{what} is {array.ndim}D; a 3D volume is needed.")
    if array.size == 0:
        raise UserError(f"{what} is empty (size {shape_ijk}).")
    if min(array.shape) < 2:
        raise UserError(f"{what} has size {shape_ijk}: it is a 2D image, a 3D volume is needed.")
    if array.size > MAX_VOXELS:
        raise UserError(f"{what} has {array.size:,} voxels, more than the {MAX_VOXELS:,} this tool accepts.")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise UserError(f"{what} contains NaN or infinite values.")
    if not np.isfinite(matrix).all() or abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
        raise UserError(f"{what} has an invalid geometry (zero spacing or degenerate direction).")


def ijk_to_ras_matrix(spacing, origin, direction) -> np.ndarray:
    """4x4 IJK-to-RAS from IJK-order spacing (mm), RAS origin (mm), 3x3 RAS direction."""
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(direction, dtype=np.float64) * np.asarray(spacing, dtype=np.float64)
    matrix[:3, 3] = origin
    return matrix
