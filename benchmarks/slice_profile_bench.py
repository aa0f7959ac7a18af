"""Slice-profile estimate: which in-plane axis, as the reference, reads z's blur.

For each crop of the degradation benchmark (chest CTA, abdomen, head; 96^3 HR voxels) at
through-plane x4 (``1x1x4``) and at ``2x2x4``, the LR is made by each profile of the matrix
(Gaussian sigma 0.5, 1, 1.5 HR voxels, the block mean) and by widths between them (sigma 0.75,
1.25), each with 0, 10 and 30 HU of white noise; :func:`ctsr.lrestimate.through_plane_reading`
reads z's profile with x and with y as the reference; :func:`ctsr.lrestimate.
estimate_through_plane_profile` is what the product uses (through-plane the wider of the two,
at 2x2x4 x's). Counted per rule: the inputs where it is the truth, narrower (deconvolves less) or wider (makes halos; in
SD of the profile). Writes benchmarks/slice_profile.json and .md.

    python benchmarks/slice_profile_bench.py        # about 4 minutes on 2 cores
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_report import run_meta, write_report  # noqa: E402
from quality_bench import CASES, _hr, require_data  # noqa: E402

BLURS = ("gauss:0.5", "gauss:1", "gauss:1.5", "box", "gauss:0.75", "gauss:1.25")
NOISES = (0, 10, 30)
SCALES = {"1x1x4": (1, 1, 4), "2x2x4": (2, 2, 4)}
#: The rules compared: x alone with equal weights (the through-plane estimate before
#: 2026-12-02), each axis alone with a wide miss counting TOO_WIDE_WEIGHT times, the wider of the
#: two, and the estimate.
RULES = ("x, equal weights", "x", "y", "wider of x and y", "estimate")


def readings(lr, scale) -> dict:
    """What each rule of :data:`RULES` reads for z's profile of ``lr`` at ``scale`` (None: too small)."""
    from ctsr.lrestimate import estimate_through_plane_profile, fine_band_noise_hu, through_plane_reading

    noise = fine_band_noise_hu(lr.array)
    z_hr_mm = float(lr.spacing[2]) / scale[2]
    pick = lambda reading: str(reading[0]) if reading else None
    x, y = (through_plane_reading(lr, scale[2], noise, axis) for axis in (0, 1))
    wider = max((r for r in (x, y) if r), key=lambda r: r[0].std_hr_voxels(scale[2], z_hr_mm), default=None)
    estimate, _ = estimate_through_plane_profile(lr, scale, noise)
    return {"x, equal weights": pick(through_plane_reading(lr, scale[2], noise, 0, 1.0)), "x": pick(x), "y": pick(y),
            "wider of x and y": pick(wider), "estimate": str(estimate) if estimate else None}


def main() -> None:
    require_data()
    from ctsr.lrmodel import LRModel, Profile, simulate_lr

    rows = []
    for case in CASES:
        hr = _hr(case)
        for scale_name, scale in SCALES.items():
            z_hr_mm = float(hr.spacing[2])
            for blur in BLURS:
                for noise in NOISES:
                    lr = simulate_lr(hr, scale, LRModel.parse(f"{blur},noise:{noise}"), seed=1)
                    row = {"case": case, "scale": scale_name, "blur": blur, "noise": noise, **readings(lr, scale)}
                    truth = Profile.parse(blur).std_hr_voxels(scale[2], z_hr_mm)
                    for rule in RULES:
                        sd = Profile.parse(row[rule]).std_hr_voxels(scale[2], z_hr_mm) if row[rule] else None
                        row[f"{rule}: vs truth"] = (None if sd is None else "truth" if abs(sd - truth) < 1e-6
                                                    else "narrower" if sd < truth else "wider")
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    counts = {scale: {rule: {k: sum(r[f"{rule}: vs truth"] == k for r in rows if r["scale"] == scale)
                             for k in ("truth", "narrower", "wider")} for rule in RULES} for scale in SCALES}
    meta = run_meta(command="python benchmarks/slice_profile_bench.py")
    lines = [f"Slice-profile estimate ({meta['date']}; `{meta['command']}`): z's profile read with x, with y, "
             "the wider of the two, and the estimate (through-plane the wider, at 2x2x4 x's), against the profile that "
             "made the LR (in SD).", "",
             "| scale | rule | truth | narrower | wider |", "|---|---|---|---|---|"]
    lines += [f"| {scale} | {rule} | {c['truth']} | {c['narrower']} | {c['wider']} |"
              for scale, per_rule in counts.items() for rule, c in per_rule.items()]
    lines += ["", "| case | scale | LR made by | " + " | ".join(RULES) + " |", "|---" * (3 + len(RULES)) + "|"]
    lines += [f"| {r['case']} | {r['scale']} | {r['blur']},noise:{r['noise']} | "
              + " | ".join(f"{r[rule]} ({r[rule + ': vs truth']})" for rule in RULES) + " |" for r in rows]
    write_report("slice_profile", {"meta": meta, "counts": counts, "rows": rows}, "\n".join(lines), show=False)


if __name__ == "__main__":
    main()
