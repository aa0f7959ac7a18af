"""NAB-GS benchmark: real CT crops at x2 and x4; trilinear, cubic, prior none (consistent P_up)
and oracle (true HR projections) with PSNR / SSIM, wall time, peak memory, Gaussian count; and
the renderer's CPU throughput (Gaussian-pixel pairs per second, forward and backward).

    python benchmarks/nabgs_bench.py [--size 64] [--scales 2 4] [--iterations 600] [--views 100]

Writes benchmarks/nabgs.json and benchmarks/nabgs.md. Needs ../shared/data (real CTs).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ctsr.baselines import upsample_interpolate
from ctsr.gaussians import SignedGaussians
from ctsr.gaussians.fit import FitSettings, fit_residual
from ctsr.gaussians.footprint import bounding_radius, view_boxes
from ctsr.gaussians.kernels import numba_available, render, select_backend
from ctsr.geometry import ConeGeometry, detector_binning
from ctsr.io import read_volume
from ctsr.lrmodel import simulate_lr
from ctsr.metrics import DEFAULT_WINDOW, evaluate, normalize
from ctsr.geometry import scan_geometries
from ctsr.pipeline import consistent_p_up
from ctsr.projector import forward_project
from ctsr.roi import Roi, crop_to_roi
from ctsr.volume import Volume

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_report import write_report  # noqa: E402

DATA = HERE.parents[1] / "shared" / "data" / "ct"
CROPS = {"chest_cta_1.5mm.nrrd": "chest CTA", "abdomen_pelvis_3mm.nrrd": "abdomen-pelvis"}


def centre_crop(volume: Volume, size: int) -> Volume:
    """The central ``size``^3 voxels of ``volume``, in place in RAS."""
    starts = [max(0, (n - size) // 2) for n in volume.shape_ijk]
    return crop_to_roi(volume, Roi("ijk", tuple(starts), tuple(s + size for s in starts)))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(hr: Volume, scale: int, settings: FitSettings, views: int) -> list[dict]:
    s = (scale,) * 3
    lr = simulate_lr(hr, s)
    rows = []
    for method in ("trilinear", "cubic"):
        t = time.monotonic()
        up = upsample_interpolate(lr, s, method)
        rows.append({"method": method, **_scores(up, hr), "seconds": round(time.monotonic() - t, 2)})
    up = upsample_interpolate(lr, s, "cubic")
    as_tensor = lambda v: torch.from_numpy(normalize(v.array).astype(np.float32))
    v_up = as_tensor(up)
    geometry, lr_geometry = scan_geometries(lr, up, s, views)
    p_up = forward_project(v_up, geometry)
    y = forward_project(as_tensor(lr), lr_geometry)
    targets = {"prior none (consistent P_up)": consistent_p_up(p_up, y, detector_binning(s)),
               "oracle (true HR projections)": forward_project(as_tensor(hr), geometry)}
    low, high = DEFAULT_WINDOW
    for name, target in targets.items():
        t = time.monotonic()
        fit = fit_residual(target, p_up, v_up, geometry, settings, seed=0)
        out = up.with_array(np.maximum(up.array + fit.residual.numpy() * (high - low), low))
        rows.append({"method": name, **_scores(out, hr), "seconds": round(time.monotonic() - t, 1),
                     "gaussians": len(fit.gaussians), "peak_rss_mb": round(peak_rss_mb())})
    return rows


def _scores(out: Volume, truth: Volume) -> dict:
    s = evaluate(out, truth)
    return {"psnr": round(s["psnr"], 2), "ssim": round(s["ssim"], 4)}


def throughput(backend: str, n_gaussians=20000, size=64) -> dict:
    volume = Volume.from_spacing(np.zeros((size,) * 3, np.float32), (1.5,) * 3)
    g = ConeGeometry.from_volume(volume, n_views=100)
    gen = torch.Generator().manual_seed(0)
    sigma = 0.5 * min(g.dVoxel) * (size**3 / n_gaussians) ** (1 / 3)
    G = SignedGaussians.isotropic((torch.rand(n_gaussians, 3, generator=gen) - 0.5) * 1.8, sigma,
                                  torch.randn(n_gaussians, generator=gen) * 0.01)
    for p in G.parameters():
        p.requires_grad_(True)
    views = list(range(0, 100, 25))
    boxes = view_boxes(G.means.detach(), bounding_radius(G), g, views)
    rows, cols = boxes[..., 1] - boxes[..., 0] + 1, boxes[..., 3] - boxes[..., 2] + 1
    pairs = int((rows.clamp(min=0) * cols.clamp(min=0)).sum())
    render(G, g, views[:1], backend=backend)  # warm-up (loads or compiles the numba kernels)
    t = time.monotonic()
    image = render(G, g, views, backend=backend)
    forward = time.monotonic() - t
    t = time.monotonic()
    image.square().sum().backward()
    backward = time.monotonic() - t
    return {"gaussians": n_gaussians, "views": len(views), "detector": list(g.nDetector), "pairs": pairs,
            "forward_pairs_per_s": round(pairs / forward), "backward_pairs_per_s": round(pairs / backward)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--views", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gaussians", type=int, default=20000, help="initial Gaussians (cap: twice that)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = FitSettings.preset("fast", iterations=args.iterations, init_gaussians=args.gaussians,
                                  max_gaussians=2 * args.gaussians)
    results = {"settings": settings.__dict__, "size": args.size, "views": args.views,
               "backend": select_backend("cpu"),
               "throughput": {backend: throughput(backend) for backend in ("torch", "numba")
                              if backend != "numba" or numba_available()}, "cases": []}
    missing = [name for name in CROPS if not (DATA / name).exists()]
    if missing:
        raise SystemExit(f"missing {DATA / missing[0]}: the benchmark needs ../shared/data")
    crops = {label: centre_crop(read_volume(DATA / name), args.size) for name, label in CROPS.items()}
    for scale in args.scales:  # scale by scale, so the x2 rows of every crop come first
        for label, hr in crops.items():
            rows = run_case(hr, scale, settings, args.views)
            results["cases"].append({"volume": label, "scale": scale, "rows": rows})
            print(json.dumps(results["cases"][-1]), flush=True)
            write(results, args)  # after every case, so a long run leaves what it finished


def write(results: dict, args) -> None:
    """benchmarks/nabgs.json and benchmarks/nabgs.md from the cases run so far."""
    lines = [f"Crops {args.size}^3 (centre), {args.views} cone-beam views, fast fit settings with "
             f"{args.iterations} iterations and {args.gaussians} initial Gaussians, {args.threads} CPU "
             f"threads, {results['backend']} renderer.", "", f"Command: python benchmarks/nabgs_bench.py "
             f"--size {args.size} --scales {' '.join(map(str, args.scales))} --iterations {args.iterations} "
             f"--views {args.views} --gaussians {args.gaussians}", "",
             "| volume | scale | method | PSNR dB | SSIM | seconds | Gaussians | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|"]
    for case in results["cases"]:
        for row in case["rows"]:
            lines.append(f"| {case['volume']} | x{case['scale']} | {row['method']} | {row['psnr']} | "
                         f"{row['ssim']} | {row['seconds']} | {row.get('gaussians', '')} | "
                         f"{row.get('peak_rss_mb', '')} |")
    lines += ["", "Renderer throughput on this CPU (Gaussian-pixel pairs per second, forward / backward):"]
    for name, tp in results["throughput"].items():
        lines.append(f"- {name}: {tp['forward_pairs_per_s']:,} / {tp['backward_pairs_per_s']:,} "
                     f"({tp['pairs']:,} pairs)")
    write_report("nabgs", results, "\n".join(lines), show=False)


if __name__ == "__main__":
    main()
