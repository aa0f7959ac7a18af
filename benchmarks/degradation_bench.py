"""Degradation benchmark: the gain over cubic on LR inputs made in ways the method did not choose.

For each real CT crop of ../shared/data (the cases of quality_bench.py: chest CTA, abdomen,
head; 96^3 HR voxels), each scale (x2, x4, through-plane 1x1x4), each blur that makes the LR
(Gaussian sigma 0.5, 1.0, 1.5 HR voxels then Lanczos-3 sampling; the block mean; or those
of ``--blurs``, e.g. widths between the estimate's candidates) and each
noise (0, 10, 30 HU white noise on the LR), the LR is made by ``ctsr.lrmodel.simulate_lr``
and super-resolved by the methods below. Those LR models are the families that
``ctsr.lrmodel`` knows (the estimator looks for them, the priors are pretrained on them);
``--foreign`` makes the LR by operators outside them instead (``foreign_lr.py``: SimpleITK
linear and B-spline resampling without antialiasing, a tent blur; none or in-plane correlated
noise of 20 HU), where no true model exists and the ``true model`` columns are left out:

* ``cubic``, ``lanczos``: the interpolation baselines;
* ``fast``: Lanczos-3 + the consistency step, LR model estimated (as a user runs it, no flags);
* ``balanced``: ``fast`` plus the internal prior (:mod:`ctsr.internal_prior`), LR model estimated;
  at x2 (and at x4 in two levels) the internal prior starts from a network pretrained on the *other* scans
  (``leave_one_out.py``: the shipped network saw every scan scored here);
* ``balanced, from zero`` (x2 and x4, where the pretrained start runs: at x4 in the first of
  two levels): the internal prior learning from zero, as ``balanced`` did before;
* ``fast, true model``: ``fast`` given the LR model that made the input (blur and noise): the
  upper bound of knowing it;
* ``balanced, true model`` (through-plane and 2x2x4, where the z profile is estimated from the
  in-plane axes, and at any scale where ``--methods`` names it): ``balanced`` given that model,
  as with a DICOM series whose SliceThickness gives the z profile: the upper bound of knowing it;
* ``standard`` (``--standard``, slow: minutes per cell on a CPU): NAB-GS + consistency, LR
  model estimated, only on the cells listed by ``--standard-cells``.

Reports PSNR / SSIM (ctsr.metrics), the estimated model beside the true one, the mean gain
and the worst cell of each column per scale. Writes benchmarks/degradation.json,
benchmarks/degradation.md and montages (cubic | fast | balanced | truth, labelled, window written) in
benchmarks/montages/, plus montages of real scans with no truth (:data:`REAL_SCANS`): the thick-slice chest
at through-plane x4, the 3 x 3 x 10 mm chest at 2x2x4.

    python benchmarks/degradation_bench.py                   # the matrix, ~45 min on 2 cores (+10 to pretrain the leave-one-out networks once)
    python benchmarks/degradation_bench.py --cases head --scales 2
    python benchmarks/degradation_bench.py --scales 4 --large --noises 0 30 --out degradation_x4_large  # ~20 min
    python benchmarks/degradation_bench.py --scales 4 --merge   # redo the x4 cells, keep the other rows
    python benchmarks/degradation_bench.py --foreign           # the foreign makers, ~45 min
    python benchmarks/degradation_bench.py --scales 2 1x1x4 --blurs gauss:0.75 gauss:1.25 --noises 0 30 --out degradation_between
    python benchmarks/degradation_bench.py --scales 2 4 --methods balanced --merge  # redo one column (e.g. after retraining the networks)
    python benchmarks/degradation_bench.py --scales 2 4 --methods "balanced, true model" --merge  # add the default given the true model
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import foreign_lr  # noqa: E402
from bench_report import run_meta, write_report  # noqa: E402
from leave_one_out import pretrained_without  # noqa: E402
from quality_bench import CASES, DATA, SCALES, _crop, _hr, _label, require_data  # noqa: E402

#: Not in the default matrix: in-plane x4 (``--scales 4x4x1``; with ``--large``, the head's
#: 48 x 48 in-plane LR is where thick-slice scans keep their detail), x2 in-plane with x4
#: through-plane (``2x2x4``: a scan with both large pixels and thick slices), and the panel's
#: x8 across the slices, alone and with x2 in-plane (``1x1x8``, ``2x2x8``), and with x4 in-plane
#: (``4x4x8``), and the odd factor the command line takes (``3x3x3``, ``1x1x3``, ``2x2x3``).
EXTRA_SCALES = {"4x4x1": (4, 4, 1), "2x2x4": (2, 2, 4), "1x1x8": (1, 1, 8), "2x2x8": (2, 2, 8),
                "3x3x3": (3, 3, 3), "1x1x3": (1, 1, 3), "2x2x3": (2, 2, 3), "4x4x8": (4, 4, 8)}

BLURS = ("gauss:0.5", "gauss:1", "gauss:1.5", "box")
NOISES = (0, 10, 30)
METHODS = ("cubic", "lanczos", "fast", "balanced", "balanced, from zero", "fast, true model", "balanced, true model")
#: What every cell runs even with ``--methods``: every gain is read against them, the estimate
#: is ``fast``'s, and the montage shows them.
ALWAYS_RUN = ("cubic", "fast")
#: Scales where ``balanced, true model`` runs: where the z profile is estimated from the in-plane
#: axes (a DICOM series would give it).
BALANCED_TRUE_SCALES = ((1, 1, 4), (2, 2, 4), (1, 1, 8))
#: Scales where the internal prior starts from the pretrained network (its scale), so where
#: ``balanced, from zero`` runs beside it.
PRETRAINED_SCALES = ((2, 2, 2), (4, 4, 4))
#: ``--large``: crops for x4 (KJI slices) big enough for the internal prior's two levels (the LR
#: model is estimated at x2 on the LR input, which needs 32 LR voxels along an axis of each
#: scale, 16 after the second degradation): a 24^3 LR from a 96^3 crop is smaller than any real x4 input. The
#: abdomen (122 x 101 x 112 voxels) has no such crop.
LARGE_CASES = {
    "chest": ("chest_cta_1.5mm.nrrd", (slice(16, 176), slice(4, 164), slice(36, 196))),
    "head": ("head_1.5mm.nrrd", (slice(2, 106), slice(32, 224), slice(32, 224))),
}
#: Display windows of the montages (HU).
WINDOWS = {"chest": (-1000.0, 500.0), "abdomen": (-160.0, 240.0), "head": (-100.0, 200.0)}


def make_lr(hr, scale, blur: str, noise):
    """The LR input of one cell and the :class:`ctsr.lrmodel.LRModel` that made it (None for
    the makers of ``foreign_lr.py``, which are no such model): ``blur`` one of :data:`BLURS`
    with ``noise`` HU white noise, or one of ``foreign_lr.BLURS`` with ``foreign_lr.NOISES``."""
    from ctsr.lrmodel import LRModel, simulate_lr

    if blur in foreign_lr.BLURS:
        return foreign_lr.foreign_lr(hr, scale, blur, noise, seed=1), None
    true = LRModel.parse(f"{blur},noise:{noise}")
    return simulate_lr(hr, scale, true, seed=1), true


def run_cell(hr, scale, blur: str, noise, standard: bool, pretrained: str, methods=None) -> dict:
    """Every method on one LR input (:func:`make_lr`); returns scores and the models, plus the
    volumes. ``pretrained``: the folder of the network that ``balanced`` starts from (one that
    never saw this scan). The ``true model`` columns run only where a model made the input.
    ``methods``: only these columns, besides :data:`ALWAYS_RUN`; None: all."""
    from ctsr.metrics import evaluate
    from ctsr.upsampling import upsample

    lr, true = make_lr(hr, scale, blur, noise)
    runs = {"cubic": dict(method="cubic"), "lanczos": dict(method="lanczos"), "fast": dict(method="fast"),
            "balanced": dict(method="balanced", pretrained=pretrained)}
    if true is not None:
        runs["fast, true model"] = dict(method="fast", lr_model=true)
    if tuple(scale) in PRETRAINED_SCALES:
        runs["balanced, from zero"] = dict(method="balanced", pretrained="none")
    if true is not None and (tuple(scale) in BALANCED_TRUE_SCALES or "balanced, true model" in (methods or ())):
        runs["balanced, true model"] = dict(method="balanced", lr_model=true, pretrained=pretrained)
    if standard:
        runs["standard"] = dict(method="standard", prior="none")
    if methods is not None:
        runs = {name: options for name, options in runs.items() if name in ALWAYS_RUN or name in methods}
    row, volumes = {"lr_model": str(true) if true else f"{blur},noise:{noise}"}, {}
    for name, options in runs.items():
        start = time.monotonic()
        result = upsample(lr, scale, device="cpu", **options)
        scores = evaluate(result.volume, hr)
        row[name] = {"psnr": round(scores["psnr"], 3), "ssim": round(scores["ssim"], 4),
                     "seconds": round(time.monotonic() - start, 2),
                     "lr_residual_hu": result.provenance["lr_residual"]["rms_hu"],
                     "hu_range": [round(float(result.volume.array.min())), round(float(result.volume.array.max()))]}
        if name == "fast":
            row["estimated"] = result.provenance["lr_model"]["model"]
        volumes[name] = result.volume
    return row, volumes, lr


def summary(rows: list[dict], columns, reference: str = "cubic") -> list[dict]:
    """Per scale and column: mean PSNR / SSIM gain over ``reference`` and the worst cell."""
    out = []
    for scale in dict.fromkeys(r["scale"] for r in rows):
        cells = [r for r in rows if r["scale"] == scale]
        for column in columns:
            have = [r for r in cells if column in r and reference in r]
            if not have:
                continue
            dp = np.array([r[column]["psnr"] - r[reference]["psnr"] for r in have])
            ds = np.array([r[column]["ssim"] - r[reference]["ssim"] for r in have])
            worst = have[int(np.argmin(dp))]
            out.append({"scale": scale, "method": column, "cells": len(have),
                        "mean_psnr_gain": round(float(dp.mean()), 3), "worst_psnr_gain": round(float(dp.min()), 3),
                        "worst_psnr_cell": f"{worst['case']} {worst['lr_model']}",
                        "mean_ssim_gain": round(float(ds.mean()), 4), "worst_ssim_gain": round(float(ds.min()), 4)})
    return out


def _summary_table(summaries) -> list[str]:
    lines = ["| scale | method | cells | mean PSNR gain | worst PSNR gain (cell) | mean SSIM gain | worst SSIM gain |",
             "|---|---|---|---|---|---|---|"]
    for s in summaries:
        lines.append(f"| {_label(s['scale'])} | {s['method']} | {s['cells']} | {s['mean_psnr_gain']:+.2f} | "
                     f"{s['worst_psnr_gain']:+.2f} ({s['worst_psnr_cell']}) | {s['mean_ssim_gain']:+.4f} | "
                     f"{s['worst_ssim_gain']:+.4f} |")
    return lines


def markdown(rows, summaries, over_fast, over_zero, meta) -> str:
    lines = [f"Degradation benchmark ({meta['date']}, CPU, {meta['threads']} threads; "
             f"`python benchmarks/degradation_bench.py {meta.get('arguments', '')}`)", "",
             "Gain over cubic (PSNR dB / SSIM) per scale: the mean over the cells and the worst cell.", "",
             *_summary_table(summaries), "",
             "Gain of the internal prior over `fast` under the same LR model (`balanced` over `fast`, "
             "both estimated; `balanced, true model` over `fast, true model`):", "",
             *_summary_table(over_fast)]
    if over_zero:
        lines += ["", "Gain of the pretrained start (`balanced`, the network pretrained on the other scans and "
                      "fine-tuned) over the internal prior from zero (`balanced, from zero`):", "",
                  *_summary_table(over_zero)]
    lines += ["", "Every cell: PSNR dB / SSIM; the LR model that made the input and the one estimated from it.", "",
              "| case | scale | LR made by | estimated | " + " | ".join(METHODS) + " | standard |",
              "|---|---|---|---|" + "---|" * (len(METHODS) + 1)]
    cell = lambda r, k: f"{r[k]['psnr']:.2f} / {r[k]['ssim']:.4f}" if k in r else "-"
    for r in rows:
        lines.append(f"| {r['case']} | {_label(r['scale'])} | {r['lr_model']} | {r['estimated']} | "
                     + " | ".join(cell(r, k) for k in METHODS + ("standard",)) + " |")
    return "\n".join(lines) + "\n"


#: Real scans with no truth, looked at for ringing and halos at a scale: the file in
#: ../shared/data/ct, its KJI crop (None: whole), and what the input column says.
REAL_SCANS = {
    "1x1x4": ("chest_thick_5mm.nrrd", (slice(0, 48), slice(160, 352), slice(96, 288)), "input 5 mm"),
    "2x2x4": ("chest_lowres_3x3x10mm.nrrd", None, "input 3 x 3 x 10 mm"),
}


def real_scan_montage(scale_name: str) -> Path:
    """The real scan of :data:`REAL_SCANS` at ``scale_name``: input | cubic | fast | balanced."""
    from ctsr.io import read_volume
    from ctsr.montage import write_montage
    from ctsr.upsampling import upsample

    name, crop, label = REAL_SCANS[scale_name]
    scan = read_volume(DATA / name)
    scan = scan if crop is None else _crop(scan, crop)
    fast = upsample(scan, scale_name, "fast", device="cpu")
    balanced = upsample(scan, scale_name, "balanced", device="cpu")
    volumes = [scan, upsample(scan, scale_name, "cubic").volume, fast.volume, balanced.volume]
    path = HERE / "montages" / f"degradation_{name.removesuffix('.nrrd')}_{scale_name}.png"
    write_montage(path, volumes, (-1000.0, 500.0), inset=True,
                  labels=[label, "cubic", f"fast ({fast.provenance['lr_model']['model']})", "balanced"])
    return path


def _merged(before: list[dict], now: list[dict], columns_only: bool = False) -> list[dict]:
    """``before``'s rows in their order, each replaced by ``now``'s row of the same cell (with
    ``columns_only``, updated by it: the columns not run now stay), then ``now``'s other rows."""
    key = lambda r: (r["case"], r["scale"], r["lr_model"])
    fresh = {key(r): r for r in now}
    kept = []
    for row in before:
        new = fresh.pop(key(row), None)
        kept.append(row if new is None else {**row, **new} if columns_only else new)
    return kept + list(fresh.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--scales", nargs="+", default=list(SCALES), choices=list(SCALES) + list(EXTRA_SCALES))
    parser.add_argument("--standard-cells", nargs="*", default=[], metavar="CASE:SCALE:BLUR:NOISE",
                        help="also run the standard preset on these cells (slow), e.g. head:2:box:10")
    parser.add_argument("--noises", nargs="+", type=int, default=list(NOISES), help="LR noise SDs (HU)")
    parser.add_argument("--blurs", nargs="+", default=list(BLURS), metavar="PROFILE",
                        help="LR blurs in --lr-model's grammar (e.g. widths between the estimate's candidates: "
                             "gauss:0.75 gauss:1.25)")
    parser.add_argument("--cells", nargs="+", metavar="CASE:SCALE:BLUR:NOISE",
                        help="run only these cells (e.g. those whose LR-model estimate a change moved; with --merge "
                             "the other rows stay), e.g. head:2:itk-linear:corr:20")
    parser.add_argument("--large", action="store_true",
                        help="the LARGE_CASES crops (160^3 chest, 104 x 192 x 192 head) instead of 96^3")
    parser.add_argument("--foreign", action="store_true",
                        help="LR made by foreign_lr.py's makers (not ctsr.lrmodel's families) instead of BLURS x "
                             "--noises; writes degradation_foreign unless --out says otherwise")
    parser.add_argument("--out")
    parser.add_argument("--methods", nargs="+", choices=[m for m in METHODS if m not in ALWAYS_RUN],
                        help=f"run only these columns (and {' and '.join(ALWAYS_RUN)}, which every gain is read "
                             "against); with --merge the other columns of each row stay")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of OUT.json of the cells not run now (the summaries cover all)")
    parser.add_argument("--drop", nargs="+", choices=[m for m in METHODS if m not in ALWAYS_RUN],
                        help="run nothing: remove these columns from OUT.json's rows of --cases and --scales "
                             "(measured by code that has since changed), rewrite the summaries")
    args = parser.parse_args()
    require_data()
    args.out = args.out or ("degradation_foreign" if args.foreign else "degradation")
    if args.drop and not (HERE / f"{args.out}.json").is_file():
        sys.exit("--drop needs the benchmark's JSON to drop columns from; there is none yet.")
    import torch

    from ctsr.io import read_volume
    from ctsr.montage import write_montage

    torch.set_num_threads(2)
    rows = []
    blurs, noises = (foreign_lr.BLURS, foreign_lr.NOISES) if args.foreign else (tuple(args.blurs), args.noises)
    montage_cell = ("tent", "corr:20") if args.foreign else ("box", 10)
    (HERE / "montages").mkdir(exist_ok=True)
    cases = [c for c in args.cases if c in LARGE_CASES] if args.large else args.cases
    # Only where the internal prior starts from the pretrained network is it made (elsewhere it
    # would be loaded and ignored: "none" gives the same volumes).
    starts_pretrained = any({**SCALES, **EXTRA_SCALES}[s] in PRETRAINED_SCALES for s in args.scales)
    for case in [] if args.drop else cases:
        pretrained = str(pretrained_without(case)) if starts_pretrained else "none"
        hr = _crop(read_volume(DATA / LARGE_CASES[case][0]), LARGE_CASES[case][1]) if args.large else _hr(case)
        for scale_name in args.scales:
            for blur in blurs:
                for noise in noises:
                    cell = f"{case}:{scale_name}:{blur}:{noise}"
                    if args.cells and cell not in args.cells:
                        continue
                    standard = cell in args.standard_cells
                    row, volumes, _ = run_cell(hr, {**SCALES, **EXTRA_SCALES}[scale_name], blur, noise, standard,
                                               pretrained, args.methods)
                    row.update(case=case, scale=scale_name)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    if (blur, noise) == montage_cell and "balanced" in volumes:
                        size = "_large" if args.large else ""
                        name = f"{blur}_{str(noise).replace(':', '')}" if args.foreign else "box_noise10"
                        write_montage(HERE / "montages" / f"degradation_{case}{size}_{_label(scale_name)}_{name}.png",
                                      [volumes["cubic"], volumes["fast"], volumes["balanced"], hr], WINDOWS[case],
                                      inset=True, labels=["cubic", f"fast ({row['estimated']})", "balanced", "truth"])
    if not args.foreign and not args.drop:
        for scale_name in set(args.scales) & set(REAL_SCANS):
            real_scan_montage(scale_name)
    arguments = shlex.join(sys.argv[1:])
    if (args.merge or args.drop) and (HERE / f"{args.out}.json").is_file():
        before = json.loads((HERE / f"{args.out}.json").read_text())
        if args.drop:
            rows = [{k: v for k, v in r.items() if k not in args.drop or r["case"] not in cases
                     or r["scale"] not in args.scales} for r in before["rows"]]
        else:
            rows = _merged(before["rows"], rows, args.methods is not None)
        arguments = f"{before['meta']['arguments']}` then `{arguments}"
    columns = [c for c in METHODS[1:] + ("standard",) if any(c in r for r in rows)]
    summaries = summary(rows, columns)
    over_fast = summary(rows, ["balanced"], reference="fast") + summary(rows, ["balanced, true model"],
                                                                         reference="fast, true model")
    over_zero = summary(rows, ["balanced"], reference="balanced, from zero")
    meta = run_meta(threads=2, blurs=blurs, noises=noises,
                    crops={c: str(LARGE_CASES[c] if args.large else CASES[c]) for c in cases}, arguments=arguments)
    write_report(args.out, {"meta": meta, "summary": summaries, "balanced_over_fast": over_fast,
                            "balanced_over_from_zero": over_zero, "rows": rows},
                 markdown(rows, summaries, over_fast, over_zero, meta))


if __name__ == "__main__":
    main()
