"""Projection super-resolution with the diffusion prior vs the baselines, on held-out DRRs.

The held-out volume is chest_cta_1.5mm (never seen in training); the case is the bundled sample,
Resources/SampleData/CTChestCrop.nrrd, a 64^3 crop of it. For each scale (x2, x4): the LR volume
is simulated (ctsr.lrmodel.simulate_lr, the paper's operator), all volumes are clipped to [-1024, 3071] HU and scaled
to [0, 1], and projected with the pipeline's cone-beam geometry (100 views over 180 degrees,
default HR detector; LR detector binned by the scale):
  truth = A_hr(HR volume);  y = A_lr(LR volume);  P_up = A_hr(cubic-upsampled LR volume).
Methods, scored against truth on every `--every`-th view: bicubic of y, P_up, consistent P_up
(A_pinv(y) + P_up - A_pinv(A(P_up))), DDNM (full sampling from noise), DDNM+PAS without init,
DDNM+PAS with init = P_up (range target y, and A(P_up)), each at the PAS thresholds given (a
projection whose prior check fails even at t = 0 keeps its start image: 0 steps).
PSNR: peak = the truth's value range over the evaluated projections; SSIM: 2D SSIM (the
project's ctsr.metrics settings) on projections scaled by the same range, mean over views.
Writes benchmarks/<out>.json and benchmarks/<out>.md (default prior_bench).

    python benchmarks/prior_bench.py [--model DIR] [--every 4] [--steps 20] [--threads 2] [--out NAME]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from ctsr.baselines import upsample_interpolate
from ctsr.geometry import ConeGeometry
from ctsr.io import read_volume
from ctsr.lrmodel import simulate_lr
from ctsr.metrics import psnr, ssim_along_axis
from ctsr.prior import consistent_init, load_prior, upsample_projections
from ctsr.prior.operators import DetectorBinning, bicubic
from ctsr.projector import project_hu
from ctsr.resources import sample_volume_path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_report import machine, write_report  # noqa: E402


def score(estimate: torch.Tensor, truth: torch.Tensor) -> dict:
    t = truth[:, 0].double().numpy()
    e = estimate[:, 0].double().numpy()
    low, span = t.min(), t.max() - t.min()
    a, b = (e - low) / span, (t - low) / span
    return {"psnr": round(psnr(a, b), 3), "ssim": round(ssim_along_axis(a, b, 0), 4)}


def projections(volume, geometry, views) -> torch.Tensor:
    return project_hu(volume.array, geometry, views=views)[:, None]


def run_scale(hr, s: int, prior, args) -> list[dict]:
    lr_volume = simulate_lr(hr, (s, s, s))
    up = upsample_interpolate(lr_volume, (s, s, s), "cubic")
    geometry = ConeGeometry.from_volume(hr, n_views=args.views)
    views = list(range(0, args.views, args.every))
    truth = projections(hr, geometry, views)
    # the LR volume spans the same box (64 is a multiple of s): same scan, coarser voxels and detector
    lr_geometry = replace(geometry.with_detector_binned((s, s)), nVoxel=lr_volume.array.shape,
                          dVoxel=tuple(d * s for d in geometry.dVoxel))
    y = projections(lr_volume, lr_geometry, views)
    p_up = projections(up, geometry, views)
    rows = [
        {"method": "bicubic of y", **score(bicubic(y, (s, s)), truth)},
        {"method": "P_up", **score(p_up, truth)},
        {"method": "consistent P_up", **score(consistent_init(p_up, y, (s, s)), truth)},
    ]
    mismatch = float((DetectorBinning.average((s, s))(p_up) - y).norm() / y.norm())
    runs = [("DDNM (from noise)", dict(pas=False)),
            (f"DDNM+PAS {args.pas_thresholds[0]:g}, no init", dict(pas_threshold=args.pas_thresholds[0]))]
    for threshold in args.pas_thresholds:
        runs += [(f"DDNM+PAS {threshold:g}, init P_up, target y",
                  dict(pas_threshold=threshold, init=p_up, range_target="y")),
                 (f"DDNM+PAS {threshold:g}, init P_up, target A(P_up)",
                  dict(pas_threshold=threshold, init=p_up, range_target="init"))]
    for name, options in runs:
        start = time.process_time(), time.perf_counter()
        result = upsample_projections(prior, y, (s, s), steps=args.steps, eta=args.eta,
                                      generator=torch.Generator().manual_seed(0), **options)
        cpu, wall = time.process_time() - start[0], time.perf_counter() - start[1]
        rows.append({"method": name, **score(result.images, truth),
                     "mean_steps": round(float(result.steps.float().mean()), 2),
                     "cpu_s_per_projection": round(cpu / len(views), 3),
                     "wall_s_per_projection": round(wall / len(views), 3)})
    for row in rows:
        row.update(scale=s, detector=list(geometry.nDetector), views=len(views), a_pup_vs_y=round(mismatch, 4))
    return rows


def markdown(rows: list[dict], args) -> str:
    lines = ["| scale | method | PSNR dB | SSIM | mean DDIM steps | CPU s / projection |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| x{r['scale']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
                     f"{r.get('mean_steps', '')} | {r.get('cpu_s_per_projection', '')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="prior folder (default: the shipped one)")
    parser.add_argument("--views", type=int, default=100)
    parser.add_argument("--every", type=int, default=4, help="evaluate every n-th view")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eta", type=float, default=0.85)
    parser.add_argument("--pas-thresholds", type=float, nargs="+", default=[0.01, 0.03],
                        help="PAS thresholds (fraction of each projection's value range)")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="prior_bench", help="name of the results files in benchmarks/")
    parser.add_argument("--update-card", action="store_true", help="write the table into the model card")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prior = load_prior(args.model)
    hr = read_volume(sample_volume_path())
    rows = []
    for s in args.scales:
        rows += run_scale(hr, s, prior, args)
        print(markdown([r for r in rows if r["scale"] == s], args), flush=True)
    table = markdown(rows, args)
    command = "python benchmarks/prior_bench.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
        if k in ("views", "every", "steps", "eta", "threads"))
    command += " --pas-thresholds " + " ".join(f"{t:g}" for t in args.pas_thresholds)
    command += "" if args.scales == [2, 4] else " --scales " + " ".join(map(str, args.scales))
    command += f" --model {args.model}" if args.model else ""
    command += "" if args.out == "prior_bench" else f" --out {args.out}"
    result = {"model": str(prior.path), "case": "CTChestCrop (64^3 crop of held-out chest_cta_1.5mm)",
              "command": command, "machine": f"{machine()}, {args.threads} torch threads", "rows": rows}
    write_report(args.out, result, f"# Projection prior benchmark\n\n{__doc__.split(chr(10) + chr(10))[1]}\n\n"
                                   f"Model: `{prior.path.name}`. Command: `{command}`\n\n{table}", show=False)
    if args.update_card:
        import json as _json

        from ctsr.prior.card import write_model_card
        from ctsr.prior.model import METADATA_FILE
        meta_path = prior.path / METADATA_FILE
        metadata = _json.loads(meta_path.read_text())
        metadata["quality"] = {"description": "Projection super-resolution on DRRs of the held-out chest "
                               "CT crop (CTChestCrop, 64^3 at 1.5 mm), 25 of 100 cone-beam views.",
                               "table": table, "command": command}
        meta_path.write_text(_json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        write_model_card(prior.path)


if __name__ == "__main__":
    main()
