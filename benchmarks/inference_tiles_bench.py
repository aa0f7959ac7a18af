"""The internal prior's inference in tiles (``ctsr.residual_cnn.apply_in_tiles``) against the
slabs of whole slices it replaced, on this machine's CPU (2 threads).

    python benchmarks/inference_tiles_bench.py       # ~2 min on 2 cores

The same 3D network (``balanced``'s width and depth, halo 6), the same random volume, both
schemes in one process, alternating, best of two runs each; the results must agree exactly.
The slab scheme (each slab a few whole slices plus 6 on either side) is kept here only as the
baseline: on wide slices it computes each kept slice many times. Writes
benchmarks/inference_tiles.{json,md}.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "Logic"))
sys.path.insert(0, str(HERE))

from bench_report import run_meta, write_report  # noqa: E402

#: KJI shapes: a 128^3 output, x2 of a 24-slice 256 x 256 crop, and 16 slices of a 1024 x 1024
#: output (x2 of a 512 x 512 CT).
SHAPES = ((128, 128, 128), (48, 512, 512), (16, 1024, 1024))
#: Output voxels per slab of the replaced scheme.
SLAB_VOXELS = 2_000_000


def slabs(network, array, unit):
    """The replaced scheme: slabs of whole slices along K, each with the network's K halo."""
    import numpy as np
    import torch

    out = np.empty_like(array)
    n, halo = array.shape[0], network.halo[0]
    depth = max(1, SLAB_VOXELS // (array.shape[1] * array.shape[2]))
    with torch.no_grad():
        for start in range(0, n, depth):
            stop = min(n, start + depth)
            low, high = max(0, start - halo), min(n, stop + halo)
            y = network(torch.from_numpy(array[low:high] / unit)[None, None])[0, 0].numpy() * unit
            out[start:stop] = array[start:stop] + y[start - low:stop - low]
    return out


def main() -> None:
    import numpy as np
    import torch

    from ctsr import residual_cnn as rc
    from ctsr.internal_prior import InternalPriorSettings
    from ctsr.progress import SilentProgress

    torch.set_num_threads(2)
    torch.manual_seed(0)
    settings = InternalPriorSettings()
    network = rc.ResidualCNN(settings.channels, settings.layers, (3, 3, 3)).eval()
    torch.nn.init.normal_(network.body[-1].weight, std=0.01)
    rows = []
    for shape in SHAPES:
        array = np.random.default_rng(0).normal(0, 100, shape).astype(np.float32)
        seconds = {"slabs": [], "tiles": []}
        for _ in range(2):
            start = time.monotonic()
            old = slabs(network, array, rc.HU_SCALE)
            seconds["slabs"].append(time.monotonic() - start)
            start = time.monotonic()
            new = rc.apply_in_tiles(network, array, torch.device("cpu"), SilentProgress())
            seconds["tiles"].append(time.monotonic() - start)
        tile = rc.tile_shape(shape, network.halo)
        computed = math.prod(rc.computed_extent(n, e, h) for n, e, h in zip(shape, tile, network.halo))
        depth = max(1, SLAB_VOXELS // (shape[1] * shape[2]))
        slab_computed = rc.computed_extent(shape[0], depth, network.halo[0]) * shape[1] * shape[2]
        rows.append({"shape_kji": list(shape), "tile_kji": list(tile),
                     "slabs_s": round(min(seconds["slabs"]), 2), "tiles_s": round(min(seconds["tiles"]), 2),
                     "slabs_computed_per_voxel": round(slab_computed / math.prod(shape), 2),
                     "tiles_computed_per_voxel": round(computed / math.prod(shape), 2),
                     "max_abs_difference_hu": float(np.abs(old - new).max())})
        print(json.dumps(rows[-1]), flush=True)
    meta = run_meta(threads=2)
    lines = [f"Internal prior inference, tiles against slabs of whole slices ({meta['date']}, CPU, 2 threads; "
             "`python benchmarks/inference_tiles_bench.py`)", "",
             "| volume (KJI) | tile (KJI) | slabs s | tiles s | voxels computed per voxel, slabs | tiles | "
             "max difference HU |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {'x'.join(map(str, r['shape_kji']))} | {'x'.join(map(str, r['tile_kji']))} | {r['slabs_s']} | "
                     f"{r['tiles_s']} | {r['slabs_computed_per_voxel']} | {r['tiles_computed_per_voxel']} | "
                     f"{r['max_abs_difference_hu']:g} |")
    write_report("inference_tiles", {"meta": meta, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
