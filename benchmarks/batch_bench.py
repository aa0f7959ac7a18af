"""Batch throughput: scans per hour of ``ctsr batch`` with the local engine (1 and 2 workers)
and with Ray started on this machine, on a cohort of real CT crops.

The cohort: ``--scans`` crops of 96^3 voxels (1.5 mm) cut from the real CTs of
../shared/data (chest CTA, abdomen, head, in turn), super-resolved x2 with ``fast`` (the
engine's overhead is what is measured; ``balanced`` adds its training per scan, see
benchmarks/balanced_cost.md) (192^3 outputs). Each engine runs the whole cohort from scratch (``--force``) in a fresh
process; the wall time includes starting the workers (and Ray). Writes benchmarks/batch.json
and benchmarks/batch.md.

    python benchmarks/batch_bench.py                 # 24 scans, about 5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_report import run_meta, write_report  # noqa: E402
from quality_bench import DATA, require_data  # noqa: E402

SOURCES = ("chest_cta_1.5mm.nrrd", "abdomen_pelvis_3mm.nrrd", "head_1.5mm.nrrd")
ENGINES = {"local, 1 worker": ["--workers", "1"], "local, 2 workers": ["--workers", "2"], "ray (local)": ["--engine", "ray"]}


def make_cohort(folder: Path, count: int, edge: int = 96) -> None:
    """``count`` crops of ``edge``^3 voxels from the shared real CTs, at spread-out corners."""
    from ctsr.io import read_volume, write_volume
    from ctsr.roi import Roi, crop_to_roi

    volumes = [read_volume(DATA / name) for name in SOURCES]
    for n in range(count):
        volume = volumes[n % len(volumes)]
        room = [max(0, s - edge) for s in volume.shape_ijk]
        corner = [int(r * ((n // len(volumes)) * 0.37 % 1.0)) for r in room]
        crop = crop_to_roi(volume, Roi("ijk", tuple(corner), tuple(c + edge for c in corner)))
        write_volume(crop, folder / f"scan{n:03d}.nrrd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", type=int, default=24)
    args = parser.parse_args()
    require_data()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        cohort, out = Path(work) / "cohort", Path(work) / "out"
        cohort.mkdir()
        make_cohort(cohort, args.scans)
        for name, flags in ENGINES.items():
            start = time.monotonic()
            run = subprocess.run([sys.executable, "-m", "ctsr.cli", "batch", str(cohort), str(out), "--force",
                                  "--method", "fast", "--quiet", *flags], capture_output=True, text=True)
            seconds = time.monotonic() - start
            if run.returncode:
                print(run.stderr[-2000:], file=sys.stderr)
                continue
            rows.append({"engine": name, "scans": args.scans, "seconds": round(seconds, 1),
                         "scans_per_hour": round(3600 * args.scans / seconds), "per_scan_s": round(seconds / args.scans, 2)})
            print(json.dumps(rows[-1]), flush=True)
    meta = run_meta(cores=2, cohort=f"{args.scans} real CT crops of 96^3, x2 with fast")
    lines = [f"Batch throughput ({meta['date']}, {meta['cohort']}; `python benchmarks/batch_bench.py`)", "",
             "| engine | scans | wall s | s per scan | scans per hour |", "|---|---|---|---|---|"]
    lines += [f"| {r['engine']} | {r['scans']} | {r['seconds']} | {r['per_scan_s']} | {r['scans_per_hour']} |" for r in rows]
    write_report("batch", {"meta": meta, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
