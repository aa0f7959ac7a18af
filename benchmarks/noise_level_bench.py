"""What the noise estimate reads on coarse LR inputs, and what reading it high costs at x4.

On an LR input the finest wavelet band holds aliased anatomy as well as noise, more the coarser
the input: on the x4 LR of the 96^3 chest crop the estimate reads 80 to 145 HU where no noise
was added (``benchmarks/degradation.md``, column "estimated"). Two questions, on the crops of
quality_bench.py:

* **Readings**: the LR at x2, x4 and through-plane x4, made by ``gauss:0.5``, ``gauss:1`` and
  ``box`` with 0 and 30 HU white noise: the estimate (``ctsr.lrestimate.estimate_noise_hu``)
  beside two readings it does not use, the square root of the smallest eigenvalue of the
  covariance of all 3 x 3 x 3 patches, and of the weakest-textured half of them (by patch
  variance; after Liu, Tanaka and Okutomi 2013), patches touching the volume's minimum left out.
  The added SD is what a reading should find on top of the crop's own noise.
* **Cost**: ``balanced`` at x4 with the whole LR model estimated, and with the noise given as
  the added SD (the blur still estimated), both from zero (no pretrained start, the same for
  both), on the three crops with ``gauss:1`` and ``box``, 0 and 30 HU.

Writes benchmarks/noise_level.{json,md}; about 15 minutes on 2 cores.

    python benchmarks/noise_level_bench.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_report import run_meta, write_report  # noqa: E402
from quality_bench import CASES, _hr, require_data  # noqa: E402

READING_SCALES = {"2": (2, 2, 2), "4": (4, 4, 4), "1x1x4": (1, 1, 4)}
READING_BLURS = ("gauss:0.5", "gauss:1", "box")
COST_BLURS = ("gauss:1", "box")
NOISES = (0, 30)
#: Patch edge (voxels) of the eigenvalue readings, and the share of weakest-textured patches.
PATCH, WEAKEST = 3, 0.5


def smallest_patch_eigen_sd(array: np.ndarray, share: float = 1.0) -> float:
    """sqrt of the smallest eigenvalue (HU) of the covariance of the PATCH^3 patches of ``array``
    (KJI, HU), over the ``share`` of them with the lowest variance; patches touching the minimum
    (clipped padding) are left out."""
    a = np.asarray(array, dtype=np.float64)
    patches = np.lib.stride_tricks.sliding_window_view(a, (PATCH,) * 3).reshape(-1, PATCH**3)
    patches = patches[patches.min(axis=1) > a.min()]
    if share < 1.0:
        variance = patches.var(axis=1)
        patches = patches[variance <= np.quantile(variance, share)]
    centred = patches - patches.mean(axis=0)
    smallest = np.linalg.eigvalsh(centred.T @ centred / len(centred))[0]
    return round(float(np.sqrt(max(smallest, 0.0))), 1)


def reading_rows() -> list[dict]:
    from ctsr.lrestimate import estimate_noise_hu
    from ctsr.lrmodel import LRModel, simulate_lr

    rows = []
    for case in CASES:
        hr = _hr(case)
        for scale_name, scale in READING_SCALES.items():
            for blur in READING_BLURS:
                for noise in NOISES:
                    lr = simulate_lr(hr, scale, LRModel.parse(f"{blur},noise:{noise}"), seed=1)
                    rows.append({"case": case, "scale": scale_name, "blur": blur, "added_hu": noise,
                                 "estimate": round(estimate_noise_hu(lr)[0], 1),
                                 "patch_eigen": smallest_patch_eigen_sd(lr.array),
                                 "patch_eigen_weakest": smallest_patch_eigen_sd(lr.array, WEAKEST)})
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def cost_rows() -> list[dict]:
    from ctsr.lrmodel import LRModel, simulate_lr
    from ctsr.metrics import evaluate
    from ctsr.upsampling import upsample

    rows = []
    for case in CASES:
        hr = _hr(case)
        for blur in COST_BLURS:
            for noise in NOISES:
                lr = simulate_lr(hr, (4, 4, 4), LRModel.parse(f"{blur},noise:{noise}"), seed=1)
                row = {"case": case, "blur": blur, "added_hu": noise}
                for column, given in (("estimated", None), ("noise given", f"noise:{noise}")):
                    start = time.monotonic()
                    result = upsample(lr, 4, "balanced", device="cpu", lr_model=given, pretrained="none")
                    scores = evaluate(result.volume, hr)
                    row[column] = {"psnr": round(scores["psnr"], 3), "ssim": round(scores["ssim"], 4),
                                   "model": result.provenance["lr_model"]["model"],
                                   "seconds": round(time.monotonic() - start, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def markdown(readings: list[dict], costs: list[dict], date: str) -> str:
    lines = [f"Noise readings on coarse LR inputs ({date}; "
             "`python benchmarks/noise_level_bench.py`)", "",
             "HU. `added`: the white noise added to the LR (the crop's own noise comes on top); `estimate`: what "
             "the consistency step stops at and the internal prior's pairs carry; the two eigenvalue readings "
             "are not used by the engine.", "",
             "| case | scale | blur | added | estimate | smallest patch eigenvalue, all | weakest half |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['scale']} | {r['blur']} | {r['added_hu']} | {r['estimate']:.1f} | "
              f"{r['patch_eigen']:.1f} | {r['patch_eigen_weakest']:.1f} |" for r in readings]
    gains = [r["noise given"]["psnr"] - r["estimated"]["psnr"] for r in costs]
    lines += ["", "`balanced` at x4 (from zero), PSNR dB / SSIM, with the LR model estimated and with the noise "
              f"given as the added SD: the given noise gains {np.mean(gains):+.2f} dB on average "
              f"({min(gains):+.2f} to {max(gains):+.2f}).", "",
              "| case | blur | added | estimated model | estimated | noise given | gain |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['blur']} | {r['added_hu']} | {r['estimated']['model']} | "
              f"{r['estimated']['psnr']:.2f} / {r['estimated']['ssim']:.4f} | "
              f"{r['noise given']['psnr']:.2f} / {r['noise given']['ssim']:.4f} | {g:+.2f} |"
              for r, g in zip(costs, gains)]
    return "\n".join(lines) + "\n"


def main() -> None:
    require_data()
    import torch

    torch.set_num_threads(2)
    readings, costs = reading_rows(), cost_rows()
    meta = run_meta(threads=2)
    write_report("noise_level", {**meta, "readings": readings, "costs": costs}, markdown(readings, costs, meta["date"]))


if __name__ == "__main__":
    main()
