"""Internal + external: does a network pretrained on *other* scans help the internal prior?

Leave one scan out over the three 96^3 crops of quality_bench.py (chest CTA, abdomen, head), x2.
For each held-out scan, the internal prior's :class:`ctsr.residual_cnn.ResidualCNN` is first
trained on the two other scans (whole volumes, never the held-out one) by
:func:`ctsr.external_prior.pretrain` (``ctsr pretrain``: :data:`MODELS_PER_SCAN` random LR
models per scan, ``fast`` under the model estimated from each, ``fast(L) -> HR``) for
``--pretrain-steps`` Adam steps. Then, on each LR input of the held-out crop (LR model
estimated, no flags), four ways to the output, each followed by the consistency step:

* ``scratch 300``: the ``balanced`` preset's internal prior (300 steps from a zero residual);
* ``external``: the pretrained network alone (what transfers from other scans);
* ``external + 100`` / ``external + 300``: the pretrained network fine-tuned on the scan's own
  pair (:func:`ctsr.internal_prior.training_pair`) for 100 / 300 steps.

Scored by ``ctsr.metrics.evaluate`` (PSNR dB / SSIM in the default window). Writes
benchmarks/<out>.{json,md} (``--out``, default external_init). A learning curve takes one
point per run: fewer pretraining steps (``--pretrain-steps``), or one training scan instead of
two (``--train-scans 1``: the first other scan in the order chest, abdomen, head).

    python benchmarks/external_init_bench.py        # ~25 min on 2 cores
    python benchmarks/external_init_bench.py --pretrain-steps 500 --out external_init_500
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_report import run_meta, write_report  # noqa: E402
from quality_bench import CASES, DATA, _hr  # noqa: E402

SCALE = (2, 2, 2)
BLURS = ("gauss:1", "box")
NOISES = (0, 30)
MODELS_PER_SCAN = 4
#: (column, start from the pretrained network, fine-tuning steps on the scan's own pair)
WAYS = (("scratch 300", False, 300), ("external", True, 0), ("external + 100", True, 100),
        ("external + 300", True, 300))


def pretrain(names: list[str], steps: int, seed: int = 0):
    """The network of :func:`ctsr.external_prior.pretrain` (``ctsr pretrain``'s recipe) on the
    whole scans ``names``."""
    from ctsr.external_prior import PretrainSettings
    from ctsr.external_prior import pretrain as pretrain_on
    from ctsr.io import read_volume

    volumes = [read_volume(DATA / CASES[name][0]) for name in names]
    return pretrain_on(volumes, PretrainSettings(steps=steps, models_per_scan=MODELS_PER_SCAN), seed=seed)


def cell(hr, blur: str, noise: int, external) -> dict:
    from ctsr import internal_prior as ip
    from ctsr import residual_cnn as rc
    from ctsr.baselines import upsample_interpolate
    from ctsr.fidelity import enforce_lr_consistency
    from ctsr.lrestimate import resolve_lr_model
    from ctsr.lrmodel import LRModel, simulate_lr
    from ctsr.metrics import evaluate
    from ctsr.progress import SilentProgress

    lr = simulate_lr(hr, SCALE, LRModel.parse(f"{blur},noise:{noise}"), seed=1)
    model = resolve_lr_model(lr, SCALE)
    the_plan = ip.plan(lr, SCALE, model)
    fast = ip.consistent_upsample(lr, SCALE, model)
    score = lambda volume: {k: round(v, 4) for k, v in evaluate(volume, hr).items() if k in ("psnr", "ssim")}
    row = {"lr_model": f"{blur},noise:{noise}", "estimated": str(model),
           "cubic": score(upsample_interpolate(lr, SCALE, "cubic")), "fast": score(fast)}
    source, target = ip.training_pair(lr, the_plan, 0)
    for name, warm, steps in WAYS:
        start = time.monotonic()
        network = external
        if steps:
            network = rc.fit_residual_network(source / rc.HU_SCALE, target / rc.HU_SCALE, (3, 3, 3),
                                              ip.InternalPriorSettings(steps=steps), 0, "cpu", SilentProgress(),
                                              "internal prior", initial=external if warm else None)
        out = enforce_lr_consistency(ip.apply(network, the_plan, fast), lr, SCALE, model)[0]
        row[name] = {**score(out), "seconds": round(time.monotonic() - start, 1)}
    return row


def markdown(rows, meta) -> str:
    columns = ["cubic", "fast"] + [w[0] for w in WAYS]
    lines = [f"Internal + external, leave one scan out ({meta['date']}, CPU, {meta['threads']} threads; "
             f"`python benchmarks/external_init_bench.py {meta['arguments']}`)", "",
             f"x2, 96^3 crops, LR model estimated; pretraining on {meta['train_scans']} other scan(s), {meta['pretrain_steps']} "
             f"steps, {MODELS_PER_SCAN} random LR models per scan. PSNR dB / SSIM; seconds of each way.", "",
             "| held out | LR made by | estimated | pretraining s | " + " | ".join(columns) + " |",
             "|---|---|---|---|" + "---|" * len(columns)]
    for r in rows:
        cells = [f"{r[c]['psnr']:.2f} / {r[c]['ssim']:.4f}" + (f" ({r[c]['seconds']:.0f} s)" if "seconds" in r[c] else "")
                 for c in columns]
        lines.append(f"| {r['case']} | {r['lr_model']} | {r['estimated']} | {r['pretrain_seconds']:.0f} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Gain over `scratch 300` (the `balanced` preset), PSNR dB: mean over the cells (worst cell)", "",
              "| way | mean | worst (cell) |", "|---|---|---|"]
    for name, _, _ in WAYS[1:]:
        gains = [r[name]["psnr"] - r["scratch 300"]["psnr"] for r in rows]
        worst = rows[int(np.argmin(gains))]
        lines.append(f"| {name} | {np.mean(gains):+.2f} | {min(gains):+.2f} ({worst['case']} {worst['lr_model']}) |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--pretrain-steps", type=int, default=2000)
    parser.add_argument("--train-scans", type=int, default=2, choices=(1, 2))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="external_init")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for held in args.cases:
        start = time.monotonic()
        external = pretrain([c for c in CASES if c != held][:args.train_scans], args.pretrain_steps)
        seconds = round(time.monotonic() - start, 1)
        hr = _hr(held)
        for blur in BLURS:
            for noise in NOISES:
                row = {"case": held, "pretrain_seconds": seconds, **cell(hr, blur, noise, external)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    meta = run_meta(threads=args.threads, pretrain_steps=args.pretrain_steps, train_scans=args.train_scans,
                    arguments=" ".join(sys.argv[1:] if argv is None else argv))
    write_report(args.out, {"meta": meta, "rows": rows}, markdown(rows, meta), show=False)


if __name__ == "__main__":
    main()
