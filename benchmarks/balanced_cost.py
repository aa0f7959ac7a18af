"""What the default (``balanced``) costs beside ``fast``: wall time per stage and peak memory
on this machine's CPU (2 threads), at the sizes a user brings.

    python benchmarks/balanced_cost.py            # ~5 min on 2 cores

Inputs are real scans of ../shared/data taken **as scanned** (no truth, no simulated LR): the
central crop of the chest CTA at x2 (64^3 -> 128^3 and 128^3 -> 256^3) and the real 5 mm
chest at through-plane x4 (192 x 192 x 48 -> x 192). Each run is a fresh process (peak RSS is
that run's). Writes benchmarks/balanced_cost.{json,md}.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "ct"
#: name -> (file, KJI crop of the input, scale)
CASES = {
    "chest 64^3 x2": ("chest_cta_1.5mm.nrrd", (slice(63, 127), slice(51, 115), slice(84, 148)), "2"),
    "chest 128^3 x2": ("chest_cta_1.5mm.nrrd", (slice(31, 159), slice(19, 147), slice(52, 180)), "2"),
    "thick 5 mm 192x192x48 1x1x4": ("chest_thick_5mm.nrrd", (slice(0, 48), slice(160, 352), slice(96, 288)), "1x1x4"),
}

RUN_ONE = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(2)
sys.path.insert(0, sys.argv[4])
from quality_bench import _crop
from ctsr.io import read_volume
from ctsr.progress import CallbackProgress
from ctsr.upsampling import upsample
crop = tuple(slice(*map(int, part.split(":"))) for part in sys.argv[2].split(","))
lr = _crop(read_volume(sys.argv[1]), crop)
stages, state = {}, {"stage": None, "mark": time.monotonic()}
def on_event(event):
    stage = event.get("stage")
    if stage and stage != state["stage"]:
        now = time.monotonic()
        if state["stage"]:
            stages[state["stage"]] = round(stages.get(state["stage"], 0) + now - state["mark"], 1)
        state.update(stage=stage, mark=now)
start = time.monotonic()
result = upsample(lr, sys.argv[3], sys.argv[5], progress=CallbackProgress(on_event), device="cpu")
total = time.monotonic() - start
if state["stage"]:
    stages[state["stage"]] = round(stages.get(state["stage"], 0) + time.monotonic() - state["mark"], 1)
print(json.dumps({"seconds": round(total, 1), "stages": stages,
                  "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
                  "input": list(lr.shape_ijk), "output": list(result.volume.shape_ijk),
                  "lr_model": result.provenance["lr_model"]["model"],
                  "internal_prior": result.provenance.get("internal_prior", "-")}))
"""


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"benchmark data not found at {DATA}")
    rows = []
    for name, (file, crop, scale) in CASES.items():
        text = ",".join(f"{s.start}:{s.stop}" for s in crop)
        for method in ("fast", "balanced"):
            done = subprocess.run([sys.executable, "-c", RUN_ONE, str(DATA / file), text, scale, str(HERE), method],
                                  capture_output=True, text=True, check=True)
            row = {"case": name, "method": method, **json.loads(done.stdout.splitlines()[-1])}
            rows.append(row)
            print(json.dumps(row), flush=True)
    meta = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
            "threads": 2, "date": time.strftime("%Y-%m-%d")}
    (HERE / "balanced_cost.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"Cost of `fast` and `balanced` ({meta['date']}, CPU, 2 threads; `python benchmarks/balanced_cost.py`)",
             "", "| input | method | output voxels | wall s | stages (s) | peak RSS GB | internal prior |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        stages = ", ".join(f"{k} {v}" for k, v in r["stages"].items())
        lines.append(f"| {r['case']} | {r['method']} | {'x'.join(map(str, r['output']))} | {r['seconds']} | {stages} | "
                     f"{r['peak_rss_gb']} | {r['internal_prior']} |")
    (HERE / "balanced_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
