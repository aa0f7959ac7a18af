"""What choosing the blur costs: ``fast`` at x2 given each candidate blur, on every x2 input of
the degradation matrix and of its ``--foreign`` makers, against cubic.

The cost of a wrong blur estimate is not symmetric, and :data:`ctsr.lrestimate.TOO_WIDE_WEIGHT`
rests on this table: a candidate one member wider than the blur that made the input (``gauss:1``
for ``gauss:0.5`` or the block mean, ``gauss:1.5`` for ``gauss:1``) makes the consistency step
deconvolve noise and aliasing, one member narrower only gives up part of the gain. The noise SD
is the estimated one (as a user runs it); only the blur is given. Crops of quality_bench.py
(96^3), LR seed 1. Writes benchmarks/blur_choice.{json,md}.

    python benchmarks/blur_choice_bench.py      # ~15 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import foreign_lr  # noqa: E402
from bench_report import run_meta, write_report  # noqa: E402
from degradation_bench import BLURS, NOISES, make_lr  # noqa: E402
from quality_bench import CASES, _hr, require_data  # noqa: E402

SCALE = (2, 2, 2)
CANDIDATES = ("gauss:0.5", "box", "gauss:0.75", "gauss:1", "gauss:1.25", "gauss:1.5")
#: For each blur of the matrix: the candidate one member wider and one member narrower in the
#: estimator's family (``gauss:0.5 / 1 / 1.5 / 2`` and ``box``; ``box`` and ``gauss:0.5`` are
#: both of SD about 0.5 HR voxels at x2).
ONE_WIDER = {"gauss:0.5": "gauss:1", "box": "gauss:1", "gauss:1": "gauss:1.5"}
ONE_NARROWER = {"gauss:1": "box", "gauss:1.5": "gauss:1"}


def cells() -> list[tuple[str, object]]:
    """(blur, noise) of every x2 input: the matrix's, then the foreign makers'."""
    return ([(b, n) for b in BLURS for n in NOISES]
            + [(b, n) for b in foreign_lr.BLURS for n in foreign_lr.NOISES])


def run_cell(hr, blur: str, noise) -> dict:
    """Cubic and ``fast`` given each of :data:`CANDIDATES` (noise estimated) on one input."""
    from ctsr.lrestimate import resolve_lr_model
    from ctsr.lrmodel import LRModel
    from ctsr.metrics import evaluate
    from ctsr.upsampling import upsample

    lr, _ = make_lr(hr, SCALE, blur, noise)
    noise_hu = resolve_lr_model(lr, SCALE).noise_hu
    cubic = evaluate(upsample(lr, SCALE, "cubic").volume, hr)
    row = {"cell": f"{blur},{noise}", "noise": noise_hu, "cubic": [cubic["psnr"], cubic["ssim"]]}
    for candidate in CANDIDATES:
        result = upsample(lr, SCALE, "fast", lr_model=LRModel.parse(f"{candidate},noise:{noise_hu}"), device="cpu")
        scores = evaluate(result.volume, hr)
        row[candidate] = [round(scores["psnr"] - cubic["psnr"], 3), round(scores["ssim"] - cubic["ssim"], 4)]
    return row


def write(rows: list[dict], meta: dict) -> None:
    lines = [f"What choosing the blur costs ({meta['date']}, CPU, 2 threads; `python benchmarks/blur_choice_bench.py`)",
             "", "x2, `fast` given each blur (noise SD estimated); PSNR gain over cubic, dB.", "",
             "| case | LR made by | noise estimate HU | " + " | ".join(CANDIDATES) + " |",
             "|---" * (len(CANDIDATES) + 3) + "|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['cell']} | {r['noise']:.1f} | "
                     + " | ".join(f"{r[c][0]:+.2f}" for c in CANDIDATES) + " |")
    made = [(r, r["cell"].split(",")[0]) for r in rows]  # each row with the blur that made its LR
    wider = [r[ONE_WIDER[blur]][0] for r, blur in made if blur in ONE_WIDER]
    narrower_gain = [r[ONE_NARROWER[blur]][0] for r, blur in made if blur in ONE_NARROWER]
    narrower = [r[ONE_NARROWER[blur]][0] - r[blur][0] for r, blur in made if blur in ONE_NARROWER]
    lines += ["", f"One member too wide ({len(wider)} inputs): gain over cubic {min(wider):+.2f} to "
                  f"{max(wider):+.2f} dB, {sum(g < 0 for g in wider)} below cubic.",
              f"One member too narrow ({len(narrower)} inputs): {min(narrower):+.2f} to {max(narrower):+.2f} dB "
              f"against the right member, gain over cubic {min(narrower_gain):+.2f} at worst."]
    write_report("blur_choice", {"meta": meta, "rows": rows}, "\n".join(lines), show=False)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    require_data()
    import torch

    torch.set_num_threads(2)
    rows = []
    meta = run_meta(threads=2, scale=list(SCALE), candidates=CANDIDATES)
    for case in CASES:
        hr = _hr(case)
        for blur, noise in cells():
            rows.append({"case": case, **run_cell(hr, blur, noise)})
            print(json.dumps(rows[-1]), flush=True)
            write(rows, meta)


if __name__ == "__main__":
    main()
