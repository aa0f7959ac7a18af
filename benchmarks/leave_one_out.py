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


def projection_prior_without(case: str) -> Path:
    """The folder of the x4 external projection prior pretrained by ``ctsr pretrain
    --projections``'s recipe on every case of quality_bench.py but ``case`` (about 8 minutes on
    2 cores on first use)."""
    from ctsr.external_projection_prior import pretrain_and_save
    from ctsr.network_folder import CONFIG_FILE

    folder = WORK / f"projection-prior-x4-without-{case}"
    if not (folder / CONFIG_FILE).is_file():
        others = [DATA / CASES[other][0] for other in CASES if other != case]
        print(f"pretraining the x4 projection prior without {case} on {', '.join(p.name for p in others)}",
              flush=True)
        pretrain_and_save(others, folder, command=f"benchmarks/leave_one_out.py (projection prior, without {case})")
    return folder


if __name__ == "__main__":
    for case in sys.argv[1:] or list(CASES):
        print(pretrained_without(case))
