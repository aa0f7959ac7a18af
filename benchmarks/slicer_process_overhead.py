"""What running through the Slicer module's background worker costs over calling the engine
in-process: node -> file -> ``python -m ctsr.worker`` -> file -> node, on the bundled real CT
sample (64^3, 1.5 mm), with slicer-core's MRML (no Slicer application).

    python benchmarks/slicer_process_overhead.py   # writes benchmarks/slicer_process_overhead.{json,md}

Each case is run ``REPEATS`` times; the median is reported. Times in seconds (wall clock).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import slicer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "CTSuperResolution"))
sys.path.insert(0, str(HERE))

from bench_report import run_meta, write_report  # noqa: E402

from CTSuperResolutionLib import nodes  # noqa: E402
from CTSuperResolutionLib.logic import CTSuperResolutionLogicBase  # noqa: E402
from ctsr.io import read_volume  # noqa: E402
from ctsr.resources import sample_volume_path  # noqa: E402
from ctsr.upsampling import upsample  # noqa: E402

REPEATS = 3
CASES = [("trilinear", 2), ("cubic", 2), ("cubic", 4)]


def median_time(run) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    slicer.mrmlScene = scene = slicer.vtkMRMLScene()
    lr = read_volume(sample_volume_path())
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    nodes.update_node_from_volume(node, lr)
    logic = CTSuperResolutionLogicBase()

    rows = []
    for method, scale in CASES:
        engine = median_time(lambda: upsample(lr, scale, method))

        def through_worker():
            out = logic.process(node, scale=scale, method=method)
            scene.RemoveNode(out)

        worker = median_time(through_worker)
        rows.append({"method": method, "scale": scale, "output_voxels": lr.array.size * scale**3,
                     "engine_in_process_s": round(engine, 3), "process_via_worker_s": round(worker, 3),
                     "overhead_s": round(worker - engine, 3)})

    info = run_meta(input="Resources/SampleData/CTChestCrop.nrrd (64^3, 1.5 mm)", repeats=REPEATS)
    lines = ["# Slicer module: background-worker overhead", "",
             f"Input: {info['input']}; median of {REPEATS} runs; Python {info['python']}, "
             f"{info['machine']}, CPU.", "",
             "| method | scale | output voxels | engine in-process (s) | process() via worker (s) | overhead (s) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['scale']} | {r['output_voxels']:,} | {r['engine_in_process_s']} | "
              f"{r['process_via_worker_s']} | {r['overhead_s']} |" for r in rows]
    write_report("slicer_process_overhead", {"info": info, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
