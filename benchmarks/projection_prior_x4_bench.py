"""The internal projection prior at x4: the options, measured against ``P_up`` and the consistent ``P_up``.

At x2 the internal projection prior (:mod:`ctsr.internal_projection_prior`) beats both on every
cell (benchmarks/projection_prior.md); at x4 a pair at x4 is impossible on the shared crops
(a 96^3 crop has a 24^3 LR, 6 voxels after a second x4 degradation), so the NAB-GS presets fall
back to the consistent ``P_up``. This measures the x4 options built from the volume prior's two
levels (:func:`ctsr.internal_prior.plan`: the pair at x2 under the LR model one level down;
:func:`ctsr.lrestimate.lr_model_one_level_down`), a 2D CNN ``f`` trained on ``P_up2 -> y`` as at
x2 (1500 steps, the NAB-GS presets' setting), then:

* ``one level``: ``P_up + f(P_up)`` (the x2 pair's correction applied at x4);
* ``one level, pair without noise``: the same with no noise topping up the pair (the LR model's
  noise estimate reads a coarse input's anatomy as noise: 144 HU on a chest crop made with 10);
* ``two levels, pair without noise``: ``P_up + bicubic(f(P_mid) - P_mid)``, ``P_mid`` the
  projections of the cubic x2 upsampling of ``L`` on the detector binned by 2 (the correction is
  made where ``f`` learned it, then brought to the HR detector).

Per crop of quality_bench.py (chest CTA, abdomen, head; 96^3), LR by ``ctsr.lrmodel.simulate_lr``
at x4 with ``gauss:0.5``, ``gauss:1.5`` and the block mean (``box``) and 10 HU noise, the LR model
estimated (no flags), 72 views; PSNR against the truth's projections over their value range.
Writes benchmarks/projection_prior_x4.{json,md}.

    python benchmarks/projection_prior_x4_bench.py        # ~40 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_report import run_meta, write_report  # noqa: E402
from projection_prior_bench import BLURS, VIEWS, _gain_line, _score, scanned  # noqa: E402
from quality_bench import CASES, _hr  # noqa: E402

SCALE = (4, 4, 4)
STEPS = 1500
TARGETS = ("P_up", "one level", "one level, pair without noise", "two levels, pair without noise")


def cell(hr, lr_cell: str) -> dict:
    """Every x4 target of one LR input, scored against the truth's projections."""
    from ctsr.baselines import upsample_interpolate
    from ctsr.internal_prior import plan
    from ctsr.internal_projection_prior import KERNEL, projection_training_pair
    from ctsr.pipeline import consistent_p_up
    from ctsr.lrmodel import GIVEN
    from ctsr.prior.operators import bicubic
    from ctsr.progress import SilentProgress
    from ctsr.projector import project_hu
    from ctsr.residual_cnn import TrainingSettings, apply_in_tiles, fit_residual_network

    scan = scanned(hr, lr_cell, SCALE)
    lr, model, geometry, lr_geometry, operator = scan.lr, scan.model, scan.geometry, scan.lr_geometry, scan.operator
    truth, p_up, y = scan.truth, scan.p_up, scan.y
    the_plan = plan(lr, SCALE, model)
    middle = upsample_interpolate(lr, the_plan.pair_scale, "cubic")
    p_mid = project_hu(middle.array, geometry.of_coarser_grid(middle, (2, 2, 2)))
    row = {"lr_model": lr_cell, "estimated": str(model), "plan": the_plan.kind, "pair_model": str(the_plan.pair_model),
           "detector": list(geometry.nDetector), "P_up": _score(p_up, truth),
           "consistent P_up": _score(consistent_p_up(p_up, y, operator), truth)}

    def trained(pair_model):
        start = time.monotonic()
        source = projection_training_pair(lr, the_plan.pair_scale, pair_model, lr_geometry, seed=0)
        network = fit_residual_network(source.numpy(), y.numpy(), KERNEL, TrainingSettings(steps=STEPS), 0,
                                       "cpu", SilentProgress(), "projection prior")
        row.setdefault("training_seconds", []).append(round(time.monotonic() - start, 1))
        return lambda p: torch.from_numpy(apply_in_tiles(network, p.numpy(), torch.device("cpu"), SilentProgress(),
                                                         unit=1.0))

    f = trained(the_plan.pair_model)
    row["one level"] = _score(f(p_up), truth)
    f0 = trained(the_plan.pair_model.with_noise(0.0, "none", GIVEN))
    row["one level, pair without noise"] = _score(f0(p_up), truth)
    row["two levels, pair without noise"] = _score(p_up + bicubic((f0(p_mid) - p_mid)[:, None], (2, 2))[:, 0], truth)
    return row


def write(rows: list[dict], meta: dict) -> None:
    columns = ("consistent P_up",) + TARGETS
    lines = [f"Internal projection prior at x4 ({meta['date']}, CPU, {meta['threads']} threads; "
             "`python benchmarks/projection_prior_x4_bench.py`)", "",
             f"Projection domain, x4, {VIEWS} views, 96^3 crops, LR model estimated, pair at x2 under the model one "
             f"level down, {STEPS} steps: PSNR (dB) against the truth's projections.", "",
             "| case | LR made by | estimated | " + " | ".join(columns) + " | training s |", "|---" * (len(columns) + 4) + "|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['lr_model']} | {r['estimated']} | " + " | ".join(f"{r[c]:.2f}" for c in columns)
                     + f" | {' / '.join(map(str, r['training_seconds']))} |")
    for reference in ("consistent P_up", "P_up"):
        lines += ["", f"Gain over `{reference}`: mean, worst cell, cells below:", "",
                  "| target | mean | worst (cell) | cells below |", "|---|---|---|---|"]
        for c in [c for c in TARGETS if c != reference]:
            mean, worst, where, below = _gain_line(rows, c, reference)
            lines.append(f"| {c} | {mean:+.2f} | {worst:+.2f} ({where}) | {below} of {len(rows)} |")
    write_report("projection_prior_x4", {"meta": meta, "rows": rows}, "\n".join(lines), show=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    meta = run_meta(threads=args.threads, views=VIEWS, scale=list(SCALE), steps=STEPS)
    rows = []
    for case in args.cases:
        hr = _hr(case)
        for blur in BLURS:
            rows.append({"case": case, **cell(hr, f"{blur},noise:10")})
            print(json.dumps(rows[-1]), flush=True)
            write(rows, meta)


if __name__ == "__main__":
    main()
