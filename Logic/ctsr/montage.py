"""PNG montages: three orthogonal mid slices of several volumes, same window, side by side.

Rows are the axial, coronal and sagittal mid planes of the finest volume's grid; columns are the
volumes in the order given. Every volume is first resampled (nearest neighbour) onto the first
finest grid (most voxels), so an LR input shows its real blockiness, and each slice is stretched to square
millimetres. Written with SimpleITK, no plotting library needed.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .io import image_from_volume, write_atomically
from .metrics import normalize
from .volume import Volume

_GAP = 4  # pixels of black between panels


def _on_grid(volume: Volume, reference: Volume) -> np.ndarray:
    if volume.same_grid(reference):
        return volume.array
    resampled = sitk.Resample(image_from_volume(volume), image_from_volume(reference),
                              sitk.Transform(), sitk.sitkNearestNeighbor, -1024.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampled)


def _planes(array: np.ndarray, spacing_ijk) -> list[np.ndarray]:
    """Axial (J x I), coronal (K x I) and sagittal (K x J) mid planes, superior up, square mm."""
    sx, sy, sz = spacing_ijk
    k, j, i = (n // 2 for n in array.shape)
    planes = [(array[k], (sy, sx)), (array[:, j][::-1], (sz, sx)), (array[:, :, i][::-1], (sz, sy))]
    pixel = min(spacing_ijk)
    return [ndimage.zoom(p, (a / pixel, b / pixel), order=0) for p, (a, b) in planes]


def _inset(axial: np.ndarray) -> np.ndarray:
    """The central half of an axial plane, zoomed x2 (nearest) to the plane's size."""
    h, w = axial.shape
    centre = axial[h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2]
    return np.repeat(np.repeat(centre, 2, axis=0), 2, axis=1)


def montage(volumes: list[Volume], window, inset: bool = False) -> np.ndarray:
    """uint8 image: rows = axial, coronal, sagittal (and, with ``inset``, the axial centre
    zoomed x2); columns = ``volumes``."""
    reference = max(volumes, key=lambda v: v.array.size)
    columns = [_planes(normalize(_on_grid(v, reference), window), reference.spacing) for v in volumes]
    if inset:
        columns = [c + [_inset(c[0])] for c in columns]
    rows = []
    for r in range(len(columns[0])):
        panels = [c[r] for c in columns]
        gap = np.zeros((panels[0].shape[0], _GAP))
        rows.append(np.concatenate([x for p in panels for x in (p, gap)][:-1], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, _GAP), (0, width - r.shape[1]))) for r in rows]
    return (255 * np.concatenate(rows, axis=0)[:-_GAP]).round().astype(np.uint8)


def write_montage(path, volumes: list[Volume], window, inset: bool = False) -> None:
    """Write :func:`montage` of ``volumes`` to a PNG file at ``path`` (atomically)."""
    image = sitk.GetImageFromArray(montage(volumes, window, inset))
    write_atomically(path, lambda tmp: sitk.WriteImage(image, str(tmp)))
