"""Cost of the presets on a CUDA GPU: wall time per stage, peak GPU memory, Gaussians and
PSNR / SSIM against the truth, at 128^3 and at the whole chest CTA, with what README's cost
model uses: NAB-GS milliseconds per iteration and the other stages' seconds per output voxel.

    python benchmarks/gpu_cost.py                  # on a CUDA machine that has ../shared/data
    python benchmarks/gpu_cost.py --write-cases F  # anywhere with ../shared/data: the cases as one .npz
    python benchmarks/gpu_cost.py --cases F        # on a CUDA machine without SimpleITK or ../shared

The HR truths are crops of the chest CTA in ../shared/data; each LR is made from its truth by
:func:`ctsr.lrmodel.simulate_lr` with the paper's operator, which the runs are also given (the
conditions of ``benchmarks/pipeline_cost.py``, so the CPU rows there compare). Every run is
:func:`ctsr.pipeline.super_resolve` on CUDA with the named preset as a user gets it (the NAB-GS
presets with their internal projection prior; the rows of 2026-11 predate it and ran no
projection prior in ``standard``, the shipped diffusion model in ``quality``). A first small run compiles the Triton kernels and starts CUDA; its time is
reported on its own line, not inside the rows. Writes benchmarks/gpu_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_report import run_meta, write_report  # noqa: E402

#: case -> KJI slices of the chest CTA (233 x 167 x 191 voxels, 1.5 mm) that make the HR truth
CASES = {
    "chest 128^3": (slice(31, 159), slice(19, 147), slice(52, 180)),
    "chest 232x166x190": (slice(0, 190), slice(0, 166), slice(0, 232)),
}
#: (case, preset, label): in order of importance, so a run cut short still has the main rows
RUNS = (
    ("chest 128^3", "fast", "fast"),
    ("chest 128^3", "balanced", "balanced"),
    ("chest 128^3", "standard", "standard"),
    ("chest 232x166x190", "balanced", "balanced"),
    ("chest 232x166x190", "standard", "standard"),
    ("chest 128^3", "quality", "quality"),
    ("chest 128^3", "balanced", "balanced, 1500 steps"),
)
SCALE = (2, 2, 2)


def preset_for(name: str, label: str):
    """The preset of ``name``; the label ``"..., N steps"`` trains the internal prior N steps."""
    from ctsr.pipeline import PRESETS

    preset = PRESETS[name]
    if label.endswith(" steps"):
        steps = int(label.rsplit(", ", 1)[1].split()[0])
        preset = replace(preset, internal_prior=replace(preset.internal_prior, steps=steps))
    return preset


def write_cases(path: Path) -> None:
    """The HR truths of :data:`CASES` as one .npz: ``<i>_array`` (KJI, HU, int16) and
    ``<i>_ijk_to_ras`` (4x4, mm), ``names`` in :data:`CASES` order."""
    from quality_bench import DATA, _crop

    from ctsr.io import read_volume

    chest = read_volume(DATA / "chest_cta_1.5mm.nrrd")
    arrays = {"names": np.array(list(CASES))}
    for i, (name, crop) in enumerate(CASES.items()):
        volume = _crop(chest, crop)
        arrays[f"{i}_array"] = np.round(volume.array).astype(np.int16)
        arrays[f"{i}_ijk_to_ras"] = volume.ijk_to_ras
    np.savez_compressed(path, **arrays)


def read_cases(path: Path | None) -> dict:
    """name -> HR truth (:class:`ctsr.volume.Volume`), from ``path`` or from ../shared/data."""
    from ctsr.volume import Volume

    if path is None:
        path = HERE / "gpu_cases.npz"
        write_cases(path)
    data = np.load(path)
    return {str(name): Volume(data[f"{i}_array"].astype(np.float32), data[f"{i}_ijk_to_ras"])
            for i, name in enumerate(data["names"])}


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run(hr, preset, label: str, device: str) -> dict:
    """One preset on ``device``: seconds per stage, peak GPU memory, scores against ``hr``."""
    from ctsr.lrmodel import PAPER, simulate_lr
    from ctsr.metrics import evaluate
    from ctsr.pipeline import super_resolve
    from ctsr.progress import CallbackProgress, StageClock

    lr = simulate_lr(hr, SCALE, PAPER)
    synchronize(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    clock = StageClock()
    out, info = super_resolve(lr, SCALE, preset, PAPER, device=device, progress=CallbackProgress(clock))
    synchronize(device)
    seconds = clock.total()
    scores = evaluate(out, hr)
    row = {"preset": label, "output": list(hr.shape_ijk), "output_voxels": int(hr.array.size),
           "seconds": seconds, "stages": clock.seconds,
           "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
           "psnr": round(scores["psnr"], 2), "ssim": round(scores["ssim"], 4), "views": preset.n_views,
           "projection_prior": info.get("projection_prior", "-"), "gaussians": info.get("gaussians"),
           "iterations": preset.fit.iterations if preset.fit else None,
           "renderer": info.get("render_backend"), "internal_prior": info.get("internal_prior")}
    if row["internal_prior"] is not None:
        row["internal_prior"] = str(row["internal_prior"])
    return row


def warm_up(device: str) -> float:
    """Seconds for CUDA start-up and the first (compiling) NAB-GS run on a 32^3 volume."""
    from ctsr.gaussians.fit import FitSettings
    from ctsr.lrmodel import PAPER, simulate_lr
    from ctsr.pipeline import Preset, super_resolve
    from ctsr.volume import Volume

    start = time.monotonic()
    rng = np.random.default_rng(0)
    hr = Volume.from_spacing(rng.normal(0, 200, (32, 32, 32)).astype(np.float32), (1.5,) * 3)
    tiny = Preset("warm-up", n_views=8, prior_steps=0, fit=FitSettings(iterations=5, init_gaussians=500,
                                                                       max_gaussians=1000), consistency=True)
    super_resolve(simulate_lr(hr, SCALE, PAPER), SCALE, tiny, PAPER, device=device)
    synchronize(device)
    return round(time.monotonic() - start, 1)


def derived(row: dict) -> dict:
    """What the cost model uses: NAB-GS milliseconds per iteration, and the seconds of every
    other stage per million output voxels."""
    nabgs = row["stages"].get("nabgs", 0.0)
    other = row["seconds"] - nabgs
    return {"nabgs_ms_per_iteration": round(1000 * nabgs / row["iterations"]) if row["iterations"] else None,
            "other_s_per_mvoxel": round(other / (row["output_voxels"] / 1e6), 3)}


def write(meta: dict, rows: list[dict]) -> None:
    """benchmarks/gpu_cost.{json,md} from the rows run so far, each with :func:`derived`'s figures."""
    for row in rows:
        row.update(derived(row))
    lines = [f"# Cost of the presets on {meta['device']} ({meta['date']})", "",
             f"Command: `python benchmarks/gpu_cost.py`. Chest CTA crops at x2, LR by the paper's operator "
             f"(given to the runs). torch {meta['torch']}, Triton {meta['triton']}. CUDA start and Triton "
             f"compilation (a first 32^3 run): {meta['warm_up_s']} s, not in the rows.", "",
             "| output | preset | views | projection prior | NAB-GS iterations | Gaussians | total s | stages (s) "
             "| NAB-GS ms / iteration | other stages s / Mvoxel | peak GPU GB | PSNR dB | SSIM |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        stages = ", ".join(f"{k} {v}" for k, v in r["stages"].items())
        lines.append(f"| {'x'.join(map(str, r['output']))} | {r['preset']} | {r['views']} | {r.get('projection_prior', r.get('prior_steps'))} | "
                     f"{r['iterations'] or '-'} | {r['gaussians'] or '-'} | {r['seconds']} | {stages} | "
                     f"{r['nabgs_ms_per_iteration'] or '-'} | {r['other_s_per_mvoxel']} | {r['peak_gpu_gb']} | "
                     f"{r['psnr']} | {r['ssim']} |")
    write_report("gpu_cost", {"meta": meta, "rows": rows}, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=Path, help="the .npz that --write-cases made (default: read ../shared/data)")
    parser.add_argument("--write-cases", type=Path, metavar="FILE", help="write the cases to FILE and stop")
    parser.add_argument("--budget", type=float, default=1e9, help="start no new run after this many seconds")
    parser.add_argument("--runs", type=int, nargs="+", help="only these entries of RUNS (0-based)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                        help="cpu: a dry run of this script (slow; the CPU figures are pipeline_cost.py's)")
    args = parser.parse_args()
    if args.write_cases:
        write_cases(args.write_cases)
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: this benchmark measures the GPU path (benchmarks/pipeline_cost.py is the CPU one)")
    import triton

    start = time.monotonic()
    cases = read_cases(args.cases)
    meta = run_meta(device=torch.cuda.get_device_name() if args.device == "cuda" else "CPU (dry run)",
                    torch=torch.__version__, triton=triton.__version__, warm_up_s=warm_up(args.device))
    rows = []
    for index, (case, name, label) in enumerate(RUNS):
        if args.runs is not None and index not in args.runs:
            continue
        if time.monotonic() - start > args.budget:
            print(f"budget spent: {case} {label} not run", flush=True)
            continue
        try:
            rows.append(run(cases[case], preset_for(name, label), label, args.device))
        except Exception as error:  # a benchmark keeps going: the failure is in the log and the rows after it still run
            print(f"{case} {label} FAILED: {error!r}", flush=True)
            traceback.print_exc()
            continue
        print(json.dumps(rows[-1]), flush=True)
        write(meta, rows)


if __name__ == "__main__":
    main()
