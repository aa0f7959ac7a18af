"""Do the radiographs of ../shared/data/xray add to the x4 external projection prior? A
probe, leave one scan out (the shipped recipe does not use them).

As ``external_projection_prior_bench.py`` (two training scans, the recipe's 3000 steps, the
three held-out crops at x4 with ``gauss:0.5``, ``gauss:1.5`` and the block mean plus 10 HU), but
the training pairs are the recipe's DRR pairs of the two other scans plus 2D pairs made from
each radiograph: reduced by block means to about 256 px (1.5 to 1.7 mm pixels), scaled to a
maximum of 1, it is made a slab two voxels thick and degraded by random LR models of the
recipe's distribution with the pipeline's own volume operators (``simulate_lr`` at (4, 1, 4),
cubic back): the view at angle 0 of a thin object, where projecting commutes with the in-plane
operators, so ``P_up`` is the cubic slab, ``y`` the LR slab and the truth the radiograph. The
noise is the model's HU noise times what one HU of volume noise gives the DRR pairs' ``y``
relative to their largest value (measured on one crop). 12 models and two random 144^2 crops
per radiograph: 72 pairs beside the 384 DRR projections. Writes
benchmarks/external_projection_prior_radiographs.{json,md}.

    python benchmarks/external_projection_prior_radiographs.py   # ~30 min on 2 cores
"""


import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_report import run_meta, write_report  # noqa: E402
from external_projection_prior_bench import COLUMNS, cell  # noqa: E402
from projection_prior_bench import BLURS, _gain_line  # noqa: E402
from quality_bench import CASES, DATA, _hr  # noqa: E402

from ctsr.baselines import upsample_interpolate  # noqa: E402
from ctsr.external_prior import random_lr_model, read_hr_scans  # noqa: E402
from ctsr.external_projection_prior import (KERNEL, ProjectionPretrainSettings, conditioning,  # noqa: E402
                                            pretraining_pairs, scan_pairs)
from ctsr.lrmodel import GIVEN, LRModel, add_noise, simulate_lr  # noqa: E402
from ctsr.network_folder import PretrainedNetwork  # noqa: E402
from ctsr.prior.data import block_reduce, read_radiograph  # noqa: E402
from ctsr.progress import SilentProgress  # noqa: E402
from ctsr.residual_cnn import fit_residual_network  # noqa: E402
from ctsr.volume import Volume  # noqa: E402

XRAY = DATA.parent / "xray"
OUT = "external_projection_prior_radiographs"
SURROGATE = (4, 1, 4)
MODELS_PER_IMAGE = 12
CROPS_PER_MODEL = 2


def relative_noise_per_hu(volume) -> float:
    """SD of ``(y_noisy - y_clean) / unit`` (the conditioning's ``y`` channel) per HU of LR
    volume noise, on 8 views of ``volume`` (HR, HU) at x4."""
    clean = scan_pairs(volume, LRModel.parse("box,noise:0"), (4, 4, 4), 8, 0.0, 3)
    noisy = scan_pairs(volume, LRModel.parse("box,noise:20"), (4, 4, 4), 8, 0.0, 3)
    return float((noisy[0][1] - clean[0][1]).std() / 20.0)


