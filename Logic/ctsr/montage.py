"""PNG montages: three orthogonal mid slices of several volumes, same window, side by side.

Rows are the axial, coronal and sagittal mid planes of the finest volume's grid; columns are the
volumes in the order given. Every volume is first resampled (nearest neighbour) onto the first
finest grid (most voxels), so an LR input shows its real blockiness, and each slice is stretched to square
millimetres. With ``labels``, each column's name is drawn above it and the window below the
picture (Pillow's built-in bitmap font). Written with SimpleITK.
"""

from __future__ import annotations

import re

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


def montage(volumes: list[Volume], window, inset: bool = False, labels: list[str] | None = None) -> np.ndarray:
    """uint8 image: rows = axial, coronal, sagittal (and, with ``inset``, the axial centre
    zoomed x2); columns = ``volumes``, titled by ``labels`` (with the window written below)."""
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
    picture = (255 * np.concatenate(rows, axis=0)[:-_GAP]).round().astype(np.uint8)
    if labels is None:
        return picture
    starts = np.cumsum([0] + [c[0].shape[1] + _GAP for c in columns])[:-1]
    widths = [c[0].shape[1] for c in columns]
    return _annotate(picture, list(zip(starts, widths, labels)), f"window {window[0]:g} to {window[1]:g} HU")


_LINE = 12  # pixels per line of Pillow's built-in font


def _wrapped(text: str, width: int, draw) -> list[str]:
    """``text`` cut into lines no wider than ``width`` pixels: after commas and spaces where it
    can, inside a word that is wider than a line by itself."""
    lines, line = [], ""
    for piece in re.split(r"(?<=[, ])", text):
        for char in piece if draw.textlength(piece.rstrip()) > width else [piece]:
            if line and draw.textlength((line + char).rstrip()) > width:
                lines.append(line.rstrip())
                line = ""
            line += char
    return lines + [line.rstrip()] if line else lines


def _annotate(picture: np.ndarray, titles, footer: str) -> np.ndarray:
    """``picture`` with a title strip above (each ``(x, width, text)`` wrapped to its column's
    width) and ``footer`` below."""
    from PIL import Image, ImageDraw

    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    wrapped = [(x, _wrapped(text, width - 4, measure)) for x, width, text in titles]
    top = _LINE * max(len(lines) for _, lines in wrapped) + 2
    bottom = _LINE + 2
    canvas = Image.new("L", (picture.shape[1], picture.shape[0] + top + bottom), 0)
    canvas.paste(Image.fromarray(picture), (0, top))
    draw = ImageDraw.Draw(canvas)
    for x, lines in wrapped:
        for row, line in enumerate(lines):
            draw.text((int(x) + 2, 1 + row * _LINE), line, fill=255)
    draw.text((2, picture.shape[0] + top + 1), footer, fill=255)
    return np.asarray(canvas, dtype=np.uint8)


def write_montage(path, volumes: list[Volume], window, inset: bool = False, labels: list[str] | None = None) -> None:
    """Write :func:`montage` of ``volumes`` to a PNG file at ``path`` (atomically)."""
    image = sitk.GetImageFromArray(montage(volumes, window, inset, labels))
    write_atomically(path, lambda tmp: sitk.WriteImage(image, str(tmp)))
