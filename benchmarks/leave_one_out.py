"""Pretrained volume priors for the benchmarks, one per held-out scan, never scored on a scan they saw.

The shipped network (``Resources/Models/volume-prior-x2``) was pretrained on every scan the
benchmarks score, so a benchmark of ``balanced`` passes, for each case of quality_bench.py,
the network pretrained the same way (``ctsr pretrain``'s defaults) on the *other* cases'
whole scans (external_x4_bench.py also asks for x4 ones). They are made once and kept in
benchmarks/_work/ (about 3 minutes each on 2 cores).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from quality_bench import CASES, DATA  # noqa: E402

WORK = HERE / "_work"


def pretrained_without(case: str, scale: int = 2) -> Path:
    """The folder of the network pretrained at ``scale`` (on every axis; ``ctsr pretrain``'s
    recipe otherwise) on every case of quality_bench.py but ``case`` (trained on first use)."""
    from ctsr.external_prior import PretrainSettings, pretrain_and_save
    from ctsr.network_folder import CONFIG_FILE

    folder = WORK / f"volume-prior-x{scale}-without-{case}"
    if not (folder / CONFIG_FILE).is_file():
        others = [DATA / CASES[other][0] for other in CASES if other != case]
        print(f"pretraining the x{scale} volume prior without {case} on {', '.join(p.name for p in others)}",
              flush=True)
        pretrain_and_save(others, folder, PretrainSettings(scale=(scale,) * 3),
                          command=f"benchmarks/leave_one_out.py (x{scale}, without {case})")
    return folder


def projection_prior_without(case: str, train_scans: int = 2, steps: int | None = None) -> Path:
    """The folder of the x4 external projection prior pretrained by ``ctsr pretrain
    --projections``'s recipe on the first ``train_scans`` cases of quality_bench.py other than
    ``case`` (order chest, abdomen, head; all others by default), for ``steps`` Adam steps (None:
    the recipe's), trained on first use (about 8 minutes on 2 cores for two scans and 3000 steps).
    Other than the recipe's, the folder name says the number of scans and steps."""
    from dataclasses import replace

    from ctsr.external_projection_prior import ProjectionPretrainSettings, pretrain_and_save
    from ctsr.network_folder import CONFIG_FILE

    settings = ProjectionPretrainSettings()
    steps = steps or settings.network.steps
    others = [other for other in CASES if other != case][:train_scans]
    recipe = len(others) == len(CASES) - 1 and steps == settings.network.steps
    folder = WORK / (f"projection-prior-x4-without-{case}" if recipe
                     else f"projection-prior-x4-without-{case}-{len(others)}scans-{steps}steps")
    if not (folder / CONFIG_FILE).is_file():
        paths = [DATA / CASES[other][0] for other in others]
        print(f"pretraining the x4 projection prior without {case} on {', '.join(p.name for p in paths)}, "
              f"{steps} steps", flush=True)
        pretrain_and_save(paths, folder, replace(settings, network=replace(settings.network, steps=steps)),
                          command=f"benchmarks/leave_one_out.py (projection prior, without {case}, "
                                  f"{len(others)} scans, {steps} steps)")
    return folder


if __name__ == "__main__":
    for case in sys.argv[1:] or list(CASES):
        print(pretrained_without(case))
