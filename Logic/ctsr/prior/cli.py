"""``ctsr prior ...`` subcommands: ``train`` and ``card``."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from ..errors import seed_argument
from ..progress import add_progress_options


def add_prior_commands(commands) -> None:
    """Add the ``prior`` command and its subcommands to the ``ctsr`` parser's subparsers."""
    from .config import PRESETS, TrainConfig

    defaults = TrainConfig(ct_dir="", xray_dir=None)
    prior = commands.add_parser("prior", help="train or describe the diffusion projection prior")
    sub = prior.add_subparsers(dest="prior_command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("train", help="train a prior on DRRs of CT volumes and radiographs "
                                     "(runs under `accelerate launch` too)")
    p.add_argument("--ct", type=Path, required=True, help="folder of CT volumes (NRRD, NIfTI, MHA)")
    p.add_argument("--xray", type=Path, help="folder of radiographs (DICOM, PNG, JPEG)")
    p.add_argument("--out", type=Path, required=True, help="model folder to write")
    p.add_argument("--checkpoints", type=Path, help="checkpoint folder (default OUT/checkpoint); "
                                                    "an existing checkpoint is resumed")
    p.add_argument("--preset", default=defaults.preset, choices=tuple(PRESETS))
    p.add_argument("--steps", type=int, default=defaults.steps)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--crop", type=int, default=defaults.crop, help="training crop side in pixels")
    p.add_argument("--lr", type=float, default=defaults.learning_rate)
    p.add_argument("--views", type=int, default=defaults.n_views, help="DRR views per CT volume")
    p.add_argument("--holdout", nargs="*", default=defaults.holdout,
                   help="CT file name prefixes left out (default chest_cta_1.5mm)")
    p.add_argument("--seed", type=seed_argument, default=defaults.seed)
    p.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    add_progress_options(p)
    p.set_defaults(run=_run_train)

    p = sub.add_parser("card", help="re-render a prior folder's model card from its ctsr_prior.json")
    p.add_argument("model", type=Path, help="prior model folder")
    add_progress_options(p)
    p.set_defaults(run=_run_card)


def _run_train(args, progress) -> dict:
    import torch

    from .train import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(ct_dir=str(args.ct), xray_dir=str(args.xray) if args.xray else None,
                         preset=args.preset, steps=args.steps, batch_size=args.batch_size, crop=args.crop,
                         learning_rate=args.lr, n_views=args.views, holdout=list(args.holdout),
                         seed=args.seed, checkpoint_every=args.checkpoint_every)
    metadata = train(config, args.out, args.checkpoints, progress)
    if metadata:
        _record_command(args.out, metadata)
    return {"output": str(args.out), "steps": metadata.get("train_steps")}


def _record_command(out: Path, metadata: dict) -> None:
    import json

    from .card import write_model_card
    from .model import METADATA_FILE

    metadata["command"] = "ctsr " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    (Path(out) / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    write_model_card(out)


def _run_card(args, progress) -> dict:
    from ..errors import UserError
    from .card import write_model_card
    from .model import METADATA_FILE

    if not (args.model / METADATA_FILE).is_file():
        raise UserError(f"{args.model} has no {METADATA_FILE}.")
    return {"output": str(write_model_card(args.model))}
