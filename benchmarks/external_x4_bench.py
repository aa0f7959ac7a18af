"""Does a volume network pretrained at x4 on *other* scans help where the scan cannot teach itself?

At x4 the internal prior needs an LR of 32 voxels per axis (its two levels estimate the blur at
x2 on the input); the 96^3 crops of quality_bench.py give 24^3, so ``balanced`` is ``fast``
there (benchmarks/degradation.md). This measures the one thing that could still run: a
:class:`ctsr.residual_cnn.ResidualCNN` pretrained by :func:`ctsr.external_prior.pretrain`
at scale 4x4x4 (``ctsr pretrain``'s recipe otherwise: 2000 steps, 4 random LR models per scan,
``fast(L) -> HR``) on the two *other* scans, leave one scan out, applied alone to ``fast``'s
result and made consistent with the input (``fast + f``), against ``fast`` and cubic, LR model
estimated (no flags), blurs gauss 0.5 / 1 / 1.5 and box, noise 0 and 30 HU.

Writes benchmarks/external_x4.{json,md}; the networks are kept in benchmarks/_work/
(leave_one_out.py).

    python benchmarks/external_x4_bench.py      # ~10 min on 2 cores (pretraining), ~2 min after
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from leave_one_out import pretrained_without  # noqa: E402
from bench_report import run_meta, write_report  # noqa: E402
from quality_bench import CASES, _hr, require_data  # noqa: E402

SCALE = (4, 4, 4)
BLURS = ("gauss:0.5", "gauss:1", "gauss:1.5", "box")
NOISES = (0, 30)


def cell(hr, blur: str, noise: int, external) -> dict:
    from ctsr.baselines import upsample_interpolate
    from ctsr.fidelity import enforce_lr_consistency
    from ctsr.internal_prior import consistent_upsample
    from ctsr.residual_cnn import apply_in_tiles
    from ctsr.lrestimate import resolve_lr_model
    from ctsr.lrmodel import LRModel, simulate_lr
    from ctsr.metrics import evaluate
    from ctsr.progress import SilentProgress

    lr = simulate_lr(hr, SCALE, LRModel.parse(f"{blur},noise:{noise}"), seed=1)
    model = resolve_lr_model(lr, SCALE)
    fast = consistent_upsample(lr, SCALE, model)
    added = fast.with_array(apply_in_tiles(external.network, fast.array, torch.device("cpu"), SilentProgress()))
    alone, _ = enforce_lr_consistency(added, lr, SCALE, model)
    row = {"lr_model": f"{blur},noise:{noise}", "estimated": str(model)}
    for name, volume in (("cubic", upsample_interpolate(lr, SCALE, "cubic")), ("fast", fast),
                         ("fast + external", alone)):
        scores = evaluate(volume, hr)
        row[name] = {"psnr": round(scores["psnr"], 3), "ssim": round(scores["ssim"], 4)}
    return row


def markdown(rows, meta) -> str:
    columns = ("cubic", "fast", "fast + external")
    lines = [f"External x4 network alone, leave one scan out ({meta['date']}, CPU, {meta['threads']} threads; "
             "`python benchmarks/external_x4_bench.py`)", "",
             "x4, 96^3 crops (24^3 LR: no internal prior), LR model estimated. PSNR dB / SSIM.", "",
             "| held out | LR made by | estimated | " + " | ".join(columns) + " |", "|---" * (len(columns) + 3) + "|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['lr_model']} | {r['estimated']} | "
                     + " | ".join(f"{r[c]['psnr']:.2f} / {r[c]['ssim']:.4f}" for c in columns) + " |")
    lines += ["", "`fast + external` over the others, PSNR dB: mean over the cells (worst cell); cells below:", "",
              "| over | mean | worst (cell) | cells below |", "|---|---|---|---|"]
    for reference in ("fast", "cubic"):
        gains = [(r["fast + external"]["psnr"] - r[reference]["psnr"], f"{r['case']} {r['lr_model']}") for r in rows]
        worst = min(gains)
        lines.append(f"| {reference} | {np.mean([g for g, _ in gains]):+.2f} | {worst[0]:+.2f} ({worst[1]}) | "
                     f"{sum(g < 0 for g, _ in gains)} of {len(gains)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    require_data()
    from ctsr.external_prior import load_external_prior

    torch.set_num_threads(2)
    rows = []
    for case in CASES:
        external = load_external_prior(pretrained_without(case, scale=SCALE[0]))
        hr = _hr(case)
        for blur in BLURS:
            for noise in NOISES:
                rows.append({"case": case, **cell(hr, blur, noise, external)})
                print(json.dumps(rows[-1]), flush=True)
    meta = run_meta(threads=2, scale=list(SCALE))
    write_report("external_x4", {"meta": meta, "rows": rows}, markdown(rows, meta))


if __name__ == "__main__":
    main()
