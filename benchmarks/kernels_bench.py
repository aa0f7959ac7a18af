"""Throughput of the signed-Gaussian renderer and voxelizer: Gaussian-pixel (and Gaussian-voxel)
pairs per second, forward and forward+backward: the torch reference, the numba CPU kernels and
the Triton GPU kernels.

    python benchmarks/kernels_bench.py                 # writes benchmarks/kernels_bench.{json,md}
    python benchmarks/kernels_bench.py --devices cuda  # only the GPU rows; the CPU rows are kept

The CPU is measured with the torch reference and the numba kernels (the Triton kernels run on
CPU only in Triton's interpreter, a correctness tool, not a speed, so it is not timed); the GPU,
when CUDA is available, with the reference and Triton. Rows of a device not measured in this
run are kept from the last run that measured it.
The case: Gaussians of about 1.5 voxels (128^3 grid, 2 scene units across), signed densities,
a 128 x 128 cone-beam detector (4 views); voxelization of the whole 128^3 grid. The pair counts
are those both backends evaluate (the footprint boxes). Median of ``REPEATS`` runs, seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from ctsr.gaussians import SignedGaussians
from ctsr.gaussians import kernels
from ctsr.gaussians.kernels.render_triton import render_pairs  # needs Triton (pip install --no-deps triton)
from ctsr.gaussians.kernels.voxelize_triton import voxelize_pairs
from ctsr.geometry import ConeGeometry

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_report import machine, write_report  # noqa: E402

REPEATS = 3
N_GAUSSIANS = 20000
GRID = 128


def make_case(device):
    gen = torch.Generator().manual_seed(0)
    geometry = ConeGeometry(DSO=5.0, DSD=7.5, nDetector=(GRID, GRID), dDetector=(2.2 / GRID,) * 2,
                            nVoxel=(GRID,) * 3, dVoxel=(2.0 / GRID,) * 3,
                            angles=(0.0, 0.8, 1.6, 2.4))
    means = (torch.rand(N_GAUSSIANS, 3, generator=gen) * 2 - 1) * 0.9
    g = SignedGaussians.isotropic(means, 1.5 * 2.0 / GRID, torch.randn(N_GAUSSIANS, generator=gen) * 0.05)
    g.log_scales = g.log_scales + 0.2 * torch.randn(N_GAUSSIANS, 3, generator=gen)
    g.quats = torch.nn.functional.normalize(torch.randn(N_GAUSSIANS, 4, generator=gen), dim=-1)
    return SignedGaussians(*(p.to(device).requires_grad_(True) for p in g.parameters())), geometry


def median_time(run, device) -> float:
    times = []
    for _ in range(REPEATS + 1):  # the first run warms up (and compiles the kernels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def measure(device, backend):
    gaussians, geometry = make_case(device)
    pixels = render_pairs(gaussians, geometry)  # the footprint boxes' pairs, as both backends evaluate
    voxels = voxelize_pairs(gaussians, geometry)
    weights = torch.randn(geometry.n_views, GRID, GRID, device=device)
    vweights = torch.randn(GRID, GRID, GRID, device=device)

    def render_forward():
        with torch.no_grad():
            kernels.render(gaussians, geometry, backend=backend)

    def render_both():
        (kernels.render(gaussians, geometry, backend=backend) * weights).sum().backward()

    def voxelize_forward():
        with torch.no_grad():
            kernels.voxelize(gaussians, geometry, backend=backend)

    def voxelize_both():
        (kernels.voxelize(gaussians, geometry, backend=backend) * vweights).sum().backward()

    row = {"device": device_name(device), "kind": device.type, "torch": torch.__version__, "backend": backend,
           "gaussians": N_GAUSSIANS,
           "render_pairs": pixels, "voxel_pairs": voxels}
    for name, run, pairs in [("render_forward", render_forward, pixels),
                             ("render_forward_backward", render_both, pixels),
                             ("voxelize_forward", voxelize_forward, voxels),
                             ("voxelize_forward_backward", voxelize_both, voxels)]:
        seconds = median_time(run, device)
        row[f"{name}_s"] = round(seconds, 4)
        row[f"{name}_pairs_per_s"] = round(pairs / seconds)
    return row


def device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({machine()}, {torch.get_num_threads()} threads)"


def earlier_rows(path: Path, kind: str) -> list[dict]:
    """The rows of ``kind`` ("cpu" or "cuda") from the last run's JSON, if any."""
    if not path.exists():
        return []
    return [r for r in json.loads(path.read_text())["rows"] if r.get("kind", "cpu") == kind]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], default=["cpu", "cuda"])
    args = parser.parse_args()
    torch.set_num_threads(2)
    path = HERE / "kernels_bench.json"
    rows = []
    if "cpu" in args.devices:
        rows.append(measure(torch.device("cpu"), "torch"))
        if kernels.numba_available():
            rows.append(measure(torch.device("cpu"), "numba"))
    else:
        rows += earlier_rows(path, "cpu")
    if "cuda" in args.devices and torch.cuda.is_available():
        gpu = torch.device("cuda")
        rows.append(measure(gpu, "torch"))
        if kernels.triton_available():
            rows.append(measure(gpu, "triton"))
    else:
        rows += earlier_rows(path, "cuda")
    gpus = sorted({r["device"] for r in rows if r.get("kind") == "cuda"})
    gpu_note = f"measured on {', '.join(gpus)}" if gpus else "not measured: no GPU was available to this run"
    result = {"case": {"gaussians": N_GAUSSIANS, "grid": GRID, "detector": [GRID, GRID], "views": 4,
                       "mode": "cone", "repeats": REPEATS},
              "gpu": gpu_note, "torch": torch.__version__, "rows": rows}
    lines = ["# Renderer and voxelizer throughput (pairs per second)", "",
             f"{N_GAUSSIANS} signed Gaussians (~1.5 voxels), {GRID}^2 cone-beam detector x 4 views; "
             f"voxelization of the {GRID}^3 grid. Median of {REPEATS} runs after a warm-up. "
             f"GPU: {gpu_note}.", "",
             "| device | backend | render fwd | render fwd+bwd | voxelize fwd | voxelize fwd+bwd |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[k + '_pairs_per_s'] / 1e6:.1f} M/s ({r[k + '_s']:.2f} s)" for k in
                 ("render_forward", "render_forward_backward", "voxelize_forward", "voxelize_forward_backward")]
        lines.append(f"| {r['device']} | {r['backend']} | " + " | ".join(cells) + " |")
    lines += ["", f"Pairs: {rows[0]['render_pairs']:,} Gaussian-pixel, {rows[0]['voxel_pairs']:,} Gaussian-voxel."]
    write_report("kernels_bench", result, "\n".join(lines))


if __name__ == "__main__":
    main()
