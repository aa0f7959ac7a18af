"""The internal projection prior against ``P_up`` and the consistent ``P_up``, on real CT crops.

For each 96^3 crop of ../shared/data (the cases of quality_bench.py: chest CTA, abdomen, head)
and each LR made at x2 by ``ctsr.lrmodel.simulate_lr`` (blurs ``gauss:0.5``, ``gauss:1.5``,
``box``; white noise 0 and 30 HU), with the LR model estimated from the input (no flags), the
pipeline's scan (``ctsr.geometry.scan_geometries``, 72 views as ``standard``) gives the truth's
projections, ``P_up`` (of the cubic ``V_up``) and ``y``; scored against the truth's
projections (PSNR over their value range):

* ``bicubic y``: ``y`` brought to the HR detector by bicubic interpolation;
* ``P_up`` and ``consistent P_up`` (``A_pinv(y) + P_up - A_pinv(A(P_up))``, ``A`` the LR model's
  detector binning): the target of the NAB-GS presets without a prior;
* ``internal, N steps``: :mod:`ctsr.internal_projection_prior` with N Adam steps, and its
  output forced into ``y``'s range space as the consistent ``P_up`` is.

x4 and through-plane are not in the matrix: at x4 a second degradation of a 96^3 crop leaves 6
voxels per axis, and no shared scan is large enough for a pair (the prior does not run there).

With ``--end-to-end CELL ...`` (e.g. ``chest:box,noise:10``) it also runs ``ctsr.upsampling.upsample``
on those cells with ``cubic``, ``fast``, ``balanced``, ``nabgs`` (NAB-GS on the consistent ``P_up``)
and ``standard`` (NAB-GS on the internal projection prior), scored in the volume, with wall time
and peak RSS. Writes benchmarks/projection_prior.{json,md}; a run of one part (``--skip-projection``,
or no ``--end-to-end``) keeps the other part's rows from the previous run, and end-to-end rows
of other cells are kept too.

    python benchmarks/projection_prior_bench.py                    # ~35 min on 2 cores
    python benchmarks/projection_prior_bench.py --skip-projection --end-to-end chest:box,noise:10
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_report import run_meta, write_report  # noqa: E402
from quality_bench import CASES, _hr  # noqa: E402

BLURS = ("gauss:0.5", "gauss:1.5", "box")
NOISES = (0, 30)
STEPS = (300, 1500)
VIEWS = 72
SCALE = (2, 2, 2)
END_TO_END = ("cubic", "fast", "balanced", "nabgs", "standard")


def _score(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    from ctsr.metrics import psnr

    t = truth.double().numpy()
    low, span = t.min(), t.max() - t.min()
    return round(psnr((estimate.double().numpy() - low) / span, (t - low) / span), 3)


def _gain_line(rows: list[dict], target: str, reference: str) -> tuple[float, float, str, int]:
    """Mean and worst gain (dB) of ``target`` over ``reference`` on ``rows``, the worst cell, and
    how many cells are below."""
    gains = [(r[target] - r[reference], f"{r['case']} {r['lr_model']}") for r in rows]
    worst = min(gains)
    return float(np.mean([g for g, _ in gains])), worst[0], worst[1], sum(g < 0 for g, _ in gains)


def scanned(hr, cell: str, scale=SCALE, views: int = VIEWS):
    """One LR input as the pipeline scans it: ``hr`` degraded by the LR model ``cell`` at ``scale``
    (seed 1), the LR model estimated from it (no flags), the cubic ``V_up``, the scan
    (``ctsr.geometry.scan_geometries``) and the projections of the truth, of ``V_up`` (``P_up``)
    and of the LR (``y``), and ``A`` (``projection_operator``); as attributes of one namespace."""
    from types import SimpleNamespace

    from ctsr.baselines import upsample_interpolate
    from ctsr.lrestimate import resolve_lr_model
    from ctsr.lrmodel import LRModel, simulate_lr
    from ctsr.geometry import scan_geometries
    from ctsr.pipeline import projection_operator
    from ctsr.projector import project_hu

    lr = simulate_lr(hr, scale, LRModel.parse(cell), seed=1)
    model = resolve_lr_model(lr, scale)
    v_up = upsample_interpolate(lr, scale, "cubic")
    geometry, lr_geometry = scan_geometries(lr, v_up, scale, views)
    return SimpleNamespace(lr=lr, model=model, v_up=v_up, geometry=geometry, lr_geometry=lr_geometry,
                           truth=project_hu(hr.array, geometry), p_up=project_hu(v_up.array, geometry),
                           y=project_hu(lr.array, lr_geometry), operator=projection_operator(model, v_up, scale))


def projection_cell(hr, cell: str) -> dict:
    """Every projection-domain target of one LR input, scored against the truth's projections."""
    from ctsr.internal_projection_prior import upsample_projections_internally
    from ctsr.pipeline import consistent_p_up
    from ctsr.prior.operators import bicubic
    from ctsr.residual_cnn import TrainingSettings

    scan = scanned(hr, cell)
    lr, model, geometry, lr_geometry, operator = scan.lr, scan.model, scan.geometry, scan.lr_geometry, scan.operator
    truth, p_up, y = scan.truth, scan.p_up, scan.y
    row = {"lr_model": cell, "estimated": str(model), "detector": list(geometry.nDetector),
           "bicubic y": _score(bicubic(y[:, None], (2, 2))[:, 0], truth), "P_up": _score(p_up, truth),
           "consistent P_up": _score(consistent_p_up(p_up, y, operator), truth)}
    for steps in STEPS:
        start = time.monotonic()
        ours = upsample_projections_internally(lr, SCALE, model, p_up, y, lr_geometry,
                                               TrainingSettings(steps=steps), seed=0)
        row[f"internal, {steps} steps"] = _score(ours, truth)
        row[f"internal, {steps} steps, seconds"] = round(time.monotonic() - start, 1)
        row[f"internal, {steps} steps, consistent"] = _score(consistent_p_up(ours, y, operator), truth)
    return row


