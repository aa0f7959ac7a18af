"""What the noise estimate reads, on noise whose SD is known and on the real scans.

``ctsr.lrestimate.estimate_noise_hu`` takes the larger of two readings: the finest 3D Haar band
(white noise reads its SD there; noise correlated within slices, as a reconstruction kernel
makes it, reads lower) and the fourth difference across slices (reads the whole SD of noise
independent from slice to slice; used where slices are at most twice the pixel spacing apart).

* **Known noise**: the x2 LR (``box``, the block mean) of each 96^3 crop of quality_bench.py,
  without noise, with white noise and with in-plane correlated noise (``foreign_lr.py``) of 10
  and 20 HU. Real CT carries its own noise, so what a reading finds of the added noise is
  ``sqrt(with^2 - without^2)``.
* **Real scans** (no known SD): both readings on each whole scan of ``../shared/data/ct`` at its
  own resolution, beside the SD of the flattest 5 % of 9 x 9 in-slice windows in soft tissue
  (window mean 0 to 100 HU): an upper bound of sorts (anatomy adds to it), a lower one of
  sorts (the flattest windows are the least noisy by chance).

Writes benchmarks/noise_readings.{json,md}; about a minute on 2 cores.

    python benchmarks/noise_readings.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import foreign_lr  # noqa: E402
from bench_report import run_meta, write_report  # noqa: E402
from quality_bench import CASES, DATA, _hr, require_data  # noqa: E402

SCALE = (2, 2, 2)
ADDED_HU = (10.0, 20.0)
#: In-slice windows (voxels) and the share of the flattest ones whose SD is reported.
WINDOW, FLATTEST = 9, 0.05


def readings(volume) -> dict:
    """Both readings and the estimate (HU, and which reading it took) of ``volume`` (HU)."""
    from ctsr.lrestimate import estimate_noise_hu, fine_band_noise_hu, slice_difference_noise_hu

    fine = fine_band_noise_hu(volume.array)
    value, how = estimate_noise_hu(volume, fine)
    return {"fine_band": fine, "across_slices": slice_difference_noise_hu(volume.array), "estimate": value, "how": how}


def found(noisy: float, clean: float) -> float:
    """What a reading finds of the added noise: the difference of variances."""
    return round(math.sqrt(max(noisy**2 - clean**2, 0.0)), 2)


def known_noise_rows() -> list[dict]:
    from ctsr.lrmodel import LRModel, add_noise, simulate_lr

    rows = []
    for case in CASES:
        lr = simulate_lr(_hr(case), SCALE, LRModel.parse("box"))
        clean = readings(lr)
        for kind in ("white", "correlated in-plane"):
            for sd in ADDED_HU:
                noise = (add_noise(np.zeros_like(lr.array), sd, seed=1) if kind == "white"
                         else foreign_lr.correlated_noise(lr.array.shape, sd, seed=1))
                noisy = readings(lr.with_array(lr.array + noise))
                rows.append({"case": case, "noise": kind, "added_hu": sd,
                             **{key: found(noisy[key], clean[key]) for key in ("fine_band", "across_slices")},
                             "estimate_without": clean["estimate"], "estimate_with": noisy["estimate"]})
    return rows


def flat_window_sd(array: np.ndarray) -> float:
    """SD (HU) of the flattest :data:`FLATTEST` of in-slice WINDOW x WINDOW windows in soft tissue."""
    a = array.astype(np.float64)
    size = (1, WINDOW, WINDOW)
    mean = ndimage.uniform_filter(a, size)
    sd = np.sqrt(np.maximum(ndimage.uniform_filter(a * a, size) - mean**2, 0.0))
    return round(float(np.quantile(sd[(mean > 0) & (mean < 100)], FLATTEST)), 2)


def real_scan_rows() -> list[dict]:
    from ctsr.io import read_volume

    rows = []
    for path in sorted((DATA).glob("*.nrrd")):
        volume = read_volume(path)
        rows.append({"scan": path.name, "spacing_mm": [round(float(s), 3) for s in volume.spacing],
                     **readings(volume), "flat_window_sd": flat_window_sd(volume.array)})
    return rows


def markdown(known: list[dict], real: list[dict], date: str) -> str:
    lines = [f"What the noise estimate reads ({date}; `python benchmarks/noise_readings.py`)", "",
             "Added noise of known SD on the x2 block-mean LR of each crop: what each reading finds of it "
             "(sqrt(with^2 - without^2), HU), and the estimate (the larger reading) without and with it, HU: the "
             "level the consistency step stops at, which also holds the crop's own noise and aliasing.", "",
             "| case | noise | added | finest wavelet band finds | across slices finds | estimate without -> with |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['noise']} | {r['added_hu']:g} | {r['fine_band']:.1f} | {r['across_slices']:.1f} | "
              f"{r['estimate_without']:.1f} -> **{r['estimate_with']:.1f}** |" for r in known]
    lines += ["", "The real scans at their own resolution (HU; no known SD): the readings, the estimate, and the SD "
              f"of the flattest {FLATTEST:.0%} of {WINDOW} x {WINDOW} in-slice soft-tissue windows.", "",
              "| scan | spacing mm (x, y, z) | finest wavelet band | across slices | estimate | flattest windows |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['scan']} | {' x '.join(f'{s:g}' for s in r['spacing_mm'])} | {r['fine_band']:.1f} | "
              f"{r['across_slices']:.1f} | {r['estimate']:.1f} ({r['how']}) | {r['flat_window_sd']:.1f} |" for r in real]
    return "\n".join(lines) + "\n"


def main() -> None:
    require_data()
    known, real = known_noise_rows(), real_scan_rows()
    meta = run_meta()
    write_report("noise_readings", {**meta, "known": known, "real": real}, markdown(known, real, meta["date"]))


if __name__ == "__main__":
    main()
