"""Cost of the zero-shot pipeline on a 128^3 HR output at x2: wall time per stage, peak memory,
and PSNR / SSIM against the truth, for NAB-GS settings (fast / standard / quality) on this
machine's CPU threads (or the GPU when one is present).

    python benchmarks/pipeline_cost.py [--size 128] [--fit fast standard] [--views 72] [--threads 2]

A run keeps, in its output, the rows of the other fit settings from an earlier run with the
same size, views and device.
The input is the central ``size``^3 crop of the chest CTA in ../shared/data, degraded to LR by
:func:`ctsr.lrmodel.simulate_lr` (the paper's operator); the pipeline runs with no prior (the target is the consistent
``P_up``, as in the ``standard`` preset), so the time is that of projecting, fitting and
voxelizing. Writes benchmarks/pipeline_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import resource
from pathlib import Path

import torch
from bench_report import machine, write_report
from nabgs_bench import DATA, centre_crop

from ctsr.baselines import upsample_interpolate
from ctsr.gaussians.fit import FitSettings
from ctsr.io import read_volume
from ctsr.lrmodel import PAPER, simulate_lr
from ctsr.metrics import evaluate
from ctsr.pipeline import Preset, super_resolve
from ctsr.progress import CallbackProgress, StageClock

HERE = Path(__file__).resolve().parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="HR crop side in voxels")
    parser.add_argument("--fit", nargs="+", default=["fast", "standard"], choices=["fast", "standard", "quality"])
    parser.add_argument("--views", type=int, default=72)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hr = centre_crop(read_volume(DATA / "chest_cta_1.5mm.nrrd"), args.size)
    lr = simulate_lr(hr, (2, 2, 2))
    device = "GPU: " + torch.cuda.get_device_name() if torch.cuda.is_available() else \
        f"CPU ({machine()}, {args.threads} threads)"
    cubic = evaluate(upsample_interpolate(lr, (2, 2, 2), "cubic"), hr)
    rows = []
    for name in args.fit:
        settings = FitSettings.preset(name)
        preset = Preset(f"{name} fit", n_views=args.views, prior_steps=0, fit=settings, consistency=True)
        clock = StageClock()
        out, info = super_resolve(lr, (2, 2, 2), preset, PAPER, progress=CallbackProgress(clock))
        total = clock.total()
        scores = evaluate(out, hr)
        rows.append({"fit": name, "iterations": settings.iterations, "gaussians": info["gaussians"],
                     "backend": info["render_backend"], "seconds": total, "stages": clock.seconds,
                     "psnr": round(scores["psnr"], 2), "ssim": round(scores["ssim"], 4),
                     "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)})
        print(json.dumps(rows[-1]), flush=True)
    result = {"size": args.size, "scale": 2, "views": args.views, "device": device,
              "cubic": {"psnr": round(cubic["psnr"], 2), "ssim": round(cubic["ssim"], 4)}, "rows": rows}
    path = HERE / "pipeline_cost.json"
    if path.exists():  # keep the rows of other fit settings measured in the same conditions
        earlier = json.loads(path.read_text())
        if all(earlier.get(k) == result[k] for k in ("size", "views", "device")):
            done = {r["fit"] for r in rows}
            rows[:0] = [r for r in earlier["rows"] if r["fit"] not in done]
    lines = [f"# Pipeline cost: {args.size}^3 HR output at x2 ({device})", "",
             f"Command: `python benchmarks/pipeline_cost.py --size {args.size} --fit {' '.join(r['fit'] for r in rows)} "
             f"--views {args.views} --threads {args.threads}`. Chest CTA crop; no prior (target = "
             f"consistent P_up); {args.views} views; final consistency step on. Cubic: "
             f"{result['cubic']['psnr']} dB / {result['cubic']['ssim']}.", "",
             "| fit settings | iterations | Gaussians | renderer | total s | project s | NAB-GS s | consistency s "
             "| PSNR dB | SSIM | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["stages"]
        lines.append(f"| {r['fit']} | {r['iterations']} | {r['gaussians']} | {r['backend']} | {r['seconds']} | "
                     f"{s.get('project', 0)} | {s.get('nabgs', 0)} | {s.get('consistency', 0)} | {r['psnr']} | "
                     f"{r['ssim']} | {r['peak_rss_mb']} |")
    write_report("pipeline_cost", result, "\n".join(lines))


if __name__ == "__main__":
    main()
