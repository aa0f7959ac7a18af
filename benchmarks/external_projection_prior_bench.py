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
Writes benchmarks/<out>.{json,md} (``--out``, default external_projection_prior). The learning
curve: ``--train-scans`` (1: the first other scan in the order chest, abdomen, head) and
``--steps`` take several values, one network per held-out scan and pair of them, and the
Markdown adds one line per pair (gain against training scans and pretraining time).

End to end (``--end-to-end CASE:CELL ...``, e.g. ``abdomen:box,noise:10``): ``ctsr.upsampling.upsample``
on those x4 inputs (the same LR as above) with ``cubic``, ``fast``, ``balanced`` (its pretrained
start is the x2 volume prior without the scan, ``leave_one_out.pretrained_without``) and
``standard`` given the held-out projection prior's folder (``prior=``, as ``--prior DIR``),
scored in the volume with wall time and peak RSS; writes benchmarks/<out>_end_to_end.{json,md}
instead (rows of other cells from the previous run are kept).

    python benchmarks/external_projection_prior_bench.py   # ~35 min on 2 cores, 25 of them pretraining
    python benchmarks/external_projection_prior_bench.py --train-scans 1 2 --steps 1000 3000 \
        --out external_projection_prior_curve               # ~1 hour more
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
from leave_one_out import pretrained_without, projection_prior_without  # noqa: E402
from projection_prior_bench import BLURS, VIEWS, _gain_line, _score, scanned, scored_runs  # noqa: E402
from quality_bench import CASES, _hr  # noqa: E402

SCALE = (4, 4, 4)
COLUMNS = ("consistent P_up", "P_up", "external", "external, checked")
END_TO_END = ("cubic", "fast", "balanced", "standard")


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


def _configurations(rows: list[dict]) -> list[tuple[int, int]]:
    return sorted({(r["train_scans"], r["steps"]) for r in rows})


def end_to_end_cell(case: str, lr_cell: str) -> dict:
    """:data:`END_TO_END` on one x4 input (``scanned``'s LR: seed 1), scored in the volume."""
    from ctsr.lrmodel import LRModel, simulate_lr

    hr = _hr(case)
    lr = simulate_lr(hr, SCALE, LRModel.parse(lr_cell), seed=1)
    options = {"balanced": {"pretrained": str(pretrained_without(case))},
               "standard": {"prior": str(projection_prior_without(case))}}
    return {"case": case, "lr_model": lr_cell, **scored_runs(hr, lr, SCALE, END_TO_END, options)}


def write_end_to_end(rows: list[dict], meta: dict, out: str) -> None:
    lines = [f"External projection prior end to end at x4 ({meta['date']}, CPU, {meta['threads']} threads; "
             f"`python benchmarks/external_projection_prior_bench.py {meta['arguments']}`)", "",
             "96^3 crops, LR model estimated; `balanced` starts from the x2 volume prior pretrained without the "
             "scan, `standard` is given the x4 projection prior pretrained without it (NAB-GS on its `Y` where its "
             "self-check passes; where it declines NAB-GS is skipped and the volume is `fast`'s). PSNR dB / SSIM "
             "against the truth, seconds, peak RSS of the benchmark process so far (GB). Each row is from the last run "
             "that named its cell.", "",
             "| case | LR made by | " + " | ".join(END_TO_END) + " | `standard`'s projection prior |",
             "|---" * (len(END_TO_END) + 3) + "|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['lr_model']} | " + " | ".join(
            f"{r[m]['psnr']:.2f} / {r[m]['ssim']:.4f}, {r[m]['seconds']:.0f} s, {r[m]['peak_rss_gb']}"
            for m in END_TO_END) + f" | {r['standard']['projection prior']} |")
    write_report(out, {"meta": meta, "rows": rows}, "\n".join(lines), show=False)