def scored_runs(hr, lr, scale, methods, options: dict | None = None) -> dict:
    """``ctsr.upsampling.upsample`` of ``lr`` (HU) at ``scale`` by each of ``methods`` (with the
    keyword arguments ``options[method]``, CPU), scored against ``hr``: ``{method: {psnr, ssim,
    seconds, target, projection prior, gaussians, peak_rss_gb}}`` (paths under the repository
    written relative to it; peak RSS of this process so far)."""
    from ctsr.metrics import evaluate
    from ctsr.upsampling import upsample

    runs = {}
    for method in methods:
        start = time.monotonic()
        result = upsample(lr, scale, method, device="cpu", **(options or {}).get(method, {}))
        scores = evaluate(result.volume, hr)
        runs[method] = {"psnr": round(scores["psnr"], 3), "ssim": round(scores["ssim"], 4),
                        "seconds": round(time.monotonic() - start, 1),
                        "target": result.provenance.get("target", ""),
                        "projection prior": result.provenance.get("projection_prior", "").replace(
                            f"{HERE.parent}/", ""),
                        "gaussians": result.provenance.get("gaussians"),
                        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
    return runs


def end_to_end_cell(hr, cell: str, methods=END_TO_END) -> dict:
    """``methods`` (of :data:`END_TO_END`) on one LR input, scored in the volume."""
    from ctsr.lrmodel import LRModel, simulate_lr

    lr = simulate_lr(hr, SCALE, LRModel.parse(cell), seed=1)
    return {"lr_model": cell, **scored_runs(hr, lr, SCALE, methods)}


def write(rows: list[dict], ends: list[dict], meta: dict) -> None:
    columns = ["bicubic y", "P_up", "consistent P_up"] + [f"internal, {s} steps{c}" for s in STEPS
                                                          for c in ("", ", consistent")]
    lines = [f"Internal projection prior ({meta['date']}, CPU, {meta['threads']} threads; "
             f"`python benchmarks/projection_prior_bench.py {meta.get('arguments', '')}`)", "",
             f"Projection domain, x2, {VIEWS} views, LR model estimated: PSNR (dB) against the truth's "
             "projections; training seconds in the last column.", "",
             "| case | LR made by | estimated | " + " | ".join(columns) + " | seconds (300 / 1500) |",
             "|---" * (len(columns) + 4) + "|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['lr_model']} | {r['estimated']} | "
                     + " | ".join(f"{r[c]:.2f}" for c in columns)
                     + f" | {r['internal, 300 steps, seconds']} / {r['internal, 1500 steps, seconds']} |")
    for reference in ("consistent P_up", "P_up") if rows else ():
        lines += ["", f"Gain over `{reference}`, mean over the cells (worst cell):", "",
                  "| target | mean | worst (cell) |", "|---|---|---|"]
        for c in [c for c in ["P_up"] + columns[3:] if c != reference]:
            mean, worst, where, _ = _gain_line(rows, c, reference)
            lines.append(f"| {c} | {mean:+.2f} | {worst:+.2f} ({where}) |")
    if ends:
        lines += ["", "End to end (x2, LR model estimated; `python benchmarks/projection_prior_bench.py "
                  "--skip-projection --end-to-end CASE:CELL ...`): PSNR dB / SSIM against the truth, seconds, "
                  "peak RSS of the benchmark process so far (GB).", "",
                  "| case | LR made by | " + " | ".join(END_TO_END) + " |", "|---" * (len(END_TO_END) + 2) + "|"]
        for r in ends:
            lines.append(f"| {r['case']} | {r['lr_model']} | " + " | ".join(
                f"{r[m]['psnr']:.2f} / {r[m]['ssim']:.4f}, {r[m]['seconds']:.0f} s, {r[m]['peak_rss_gb']}"
                if m in r else "-" for m in END_TO_END) + " |")
    write_report("projection_prior", {"meta": meta, "projection": rows, "end_to_end": ends}, "\n".join(lines),
                 show=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--end-to-end", nargs="*", default=[], metavar="CASE:CELL")
    parser.add_argument("--methods", nargs="+", default=list(END_TO_END), choices=END_TO_END,
                        help="the end-to-end methods (default: all)")
    parser.add_argument("--skip-projection", action="store_true",
                        help="only the end-to-end cells (the projection rows of the last run are kept)")
    parser.add_argument("--noises", nargs="+", type=int, default=list(NOISES), help="LR noise SDs (HU)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    meta = run_meta(threads=args.threads, views=VIEWS, scale=list(SCALE), arguments=" ".join(sys.argv[1:]))
    # A run of one part keeps the other part's rows from the previous run.
    previous = HERE / "projection_prior.json"
    kept = json.loads(previous.read_text()) if previous.is_file() else {}
    rows = [] if not args.skip_projection else kept.get("projection", [])
    if args.skip_projection:  # the projection table's command is the run that made it
        meta["arguments"] = kept.get("meta", {}).get("arguments", "")
    rerun = [tuple(spec.split(":", 1)) for spec in args.end_to_end]
    ends = [r for r in kept.get("end_to_end", []) if (r["case"], r["lr_model"]) not in rerun]
    if not args.skip_projection:
        for case in args.cases:
            hr = _hr(case)
            for blur in BLURS:
                for noise in args.noises:
                    rows.append({"case": case, **projection_cell(hr, f"{blur},noise:{noise}")})
                    print(json.dumps(rows[-1]), flush=True)
                    write(rows, ends, meta)
    for spec in args.end_to_end:
        case, cell = spec.split(":", 1)
        ends.append({"case": case, **end_to_end_cell(_hr(case), cell, args.methods)})
        print(json.dumps(ends[-1]), flush=True)
        write(rows, ends, meta)


if __name__ == "__main__":
    main()
