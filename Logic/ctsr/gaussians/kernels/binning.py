"""Tile binning on the device by a torch sort: which Gaussians touch which tile.

A Gaussian's footprint is a box of cells (detector pixels of one view, or voxels); tiles are
fixed blocks of cells. :func:`bin_boxes` lists every (box, tile) overlap and sorts the list by
tile, so each kernel program (one tile) reads its Gaussians as one contiguous run. The sort is
stable and the boxes are listed in increasing item order, so within a tile the Gaussians come in
increasing index: the kernels' per-cell accumulation order is fixed and reproducible.
"""

from __future__ import annotations

import torch

from ..footprint import enumerate_boxes


def bin_boxes(lo, hi, tile, grid):
    """Bin ``P`` boxes into tiles.

    ``lo``, ``hi``: [P, D] inclusive cell bounds of each box (a box with ``hi < lo`` on some
    axis is empty); ``tile``: the tile size in cells per axis (D ints); ``grid``: the number of
    cells per axis (D ints). Returns ``(items, offsets)``: ``items`` [M] (int32) the box index
    of every (box, tile) pair, grouped by tile in row-major tile order and increasing box index
    within a tile, and ``offsets`` [T + 1] (int32, ``T`` = number of tiles) so that tile ``t``
    holds ``items[offsets[t]:offsets[t + 1]]``.
    """
    device = lo.device
    tile_t = torch.as_tensor(tile, device=device, dtype=torch.long)
    tiles = [(int(n) + int(t) - 1) // int(t) for n, t in zip(grid, tile)]
    n_tiles = 1
    for n in tiles:
        n_tiles *= n
    nonempty = (hi >= lo).all(-1)
    box = torch.nonzero(nonempty)[:, 0]
    first = torch.div(lo[box], tile_t, rounding_mode="floor")
    last = torch.div(hi[box], tile_t, rounding_mode="floor")
    which, position = enumerate_boxes(first, last - first + 1)
    key = torch.zeros(len(which), dtype=torch.long, device=device)
    for axis, n in enumerate(tiles):
        key = key * n + position[:, axis]
    key, order = torch.sort(key, stable=True)
    items = box[which[order]].to(torch.int32)
    counts = torch.bincount(key, minlength=n_tiles)
    offsets = torch.zeros(n_tiles + 1, dtype=torch.long, device=device)
    torch.cumsum(counts, 0, out=offsets[1:])
    if int(offsets[-1]) >= 2**31:
        raise RuntimeError("too many Gaussian-tile pairs for int32 offsets; render fewer views at once")
    return items, offsets.to(torch.int32)
