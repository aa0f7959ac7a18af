"""The external projection prior at x4, leave one scan out, against ``P_up`` and the consistent ``P_up``.

At x4 the internal projection prior has no pair (benchmarks/projection_prior_x4.md), so the
NAB-GS presets' target there is the consistent ``P_up`` unless a prior learned elsewhere beats
it. For each crop of quality_bench.py (chest CTA, abdomen, head; 96^3) the x4 network of
:mod:`ctsr.external_projection_prior` is pretrained on the *two other* scans
(``leave_one_out.projection_prior_without``; never on the scan it is scored on), and each LR
made at x4 by ``ctsr.lrmodel.simulate_lr`` (``gauss:0.5``, ``gauss:1.5``, the block mean; 10 HU
noise, and with ``--noises`` more) is scanned as the pipeline does (72 views, LR model
estimated); PSNR against the truth's projections over their value range. ``external, checked``
is what the NAB-GS presets use: the network's output where its self-check on the scan's own
projections one level down (``self_check``) is positive, else ``P_up``.
Writes benchmarks/external_projection_prior.{json,md}.

    python benchmarks/external_projection_prior_bench.py   # ~35 min on 2 cores, 25 of them pretraining
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

from leave_one_out import projection_prior_without  # noqa: E402
from projection_prior_bench import BLURS, VIEWS, _score, scanned  # noqa: E402
from quality_bench import CASES, _hr  # noqa: E402

SCALE = (4, 4, 4)
COLUMNS = ("consistent P_up", "P_up", "external", "external, checked")


def cell(hr, lr_cell: str, prior) -> dict:
    """The x4 targets of one LR input, scored against the truth's projections."""
    from ctsr.external_projection_prior import self_check, upsample_projections_externally
    from ctsr.pipeline import consistent_p_up

    scan = scanned(hr, lr_cell, SCALE)
    start = time.monotonic()
    external = upsample_projections_externally(prior, scan.p_up, scan.y, SCALE)
    check = self_check(prior, scan.lr, SCALE, scan.model, scan.y, scan.lr_geometry)
    row = {"lr_model": lr_cell, "estimated": str(scan.model), "detector": list(scan.geometry.nDetector),
           "P_up": _score(scan.p_up, scan.truth),
           "consistent P_up": _score(consistent_p_up(scan.p_up, scan.y, scan.operator), scan.truth),
           "external": _score(external, scan.truth), "self-check dB": round(check, 3),
           "external seconds": round(time.monotonic() - start, 1)}
    row["external, checked"] = row["external"] if check > 0 else row["P_up"]
    return row


def write(rows: list[dict], meta: dict, out: str) -> None:
    (HERE / f"{out}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [f"External projection prior at x4 ({meta['date']}, CPU, {meta['threads']} threads; "
             f"`python benchmarks/external_projection_prior_bench.py {meta['arguments']}`)", "",
             f"Projection domain, x4, {VIEWS} views, 96^3 crops, LR model estimated; the network pretrained on the "
             "two other scans (leave one scan out): PSNR (dB) against the truth's projections.", "",
             "| case | LR made by | estimated | " + " | ".join(COLUMNS) + " | self-check dB | seconds |",
             "|---" * (len(COLUMNS) + 5) + "|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['lr_model']} | {r['estimated']} | " + " | ".join(f"{r[c]:.2f}" for c in COLUMNS)
                     + f" | {r['self-check dB']:+.2f} | {r['external seconds']} |")
    for target in ("external", "external, checked"):
        for reference in ("consistent P_up", "P_up"):
            gains = [(r[target] - r[reference], f"{r['case']} {r['lr_model']}") for r in rows]
            worst = min(gains)
            lines += ["", f"Gain of `{target}` over `{reference}`: mean {np.mean([g for g, _ in gains]):+.2f} dB, "
                          f"worst {worst[0]:+.2f} ({worst[1]}), {sum(g < 0 for g, _ in gains)} of {len(gains)} cells "
                          "below."]
    (HERE / f"{out}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    from ctsr.external_projection_prior import load_external_projection_prior

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--noises", nargs="+", type=float, default=[10])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="external_projection_prior")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    meta = {"date": time.strftime("%Y-%m-%d"), "threads": args.threads, "views": VIEWS, "scale": list(SCALE),
            "arguments": " ".join(sys.argv[1:])}
    rows = []
    for case in args.cases:
        prior = load_external_projection_prior(projection_prior_without(case))
        hr = _hr(case)
        for blur in BLURS:
            for noise in args.noises:
                rows.append({"case": case, **cell(hr, f"{blur},noise:{noise:g}", prior)})
                print(json.dumps(rows[-1]), flush=True)
                write(rows, meta, args.out)


if __name__ == "__main__":
    main()