def radiograph_pairs(images, rows, cols, per_hu, rng):
    """``(inputs, target)`` of each radiograph in ``images`` (2D, dense bright) under
    :data:`MODELS_PER_IMAGE` random LR models, :data:`CROPS_PER_MODEL` random ``rows x cols``
    crops each, in the units of ``ctsr.external_projection_prior.conditioning`` (as its
    ``pretraining_pairs``); ``per_hu``: :func:`relative_noise_per_hu`."""
    sources, targets = [], []
    for image in images:
        image = image / image.max()
        k = image.shape[0] // 4 * 4
        i = image.shape[1] // 4 * 4
        slab = Volume(np.repeat(image[:k, None, :i], 2, axis=1).astype(np.float32), np.eye(4))
        for _ in range(MODELS_PER_IMAGE):
            model = random_lr_model(rng)
            lr = simulate_lr(slab, SURROGATE, model.with_noise(0.0, "none", GIVEN), seed=0)
            # noise relative to the scale of this radiograph's projections, as in the DRR pairs
            lr = Volume(add_noise(lr.array, (model.noise_hu or 0.0) * per_hu * float(lr.array.max()),
                                  int(rng.integers(1 << 30))), lr.ijk_to_ras)
            up = upsample_interpolate(lr, SURROGATE, "cubic").array[:, 0, :]
            p_up = torch.from_numpy(up[None]).float()
            y = torch.from_numpy(lr.array[:, 0, :][None]).float()
            inputs, unit = conditioning(p_up, y, (4, 4, 4))
            truth = slab.array[: up.shape[0], 0, : up.shape[1]] / unit[0]
            for _ in range(CROPS_PER_MODEL):
                r0 = int(rng.integers(0, up.shape[0] - rows + 1))
                c0 = int(rng.integers(0, up.shape[1] - cols + 1))
                sources.append(inputs[:, :, r0:r0 + rows, c0:c0 + cols])
                targets.append(truth[None, r0:r0 + rows, c0:c0 + cols])
    return np.concatenate(sources, axis=1), np.concatenate(targets)


def main():
    torch.set_num_threads(2)
    settings = ProjectionPretrainSettings()
    images = [block_reduce(image, max(1, round(max(image.shape) / 256)))
              for image in map(read_radiograph, sorted(XRAY.glob("*.dcm")))]
    print("radiographs", [im.shape for im in images], flush=True)
    rows = []
    for case in CASES:
        start = time.monotonic()
        others = [o for o in CASES if o != case]
        volumes = read_hr_scans([DATA / CASES[o][0] for o in others], SilentProgress())
        source, target = pretraining_pairs(volumes, settings, 0)
        per_hu = relative_noise_per_hu(_hr(others[0]))
        rs, rt = radiograph_pairs(images, source.shape[2], source.shape[3], per_hu, np.random.default_rng(5))
        print(case, "drr", source.shape, "radiograph", rs.shape, "per_hu", per_hu, flush=True)
        source, target = np.concatenate([source, rs], axis=1), np.concatenate([target, rt])
        network = fit_residual_network(source, target, KERNEL, settings.network, 0, "cpu", SilentProgress(),
                                       "pretraining")
        prior = PretrainedNetwork(network.eval(), (4, 4, 4), "probe", {})
        seconds = time.monotonic() - start
        hr = _hr(case)
        for blur in BLURS:
            rows.append({"case": case, "seconds": round(seconds), **cell(hr, f"{blur},noise:10", prior)})
            print(json.dumps(rows[-1]), flush=True)
    names = [p.name for p in sorted(XRAY.glob("*.dcm"))]
    write(rows, run_meta(threads=2, radiographs=names,
                         **{"radiograph pairs": len(images) * MODELS_PER_IMAGE * CROPS_PER_MODEL}))


def write(rows: list[dict], meta: dict) -> None:
    lines = [f"External projection prior at x4 with the radiographs as extra training pairs ({meta['date']}, CPU, "
             f"{meta['threads']} threads; `python benchmarks/{OUT}.py`)", "",
             f"Leave one scan out, two training scans and {meta['radiograph pairs']} radiograph pairs "
             f"({', '.join(meta['radiographs'])}), 3000 steps; PSNR (dB) against the truth's projections, 72 views.",
             "", "| case | LR made by | " + " | ".join(COLUMNS) + " | self-check dB |",
             "|---" * (len(COLUMNS) + 3) + "|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['lr_model']} | " + " | ".join(f"{r[c]:.2f}" for c in COLUMNS)
                     + f" | {r['self-check dB']:+.2f} |")
    for target in ("external", "external, checked"):
        mean, worst, where, below = _gain_line(rows, target, "consistent P_up")
        lines += ["", f"Gain of `{target}` over the consistent `P_up`: mean {mean:+.2f} dB, worst {worst:+.2f} "
                      f"({where}), {below} of {len(rows)} cells below."]
    write_report(OUT, {"meta": meta, "rows": rows}, "\n".join(lines), show=False)


if __name__ == "__main__":
    main()
