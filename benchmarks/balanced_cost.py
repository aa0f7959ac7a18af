"""What the default (``balanced``) costs beside ``fast``: wall time per stage and peak memory
on this machine's CPU (2 threads), at the sizes a user brings.

    python benchmarks/balanced_cost.py            # ~10 min on 2 cores

Inputs are real scans of ../shared/data taken **as scanned** (no truth, no simulated LR): the
central crop of the chest CTA at x2 (64^3 -> 128^3 and 128^3 -> 256^3) and the real 5 mm
chest at through-plane x4 (192 x 192 x 48 -> x 192) and, whole, at x2 (512 x 512 x 48 ->
1024 x 1024 x 96, what the panel ran by default before it turned through-plane on for such
scans). Each run is a fresh process (this script
with ``--one``), so its peak RSS is that run's. Writes benchmarks/balanced_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_report import run_meta, write_report  # noqa: E402
from quality_bench import DATA, _crop, require_data  # noqa: E402

#: name -> (file, KJI crop of the input, scale)
CASES = {
    "chest 64^3 x2": ("chest_cta_1.5mm.nrrd", (slice(63, 127), slice(51, 115), slice(84, 148)), "2"),
    "chest 128^3 x2": ("chest_cta_1.5mm.nrrd", (slice(31, 159), slice(19, 147), slice(52, 180)), "2"),
    "thick 5 mm 192x192x48 1x1x4": ("chest_thick_5mm.nrrd", (slice(0, 48), slice(160, 352), slice(96, 288)), "1x1x4"),
    # The whole scan at x2 on every axis: a 512 x 512 CT's in-plane size, 100 M output voxels.
    "thick 5 mm whole 512x512x48 x2": ("chest_thick_5mm.nrrd", (slice(0, 48), slice(0, 512), slice(0, 512)), "2"),
}
METHODS = ("fast", "balanced")


def run_one(case: str, method: str) -> dict:
    """``method`` on ``case``, in this process: seconds per stage, peak RSS, what ran."""
    import torch

    from ctsr.io import read_volume
    from ctsr.progress import CallbackProgress, StageClock
    from ctsr.upsampling import upsample

    torch.set_num_threads(2)
    file, crop, scale = CASES[case]
    lr = _crop(read_volume(DATA / file), crop)
    clock = StageClock()
    result = upsample(lr, scale, method, progress=CallbackProgress(clock), device="cpu")
    seconds = clock.total()
    return {"case": case, "method": method, "seconds": seconds, "stages": clock.seconds,
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "input": list(lr.shape_ijk), "output": list(result.volume.shape_ijk),
            "lr_model": result.provenance["lr_model"]["model"],
            "internal_prior": result.provenance.get("internal_prior", "-")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one", nargs=2, metavar=("CASE", "METHOD"), help="run one case in this process")
    args = parser.parse_args()
    require_data()
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return
    rows = []
    for case in CASES:
        for method in METHODS:
            done = subprocess.run([sys.executable, __file__, "--one", case, method], capture_output=True, text=True,
                                  check=True)
            rows.append(json.loads(done.stdout.splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    meta = run_meta(threads=2)
    lines = [f"Cost of `fast` and `balanced` ({meta['date']}, CPU, 2 threads; `python benchmarks/balanced_cost.py`)",
             "", "| input | method | output voxels | wall s | stages (s) | peak RSS GB | internal prior |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        stages = ", ".join(f"{k} {v}" for k, v in r["stages"].items())
        lines.append(f"| {r['case']} | {r['method']} | {'x'.join(map(str, r['output']))} | {r['seconds']} | {stages} | "
                     f"{r['peak_rss_gb']} | {r['internal_prior']} |")
    write_report("balanced_cost", {"meta": meta, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