def write(rows: list[dict], meta: dict, out: str) -> None:
    lines = [f"External projection prior at x4 ({meta['date']}, CPU, {meta['threads']} threads; "
             f"`python benchmarks/external_projection_prior_bench.py {meta['arguments']}`)", "",
             f"Projection domain, x4, {VIEWS} views, 96^3 crops, LR model estimated; the network pretrained on "
             "other scans than the one scored (leave one scan out): PSNR (dB) against the truth's projections.", "",
             "| case | scans | steps | LR made by | estimated | " + " | ".join(COLUMNS) + " | self-check dB | seconds |",
             "|---" * (len(COLUMNS) + 7) + "|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['train_scans']} | {r['steps']} | {r['lr_model']} | {r['estimated']} | "
                     + " | ".join(f"{r[c]:.2f}" for c in COLUMNS)
                     + f" | {r['self-check dB']:+.2f} | {r['external seconds']} |")
    configurations = _configurations(rows)
    if len(configurations) > 1:
        lines += ["", "Learning curve: gain over the consistent `P_up`, dB, mean (worst cell; cells below); "
                      "pretraining seconds per network (mean over the held-out scans)", "",
                  "| training scans | steps | pretraining s | external | external, checked |", "|---|---|---|---|---|"]
        for scans, steps in configurations:
            some = [r for r in rows if (r["train_scans"], r["steps"]) == (scans, steps)]
            cells = [_gain_line(some, target, "consistent P_up") for target in ("external", "external, checked")]
            seconds = np.mean([r["pretraining seconds"] for r in some])
            lines.append(f"| {scans} | {steps} | {seconds:.0f} | "
                         + " | ".join(f"{m:+.2f} ({w:+.2f}; {below})" for m, w, _, below in cells) + " |")
    for scans, steps in configurations:
        some = [r for r in rows if (r["train_scans"], r["steps"]) == (scans, steps)]
        for target in ("external", "external, checked"):
            for reference in ("consistent P_up", "P_up"):
                mean, worst, where, below = _gain_line(some, target, reference)
                lines += ["", f"{scans} training scan(s), {steps} steps: gain of `{target}` over `{reference}`: "
                              f"mean {mean:+.2f} dB, worst {worst:+.2f} ({where}), {below} of {len(some)} cells below."]
    write_report(out, {"meta": meta, "rows": rows}, "\n".join(lines), show=False)


def main() -> None:
    from ctsr.external_projection_prior import ProjectionPretrainSettings, load_external_projection_prior

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--noises", nargs="+", type=float, default=[10])
    parser.add_argument("--train-scans", nargs="+", type=int, default=[2], choices=(1, 2))
    parser.add_argument("--steps", nargs="+", type=int, default=[ProjectionPretrainSettings().network.steps])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--end-to-end", nargs="+", metavar="CASE:CELL",
                        help="only these cells, end to end (e.g. abdomen:box,noise:10)")
    parser.add_argument("--out", default="external_projection_prior")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    meta = run_meta(threads=args.threads, views=VIEWS, scale=list(SCALE), arguments=" ".join(sys.argv[1:]))
    if args.end_to_end:
        out = f"{args.out}_end_to_end"
        previous = HERE / f"{out}.json"
        rerun = [tuple(spec.split(":", 1)) for spec in args.end_to_end]
        if any(len(spec) != 2 or spec[0] not in CASES for spec in rerun):
            parser.error(f"--end-to-end takes CASE:CELL with CASE one of {', '.join(CASES)}")
        ends = [r for r in (json.loads(previous.read_text())["rows"] if previous.is_file() else [])
                if (r["case"], r["lr_model"]) not in rerun]
        for case, lr_cell in rerun:
            ends.append(end_to_end_cell(case, lr_cell))
            print(json.dumps(ends[-1]), flush=True)
            write_end_to_end(ends, meta, out)
        return
    rows = []
    for scans in args.train_scans:
        for steps in args.steps:
            for case in args.cases:
                folder = projection_prior_without(case, scans, steps)
                prior = load_external_projection_prior(folder)
                hr = _hr(case)
                for blur in BLURS:
                    for noise in args.noises:
                        rows.append({"case": case, "train_scans": scans, "steps": steps,
                                     "pretraining seconds": prior.config.get("wall_s"),
                                     **cell(hr, f"{blur},noise:{noise:g}", prior)})
                        print(json.dumps(rows[-1]), flush=True)
                        write(rows, meta, args.out)


if __name__ == "__main__":
    main()
