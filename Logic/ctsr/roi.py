"""Regions of interest: super-resolve only a box of the input.

A box is given in RAS millimetres (``ras:R1,A1,S1,R2,A2,S2``, two opposite corners, as a Slicer
markups ROI's bounds) or in voxel indices of the input (``ijk:I0,J0,K0,I1,J1,K1``, the first
included, the second excluded). :func:`crop_to_roi` cuts the input to the voxels the box
touches, with the geometry moved so that the crop stays in place in RAS; the output of a
cropped input then covers that box at the new resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import UserError
from .volume import Volume


@dataclass(frozen=True)
class Roi:
    """An axis-aligned box: ``space`` "ras" (mm) or "ijk" (voxel indices), corners ``low``, ``high``."""

    space: str
    low: tuple[float, float, float]
    high: tuple[float, float, float]

    @classmethod
    def parse(cls, text: str) -> "Roi":
        """``"ras:R1,A1,S1,R2,A2,S2"`` or ``"ijk:I0,J0,K0,I1,J1,K1"``."""
        space, _, numbers = str(text).partition(":")
        try:
            values = [float(v) for v in numbers.split(",")]
        except ValueError:
            values = []
        if space not in ("ras", "ijk") or len(values) != 6:
            raise UserError(f"ROI {text!r} is not of the form ras:R1,A1,S1,R2,A2,S2 or ijk:I0,J0,K0,I1,J1,K1.")
        a, b = np.array(values[:3]), np.array(values[3:])
        return cls(space, tuple(np.minimum(a, b).tolist()), tuple(np.maximum(a, b).tolist()))

    def __str__(self) -> str:
        return f"{self.space}:" + ",".join(f"{v:g}" for v in self.low + self.high)


def roi_voxel_box(volume: Volume, roi: Roi) -> tuple[np.ndarray, np.ndarray]:
    """IJK index range ``[start, stop)`` of the voxels of ``volume`` that ``roi`` touches."""
    if roi.space == "ijk":
        start, stop = np.floor(roi.low).astype(int), np.ceil(roi.high).astype(int)
    else:
        corners = np.array([[x, y, z, 1.0] for x in (roi.low[0], roi.high[0])
                            for y in (roi.low[1], roi.high[1]) for z in (roi.low[2], roi.high[2])])
        ijk = (np.linalg.inv(volume.ijk_to_ras) @ corners.T)[:3].T
        start, stop = np.floor(ijk.min(axis=0) + 0.5).astype(int), np.floor(ijk.max(axis=0) + 0.5).astype(int) + 1
    size = np.array(volume.shape_ijk)
    start, stop = np.clip(start, 0, size), np.clip(stop, 0, size)
    if np.any(stop - start < 2):
        raise UserError(f"the ROI {roi} covers less than 2 voxels of the input along some axis "
                        f"(or lies outside it).")
    return start, stop


def crop_to_roi(volume: Volume, roi: Roi) -> Volume:
    """The part of ``volume`` inside ``roi``, in place in RAS."""
    start, stop = roi_voxel_box(volume, roi)
    array = volume.array[start[2]:stop[2], start[1]:stop[1], start[0]:stop[0]]
    matrix = volume.ijk_to_ras.copy()
    matrix[:3, 3] = (volume.ijk_to_ras @ np.append(start, 1.0))[:3]
    return Volume(array, matrix)
