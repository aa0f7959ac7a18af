"""How long should the internal prior train? ``balanced`` with another number of Adam steps than its default,
on cells of the degradation matrix, against the default's own numbers in degradation.json.

    python benchmarks/prior_steps_bench.py --steps 1500                       # x2 subset, ~40 min on 2 cores
    python benchmarks/prior_steps_bench.py --steps 300 --scales 1x1x4 --blurs gauss:0.5 gauss:1 gauss:1.5 box --out prior_steps_through_plane

Each cell's LR is made exactly as degradation_bench.py makes it (same crop, LR model and noise
seed), so cubic, ``fast`` and ``balanced`` at the default step count are read from
benchmarks/degradation.json instead of being run again; only ``balanced`` with ``--steps`` runs
(LR model estimated as a user runs it, or given with ``--true-model``); ``--steps`` sets the
steps of the kind that runs (``plane_steps`` through-plane, ``steps`` elsewhere). Writes
benchmarks/OUT.{json,md} (default prior_steps): per scale, the mean and worst gain over cubic
and over the default step count, and the seconds per cell.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_report import run_meta, write_report  # noqa: E402
from degradation_bench import BLURS, NOISES  # noqa: E402
from quality_bench import CASES, _hr, _label  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--scales", nargs="+", default=["2"])
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--blurs", nargs="+", default=["gauss:0.5", "gauss:1.5", "box"], choices=BLURS)
    parser.add_argument("--noises", nargs="+", type=int, default=[0, 30], choices=NOISES)
    parser.add_argument("--true-model", action="store_true", help="give the LR model that made the input")
    parser.add_argument("--out", default="prior_steps", help="name of the JSON and Markdown files under benchmarks/")
    args = parser.parse_args()

    import torch

    from ctsr import pipeline
    from ctsr.grids import is_through_plane, parse_scale
    from ctsr.lrmodel import LRModel, simulate_lr
    from ctsr.metrics import evaluate
    from ctsr.upsampling import upsample

    torch.set_num_threads(2)
    default = pipeline.PRESETS["balanced"]
    default_steps = {}
    reference = "balanced, true model" if args.true_model else "balanced"
    earlier = {(r["case"], r["scale"], r["lr_model"]): r
               for r in json.loads((HERE / "degradation.json").read_text())["rows"]}
    rows = []
    for scale_text in args.scales:
        scale = parse_scale(scale_text)
        field = "plane_steps" if is_through_plane(scale) else "steps"
        default_steps[scale_text] = getattr(default.internal_prior, field)
        pipeline.PRESETS["balanced"] = replace(default, internal_prior=replace(default.internal_prior,
                                                                               **{field: args.steps}))
        for case in args.cases:
            hr = _hr(case)
            for blur in args.blurs:
                for noise in args.noises:
                    true = LRModel.parse(f"{blur},noise:{noise}")
                    before = earlier[(case, scale_text, str(true))]
                    lr = simulate_lr(hr, scale, true, seed=1)
                    start = time.monotonic()
                    result = upsample(lr, scale, "balanced", device="cpu",
                                      lr_model=true if args.true_model else None)
                    scores = evaluate(result.volume, hr)
                    row = {"case": case, "scale": scale_text, "lr_model": str(true),
                           "cubic": before["cubic"], "fast": before["fast"], "default": before[reference],
                           "more_steps": {"psnr": round(scores["psnr"], 3), "ssim": round(scores["ssim"], 4),
                                          "seconds": round(time.monotonic() - start, 1)},
                           "internal_prior": result.provenance.get("internal_prior")}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    meta = run_meta(threads=2, steps=args.steps, default_steps=default_steps, reference=reference)
    defaults = ", ".join(f"{_label(s)} {n}" for s, n in default_steps.items())
    lines = [f"`balanced` with {args.steps} internal-prior steps against its default ({defaults}) "
             f"({meta['date']}, CPU, 2 threads; `python benchmarks/prior_steps_bench.py "
             f"{shlex.join(sys.argv[1:])}`). "
             f"LR model {'given' if args.true_model else 'estimated'}; "
             f"LR made as in degradation.json (blurs {', '.join(args.blurs)}; noise {', '.join(map(str, args.noises))} HU).",
             "", f"| scale | cells | gain over cubic, default (worst) | gain over cubic, {args.steps} steps (worst) "
             f"| {args.steps} steps over default, PSNR (worst) | SSIM (worst) | s per cell, {args.steps} steps |",
             "|---|---|---|---|---|---|---|"]
    for scale_text in args.scales:
        cells = [r for r in rows if r["scale"] == scale_text]
        gain = lambda k, m: np.array([r[k][m] - r["cubic"][m] for r in cells])
        more = np.array([r["more_steps"]["psnr"] - r["default"]["psnr"] for r in cells])
        more_ssim = np.array([r["more_steps"]["ssim"] - r["default"]["ssim"] for r in cells])
        lines.append(f"| {_label(scale_text)} | {len(cells)} | {gain('default', 'psnr').mean():+.2f} "
                     f"({gain('default', 'psnr').min():+.2f}) | {gain('more_steps', 'psnr').mean():+.2f} "
                     f"({gain('more_steps', 'psnr').min():+.2f}) | {more.mean():+.2f} ({more.min():+.2f}) | "
                     f"{more_ssim.mean():+.4f} ({more_ssim.min():+.4f}) | "
                     f"{np.mean([r['more_steps']['seconds'] for r in cells]):.0f} |")
    lines += ["", f"| case | scale | LR made by | cubic | default | {args.steps} steps |", "|---|---|---|---|---|---|"]
    cell = lambda s: f"{s['psnr']:.2f} / {s['ssim']:.4f}"
    lines += [f"| {r['case']} | {_label(r['scale'])} | {r['lr_model']} | {cell(r['cubic'])} | "
              f"{cell(r['default'])} | {cell(r['more_steps'])} |" for r in rows]
    write_report(args.out, {"meta": meta, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
