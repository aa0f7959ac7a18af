"""Quality benchmark of the whole product (issue 7): real CT crops, the paper's LR, every method.

For each real CT of ../shared/data/ct (an HR crop of at least 96^3 voxels) and each scale
(x2, x4, through-plane 1x1x4), the LR input is made by the paper's operator (``gauss:1``, no
noise: a gain here is a gain on that simulation only; benchmarks/degradation_bench.py measures
other LR models), then super-resolved by: trilinear, cubic, cubic + the data-consistency step
given that operator, NAB-GS without prior,
the zero-shot presets, and the oracle (NAB-GS fitted to the true HR projections: the ceiling).
Each run happens in a fresh process so that its wall time and peak memory (max RSS) are its
own. Writes benchmarks/quality.json, benchmarks/quality.md and PNG montages
(LR | cubic | ours | truth, with a zoomed inset, same window) in benchmarks/montages/, plus a
qualitative through-plane montage of a real thick-slice scan (no truth exists for it).

    python benchmarks/quality_bench.py                 # everything (long on a CPU)
    python benchmarks/quality_bench.py --cases chest --scales 2 --methods cubic fast
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_report import run_meta, write_report  # noqa: E402

DATA = HERE.parents[1] / "shared" / "data" / "ct"

#: name -> (file, KJI crop of the HR truth); crops are multiples of 4 and at least 96^3.
CASES = {
    "chest": ("chest_cta_1.5mm.nrrd", (slice(48, 144), slice(32, 128), slice(60, 156))),
    "abdomen": ("abdomen_pelvis_3mm.nrrd", (slice(8, 104), slice(2, 98), slice(12, 108))),
    "head": ("head_1.5mm.nrrd", (slice(6, 102), slice(80, 176), slice(80, 176))),
}
SCALES = {"2": (2, 2, 2), "4": (4, 4, 4), "1x1x4": (1, 1, 4)}
METHODS = ["trilinear", "cubic", "cubic+dc", "nabgs", "fast", "standard", "quality", "oracle"]


def require_data() -> None:
    """Exit with a message where the shared CTs (:data:`DATA`) are missing."""
    if not DATA.is_dir():
        sys.exit(f"benchmark data not found at {DATA}")


def _crop(volume, kji_slices):
    """The KJI slices of ``volume``, in place in RAS (:func:`ctsr.roi.crop_to_roi`)."""
    from ctsr.roi import Roi, crop_to_roi

    k, j, i = kji_slices
    return crop_to_roi(volume, Roi("ijk", (i.start, j.start, k.start), (i.stop, j.stop, k.stop)))


def _hr(case: str):
    from ctsr.io import read_volume

    name, crop = CASES[case]
    return _crop(read_volume(DATA / name), crop)


def run_one(case: str, scale_name: str, method: str, work: Path) -> dict:
    """One method on one case, in this process; writes the output and returns its scores."""
    import torch

    from ctsr.baselines import upsample_interpolate
    from ctsr.fidelity import enforce_lr_consistency, lr_residual
    from ctsr.lrmodel import PAPER, simulate_lr
    from ctsr.io import write_volume
    from ctsr.metrics import evaluate
    from ctsr.pipeline import PRESETS, super_resolve
    from ctsr.upsampling import upsample

    torch.set_num_threads(2)
    scale = SCALES[scale_name]
    hr = _hr(case)
    lr = simulate_lr(hr, scale)
    start = time.monotonic()
    info = {}
    if method == "cubic+dc":
        out, _ = enforce_lr_consistency(upsample_interpolate(lr, scale, "cubic"), lr, scale, PAPER)
    elif method == "oracle":
        out, info = super_resolve(lr, scale, PRESETS["standard"], PAPER, oracle=hr, device="cpu")
    else:
        result = upsample(lr, scale, method, device="cpu")
        out, info = result.volume, result.provenance
    seconds = time.monotonic() - start
    scores = evaluate(out, hr)
    write_volume(out, work / f"{case}_x{scale_name}_{method}.nrrd", compress=False)
    return {"case": case, "scale": scale_name, "method": method, "psnr": round(scores["psnr"], 3),
            "ssim": round(scores["ssim"], 4), "seconds": round(seconds, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "gaussians": info.get("gaussians"), "lr_residual_hu": lr_residual(out, lr, scale, PAPER)["rms_hu"],
            "target": info.get("target")}


def montage(case: str, scale_name: str, method: str, work: Path) -> Path:
    from ctsr.lrmodel import simulate_lr
    from ctsr.io import read_volume
    from ctsr.montage import write_montage

    hr = _hr(case)
    lr = simulate_lr(hr, SCALES[scale_name])
    path = HERE / "montages" / f"{case}_{_label(scale_name)}.png"
    path.parent.mkdir(exist_ok=True)
    volumes = [lr, read_volume(work / f"{case}_x{scale_name}_cubic.nrrd"),
               read_volume(work / f"{case}_x{scale_name}_{method}.nrrd"), hr]
    write_montage(path, volumes, (-1000.0, 500.0) if case == "chest" else (-160.0, 240.0), inset=True)
    return path


def _label(scale_name: str) -> str:
    return f"x{scale_name}" if scale_name.isdigit() else scale_name


def thick_slice_montage(method: str) -> Path:
    """Real thick-slice scans have no thin-slice truth: a qualitative montage of a through-plane
    x4 run on a crop of chest_thick_5mm (0.57 x 0.57 x 5 mm -> 1.25 mm slices): LR | cubic | ours."""
    from ctsr.io import read_volume
    from ctsr.montage import write_montage
    from ctsr.upsampling import upsample

    full = read_volume(DATA / "chest_thick_5mm.nrrd")
    crop = _crop(full, (slice(0, full.array.shape[0]), slice(160, 352), slice(96, 288)))
    volumes = [crop] + [upsample(crop, "1x1x4", m, device="cpu").volume for m in ("cubic", method)]
    path = HERE / "montages" / "chest_thick_5mm_1x1x4.png"
    write_montage(path, volumes, (-1000.0, 500.0), inset=True)
    return path


def table(rows: list[dict]) -> str:
    lines = ["| case | scale | method | PSNR dB | SSIM | vs cubic dB | time s | peak RSS MB | Gaussians | LR residual HU |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    cubic = {(r["case"], r["scale"]): r["psnr"] for r in rows if r["method"] == "cubic"}
    for r in rows:
        gain = r["psnr"] - cubic[(r["case"], r["scale"])] if (r["case"], r["scale"]) in cubic else float("nan")
        lines.append(f"| {r['case']} | {_label(r['scale'])} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
                     f"{gain:+.2f} | {r['seconds']:.1f} | {r['peak_rss_mb']} | {r['gaussians'] or '-'} | "
                     f"{r['lr_residual_hu']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--scales", nargs="+", default=list(SCALES), choices=list(SCALES))
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--montage-method", default="standard")
    parser.add_argument("--out", default="quality")
    parser.add_argument("--one", nargs=3, metavar=("CASE", "SCALE", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = HERE / "_work"
    work.mkdir(exist_ok=True)
    if args.one:
        print(json.dumps(run_one(*args.one, work)))
        return
    require_data()
    rows = []
    for case in args.cases:
        for scale_name in args.scales:
            for method in args.methods:
                run = subprocess.run([sys.executable, __file__, "--one", case, scale_name, method],
                                     capture_output=True, text=True)
                if run.returncode:
                    print(run.stderr[-2000:], file=sys.stderr)
                    continue
                rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), flush=True)
            if {"cubic", args.montage_method} <= set(args.methods):
                montage(case, scale_name, args.montage_method, work)
    if "1x1x4" in args.scales:
        thick_slice_montage(args.montage_method)
    meta = run_meta(threads=2)
    write_report(args.out, {"meta": meta, "rows": rows},
                 f"Quality benchmark ({meta['date']}, CPU, 2 threads)\n\n{table(rows)}")


if __name__ == "__main__":
    main()
