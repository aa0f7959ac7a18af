"""Processing a large volume in overlapping blocks, blended without seams.

The LR input is cut into blocks that overlap by ``overlap`` LR voxels; each block is
super-resolved on its own; the HR blocks are blended with weights that ramp linearly from 0 to 1
across each overlap (and stay 1 at the volume's own borders), so neighbouring blocks fade into
each other instead of meeting at a seam.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable

import numpy as np

from .grids import Scale, hr_grid
from .progress import Progress, SilentProgress
from .volume import Volume


def axis_blocks(n: int, block: int, overlap: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of length ``min(block, n)`` covering ``0..n``, neighbours
    overlapping by at least ``overlap``, spread evenly."""
    if n <= block:
        return [(0, n)]
    count = math.ceil((n - overlap) / (block - overlap))
    starts = [round(i * (n - block) / (count - 1)) for i in range(count)]
    return [(s, s + block) for s in starts]


def _ramp(length: int, lo_ramp: int, hi_ramp: int) -> np.ndarray:
    w = np.ones(length, dtype=np.float32)
    if lo_ramp:
        w[:lo_ramp] = (np.arange(lo_ramp) + 0.5) / lo_ramp
    if hi_ramp:
        w[length - hi_ramp:] = np.minimum(w[length - hi_ramp:], ((np.arange(hi_ramp) + 0.5) / hi_ramp)[::-1])
    return w


def _axis_weights(ranges: list[tuple[int, int]], s: int) -> list[np.ndarray]:
    """Per block along one axis, its HR weights: 1 inside, linear ramps over the overlaps."""
    weights = []
    for position, (a, b) in enumerate(ranges):
        lo = (ranges[position - 1][1] - a) * s if position > 0 else 0
        hi = (b - ranges[position + 1][0]) * s if position + 1 < len(ranges) else 0
        weights.append(_ramp((b - a) * s, lo, hi))
    return weights


def upsample_in_blocks(lr: Volume, scale: Scale, upsample_block: Callable[[Volume, Progress], Volume],
                       block_shape_kji, overlap: int = 8, progress: Progress | None = None) -> Volume:
    """Apply ``upsample_block(lr_block, progress) -> HR block`` over overlapping LR blocks of at
    most ``block_shape_kji`` voxels and blend the results onto the HR grid of ``lr``.

    The blocks form a grid, so each blend weight is a product of per-axis ramps and so is
    their sum: only the output array is held in memory (4 bytes per HR voxel)."""
    progress = progress or SilentProgress()
    matrix, shape_ijk = hr_grid(lr.ijk_to_ras, lr.shape_ijk, scale)
    scale_kji = scale[::-1]
    ranges = [axis_blocks(n, min(b, n), overlap) for n, b in zip(lr.array.shape, block_shape_kji)]
    weights = [_axis_weights(r, s) for r, s in zip(ranges, scale_kji)]
    totals = []
    for axis, (r, w, s) in enumerate(zip(ranges, weights, scale_kji)):
        total = np.zeros(lr.array.shape[axis] * s, dtype=np.float32)
        for (a, b), wa in zip(r, w):
            total[a * s: b * s] += wa
        totals.append(total)
    output = np.zeros(shape_ijk[::-1], dtype=np.float32)
    boxes = list(itertools.product(*[range(len(r)) for r in ranges]))
    for index, box in enumerate(boxes):
        span = [ranges[axis][n] for axis, n in enumerate(box)]
        piece_matrix = lr.ijk_to_ras.copy()
        piece_matrix[:3, 3] = (lr.ijk_to_ras @ np.array([span[2][0], span[1][0], span[0][0], 1.0]))[:3]
        piece = Volume(lr.array[tuple(slice(a, b) for a, b in span)], piece_matrix)
        hr_piece = upsample_block(piece, progress.span(index / len(boxes), (index + 1) / len(boxes)))
        w = np.ones((1, 1, 1), dtype=np.float32)
        for axis, n in enumerate(box):
            shape = [1, 1, 1]
            shape[axis] = -1
            (a, b), s = span[axis], scale_kji[axis]
            w = w * (weights[axis][n] / totals[axis][a * s: b * s]).reshape(shape)
        output[tuple(slice(a * s, b * s) for (a, b), s in zip(span, scale_kji))] += w * hr_piece.array
    return Volume(output, matrix)
