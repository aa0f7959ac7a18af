"""When the user's LR model is wrong: ``fast`` and ``balanced`` given a blur narrower or wider
than the one that made the input, against cubic.

The crops and scales of degradation_bench.py (x2 and through-plane x4); the LR is made by the
block mean with 10 HU noise (``box,noise:10``) and the methods are given ``gauss:0.5`` (too
narrow) or ``gauss:2`` (too wide) for every scaled axis, the noise left to the estimate.
Writes benchmarks/wrong_model.{json,md}.

    python benchmarks/wrong_model_bench.py          # ~5 min on 2 cores
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_report import run_meta, write_report  # noqa: E402
from quality_bench import CASES, SCALES, _hr, _label, require_data  # noqa: E402

TRUTH = "box,noise:10"
GIVEN = {"too narrow": "gauss:0.5", "too wide": "gauss:2"}


def main() -> None:
    require_data()
    import torch

    from ctsr.lrmodel import LRModel, simulate_lr
    from ctsr.metrics import evaluate
    from ctsr.upsampling import upsample

    torch.set_num_threads(2)
    rows = []
    for case in CASES:
        hr = _hr(case)
        for scale_name in ("2", "1x1x4"):
            scale = SCALES[scale_name]
            lr = simulate_lr(hr, scale, LRModel.parse(TRUTH), seed=1)
            cubic = evaluate(upsample(lr, scale, "cubic").volume, hr)
            for label, given in GIVEN.items():
                text = given if scale_name == "2" else f"z={given}"
                row = {"case": case, "scale": scale_name, "given": text, "label": label,
                       "cubic": {"psnr": round(cubic["psnr"], 3), "ssim": round(cubic["ssim"], 4)}}
                for method in ("fast", "balanced"):
                    result = upsample(lr, scale, method, lr_model=text, device="cpu")
                    scores = evaluate(result.volume, hr)
                    row[method] = {"psnr": round(scores["psnr"], 3), "ssim": round(scores["ssim"], 4),
                                   "model": result.provenance["lr_model"]["model"]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    meta = run_meta(threads=2, truth=TRUTH)
    lines = [f"A wrong LR model given ({meta['date']}, CPU, 2 threads; `python benchmarks/wrong_model_bench.py`). "
             f"LR made by `{TRUTH}`; gain over cubic, PSNR dB / SSIM.", "",
             "| case | scale | given | cubic | fast | balanced |", "|---|---|---|---|---|---|"]
    gain = lambda r, m: f"{r[m]['psnr'] - r['cubic']['psnr']:+.2f} / {r[m]['ssim'] - r['cubic']['ssim']:+.4f}"
    for r in rows:
        lines.append(f"| {r['case']} | {_label(r['scale'])} | `{r['given']}` ({r['label']}) | "
                     f"{r['cubic']['psnr']:.2f} / {r['cubic']['ssim']:.4f} | {gain(r, 'fast')} | {gain(r, 'balanced')} |")
    write_report("wrong_model", {"meta": meta, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
