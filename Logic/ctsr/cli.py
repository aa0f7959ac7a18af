"""The ``ctsr`` command line: ``upsample``, ``simulate-lr``, ``evaluate``, ``demo``.

Exit codes (also the worker's): 0 success; 1 internal error (a bug: traceback printed);
2 user error (one sentence on stderr, and an ``error`` event with ``--json-progress``);
3 cancelled (Ctrl-C or SIGTERM); 4 out of memory; 5 (``batch``) some scans failed, the others
are done (a batch where none succeeded exits 2). A failed or cancelled command leaves no
output file (a cancelled batch keeps the scans it finished, and says how many).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from . import __version__
from .errors import Cancelled, UserError, known_errors, seed_argument
from .progress import Progress, add_progress_options, progress_from_args, to_json

EXIT_OK, EXIT_BUG, EXIT_USER, EXIT_CANCELLED, EXIT_MEMORY, EXIT_PARTIAL = 0, 1, 2, 3, 4, 5
#: What --scale takes (upsample and simulate-lr; batch refers to it).
SCALE_HELP = ("one integer factor from 2 to 16 for all axes (2, 4, 8 usual) or per axis x, y, z: 1x1x4 (thick "
              "slices), 2x2x4 (large pixels and thick slices); default 2")
#: ``upsample``'s scale also takes auto (``simulate-lr``'s cannot: an HR scan has no thick slices).
UPSAMPLE_SCALE_HELP = SCALE_HELP.removesuffix("; default 2") + (
    "; or auto: from each input's spacing, x2, or for thick slices x2 or x4 across them (and x2 in-plane where "
    "the pixels are coarser than 1.5 mm); default 2")


def _window(parser: argparse.ArgumentParser) -> None:
    from .metrics import DEFAULT_WINDOW

    parser.add_argument("--window", nargs=2, type=float, metavar=("LOW", "HIGH"), default=list(DEFAULT_WINDOW),
                        help=f"HU window (default {DEFAULT_WINDOW[0]:g} {DEFAULT_WINDOW[1]:g})")


def _lr_model(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--lr-model", metavar="MODEL", help=text + " (README, 'The LR model')")


def build_parser() -> argparse.ArgumentParser:
    from .io import WRITE_SUFFIXES
    from .upsampling import DEFAULT_METHOD, METHODS

    parser = argparse.ArgumentParser(prog="ctsr", description="Zero-shot CT super-resolution.")
    parser.add_argument("--version", action="version", version=f"ctsr {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("upsample", help="super-resolve an LR volume")
    p.add_argument("input", type=Path, help="LR volume: NRRD, NIfTI, MHA file or DICOM folder")
    p.add_argument("output", type=Path, help="HR volume to write (.nrrd, .nii, .nii.gz, .mha)")
    p.add_argument("--scale", default="2", help=UPSAMPLE_SCALE_HELP)
    p.add_argument("--method", default=DEFAULT_METHOD, choices=METHODS,
                   help=f"default {DEFAULT_METHOD}")
    p.add_argument("--seed", type=seed_argument, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--roi", help="only this box: ras:R1,A1,S1,R2,A2,S2 (mm) or ijk:I0,J0,K0,I1,J1,K1 (voxels)")
    p.add_argument("--uncertainty", type=int, default=0, metavar="K",
                   help="also write the voxelwise std over K runs with different seeds (OUT_uncertainty.*)")
    p.add_argument("--prior", help="projection prior of standard and quality (default: the internal one, "
                                   "trained on the scan's own projections, and at x4 the shipped external "
                                   "one): a folder written by `ctsr pretrain --projections` (instead of the "
                                   "shipped external one, at its scale), 'none', 'shipped' (the shipped "
                                   "diffusion model, DDNM) or a diffusion model folder")
    p.add_argument("--pretrained", help="where balanced's internal prior starts: 'shipped' (default: a "
                                        "network pretrained on other CT scans, used at x2 and x4), 'none' (from "
                                        "zero) or a folder written by `ctsr pretrain`")
    _lr_model(p, "how the input was made (default: DICOM SliceThickness for z, then estimated from the "
                 "input); e.g. gauss:1, box, z=slab:5mm, noise:15, joined by commas")
    add_progress_options(p)
    p.set_defaults(run=_run_upsample)

    p = commands.add_parser("pretrain", help="pretrain the internal prior's network on HR CT scans "
                                             "(the external start of balanced), or with --projections "
                                             "the x4 external projection prior of standard and quality")
    p.add_argument("scans", type=Path, nargs="+", help="HR CT volumes (NRRD, NIfTI, MHA file or DICOM folder)")
    p.add_argument("--out", type=Path, required=True, help="folder to write (config.json, model.safetensors, "
                                                           "README.md)")
    p.add_argument("--projections", action="store_true",
                   help="pretrain the external projection prior (DRRs of random crops; default 3000 steps, "
                        "about 8 minutes on 2 cores for two scans) instead of the volume prior")
    p.add_argument("--steps", type=int, help="Adam steps (default 2000 for the volume prior, about 3 minutes on 2 "
                                             "cores; 3000 with --projections)")
    p.add_argument("--models-per-scan", type=int, help="random LR models per scan (default 4; with --projections "
                                                       "per crop, default 2)")
    p.add_argument("--sources", default="", help="where the scans come from and their licences, written into the "
                                                 "model card")
    p.add_argument("--seed", type=seed_argument, default=0, help="random seed (default 0)")
    add_progress_options(p)
    p.set_defaults(run=_run_pretrain)

    p = commands.add_parser("simulate-lr", help="degrade an HR volume with an LR model")
    p.add_argument("input", type=Path, help="HR volume")
    p.add_argument("output", type=Path, help="LR volume to write")
    p.add_argument("--scale", default="2", help=SCALE_HELP)
    _lr_model(p, "blur and noise (default gauss:1, the paper's); e.g. box, gauss:1.5,noise:20, z=slab:5mm")
    p.add_argument("--seed", type=seed_argument, default=0, help="seed of the added noise (default 0)")
    add_progress_options(p)
    p.set_defaults(run=_run_simulate)

    p = commands.add_parser("batch", help="super-resolve a folder or a CSV manifest of scans (resumable)")
    p.add_argument("input", type=Path, help="a folder (every NRRD, NIfTI, MHA file and DICOM series under it) "
                                            "or a CSV manifest with columns input,output[,scale][,roi][,reference]")
    p.add_argument("out", type=Path, help="output folder: outputs mirror the input names (folder input), and "
                                          "batch_report.csv / .md go there")
    p.add_argument("--scale", default="2", help="as for upsample; a manifest's scale column overrides it")
    p.add_argument("--method", default=DEFAULT_METHOD, choices=METHODS, help=f"default {DEFAULT_METHOD}")
    p.add_argument("--seed", type=seed_argument, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--roi", help="as for upsample, for every scan (a manifest's roi column overrides it)")
    _lr_model(p, "how the inputs were made (default: per scan, DICOM SliceThickness, then estimated)")
    p.add_argument("--engine", default="local", choices=("local", "ray"),
                   help="local worker processes (default) or Ray tasks (pip install 'ctsr[ray]')")
    p.add_argument("--workers", type=int, help="local worker processes, at least 1 (default: what the cores and "
                                               "the free RAM allow)")
    p.add_argument("--ray-address", help="an existing Ray cluster (default: start Ray on this machine)")
    p.add_argument("--force", action="store_true", help="redo scans that are already complete")
    p.add_argument("--suffix", default=".nrrd", choices=WRITE_SUFFIXES,
                   help="output format for a folder input (default .nrrd)")
    add_progress_options(p)
    p.set_defaults(run=_run_batch)

    p = commands.add_parser("evaluate", help="PSNR and SSIM of a volume against the truth")
    p.add_argument("output", type=Path, help="volume to score")
    p.add_argument("truth", type=Path, help="ground truth on the same grid")
    _window(p)
    p.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    add_progress_options(p)
    p.set_defaults(run=_run_evaluate)

    p = commands.add_parser("demo", help="super-resolve the bundled real CT sample and draw a montage")
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="folder (default ./demo-output)")
    p.add_argument("--method", default=DEFAULT_METHOD, choices=METHODS, help=f"default {DEFAULT_METHOD}")
    add_progress_options(p)
    p.set_defaults(run=_run_demo)

    from .prior.cli import add_prior_commands
    add_prior_commands(commands)
    return parser


def _say(args, text: str) -> None:
    """A human-readable line (stderr with --json-progress, so stdout stays pure JSON)."""
    if not getattr(args, "quiet", False):
        print(text, file=sys.stderr if getattr(args, "json_progress", False) else sys.stdout)


def _run_upsample(args, progress: Progress) -> dict:
    from .upsampling import upsample_file

    result, outputs = upsample_file(args.input, args.output, args.scale, args.method, progress, seed=args.seed,
                                    device=args.device, roi=args.roi, uncertainty=args.uncertainty, prior=args.prior,
                                    lr_model=args.lr_model, pretrained=args.pretrained)
    residual = result.provenance.get("lr_residual")
    _say(args, f"wrote {args.output} ({'x'.join(map(str, result.volume.shape_ijk))} voxels, "
               f"{args.method}, {result.provenance['duration_s']} s, LR model {result.provenance['lr_model']['model']}"
               + (f", LR residual {residual['rms_hu']:.2f} HU RMS at noise {residual['noise_hu']:.2f} HU"
                  if residual else "") + ")")
    return {**outputs, "provenance": result.provenance}


def _run_pretrain(args, progress: Progress) -> dict:
    import shlex
    from dataclasses import replace

    if (args.steps is not None and args.steps < 1) or (args.models_per_scan is not None and args.models_per_scan < 1):
        raise UserError("--steps and --models-per-scan must be at least 1.")
    command = "ctsr " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.projections:
        from .external_projection_prior import ProjectionPretrainSettings, pretrain_and_save

        settings = ProjectionPretrainSettings()
        settings = replace(settings, models_per_crop=args.models_per_scan or settings.models_per_crop,
                           network=replace(settings.network, steps=args.steps or settings.network.steps))
        steps = settings.network.steps
    else:
        from .external_prior import PretrainSettings, pretrain_and_save

        settings = PretrainSettings()
        settings = replace(settings, steps=args.steps or settings.steps,
                           models_per_scan=args.models_per_scan or settings.models_per_scan)
        steps = settings.steps
    out = pretrain_and_save(args.scans, args.out, settings, args.seed, progress, command, args.sources)
    _say(args, f"wrote {out} ({steps} steps on {len(args.scans)} scan(s))")
    return {"output": str(out)}


def _run_simulate(args, progress: Progress) -> dict:
    from .grids import AXES, parse_scale, slice_axis
    from .io import check_writable, read_volume, write_volume
    from .lrmodel import PAPER, LRModel, simulate_lr

    scale = parse_scale(args.scale)
    model = LRModel.parse(args.lr_model, slice_axis(scale)) if args.lr_model else PAPER
    missing = [a for a, p, s in zip(AXES, model.profiles, scale) if s > 1 and p is None]
    if missing:
        raise UserError(f"--lr-model {args.lr_model!r} gives no blur for the {', '.join(missing)} axis; "
                        "add one (like gauss:1, box or z=slab:5mm).")
    check_writable(args.output, inputs=[args.input])
    hr = read_volume(args.input)
    progress.update("simulate-lr", 0.0, f"degrading with {model}")
    lr = simulate_lr(hr, scale, model, seed=args.seed)
    write_volume(lr, args.output)
    progress.update("simulate-lr", 1.0, "done")
    dropped = [h - l * s for h, l, s in zip(hr.shape_ijk, lr.shape_ijk, scale)]
    if any(dropped):
        _say(args, f"note: the last {dropped} HR voxels (x, y, z) do not fill a whole block and were left out")
    _say(args, f"wrote {args.output} ({'x'.join(map(str, lr.shape_ijk))} voxels, LR model {model})")
    return {"output": str(args.output), "lr_model": str(model)}


def _run_batch(args, progress: Progress) -> dict:
    from .batch import BatchOptions, find_scans, read_manifest, run_batch
    from .grids import check_scale
    from .lrmodel import LRModel

    check_scale(args.scale)
    LRModel.parse(args.lr_model)  # a bad model is refused before any scan
    if args.input.is_file() and args.input.suffix.lower() == ".csv":
        scans = read_manifest(args.input)
    elif args.input.is_dir():
        scans = find_scans(args.input, args.out, args.suffix)
    else:
        raise UserError(f"{args.input} is neither a folder nor a .csv manifest.")
    options = BatchOptions(args.method, args.scale, args.lr_model, args.seed, args.device, args.roi)
    records = run_batch(scans, options, args.out, args.engine, args.workers, args.force, args.ray_address, progress)
    counts = {s: sum(r.status == s for r in records) for s in ("done", "skipped", "failed")}
    _say(args, f"{len(records)} scans: {counts['done']} done, {counts['skipped']} already complete, "
               f"{counts['failed']} failed; report: {args.out / 'batch_report.md'}")
    for record in records:
        if record.status == "failed":
            _say(args, f"  failed: {record.name}: {record.reason}")
    if counts["failed"] and counts["failed"] == len(records):
        raise UserError(f"none of the {len(records)} scans could be super-resolved; see {args.out / 'batch_report.md'}.")
    result = {"scans": len(records), **counts, "report": str(args.out / "batch_report.csv")}
    if counts["failed"]:
        raise PartialFailure(result)
    return result


class PartialFailure(Exception):
    """Some scans of a batch failed (exit code 5); carries the batch's result dict."""


def _run_evaluate(args, progress: Progress) -> dict:
    from .io import read_volume
    from .metrics import evaluate

    progress.update("evaluate", 0.0, "reading")
    output, truth = read_volume(args.output), read_volume(args.truth)
    progress.update("evaluate", 0.2, "PSNR and SSIM")
    scores = evaluate(output, truth, tuple(args.window))
    progress.update("evaluate", 1.0, "done")
    progress.close()
    if args.json and not args.json_progress:  # with --json-progress the result event holds them
        print(to_json(scores))  # PSNR of identical volumes: null
    elif not args.json:
        _say(args, f"PSNR {scores['psnr']:.2f} dB  SSIM {scores['ssim']:.4f}  "
                   f"(window {args.window[0]:g} to {args.window[1]:g} HU)")
    return scores


def _run_demo(args, progress: Progress) -> dict:
    from .demo import run_demo

    paths = run_demo(args.out, args.method, progress)
    _say(args, f"demo written to {args.out}:\n  HR volume: {paths['output']}\n  montage:   {paths['montage']}\n"
               f"  LR model:  {paths['lr_model']} (estimated from the sample, a real scan)")
    return {k: str(v) for k, v in paths.items()}


def _raise_cancelled(signum, frame):
    raise Cancelled(f"stopped by signal {signum}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    progress = progress_from_args(args)
    return run_guarded(args.run, args, progress)


def run_guarded(run, args, progress: Progress) -> int:
    """Call ``run(args, progress)`` and map its outcome to the exit codes above (also used by
    :mod:`ctsr.worker`): errors become one sentence (and an ``error`` event with
    ``args.json_progress``), success a ``result`` event holding ``run``'s returned dict."""
    # SIGTERM (the Slicer module's cancel) and Ctrl-C interrupt the job where it is; atomic
    # writes then leave no output behind.
    signal.signal(signal.SIGTERM, _raise_cancelled)
    signal.signal(signal.SIGINT, _raise_cancelled)
    try:
        with known_errors():
            result = run(args, progress)
    except UserError as error:
        return _fail(progress, args, EXIT_USER, "user", str(error))
    except Cancelled as cancel:
        return _fail(progress, args, EXIT_CANCELLED, "cancelled", _what_cancel_left(cancel))
    except MemoryError:
        return _fail(progress, args, EXIT_MEMORY, "memory",
                     "not enough memory for this volume; try a smaller scale, an ROI or a machine with more RAM.")
    except PartialFailure as partial:
        progress.close()
        if getattr(args, "json_progress", False):
            progress.emit({"event": "result", **partial.args[0], "elapsed": round(progress.elapsed(), 2)})
        return EXIT_PARTIAL
    finally:
        progress.close()
    if getattr(args, "json_progress", False):
        progress.emit({"event": "result", **result, "elapsed": round(progress.elapsed(), 2)})
    return EXIT_OK


def _what_cancel_left(cancel: Cancelled) -> str:
    """The sentence of a cancelled command: a batch's own (the scans it finished are kept),
    else that no output was written."""
    from .batch import BatchCancelled

    return str(cancel) if isinstance(cancel, BatchCancelled) else "cancelled; no output was written."


def _fail(progress: Progress, args, code: int, kind: str, message: str) -> int:
    progress.close()  # finish the terminal bar before the message
    if getattr(args, "json_progress", False):
        progress.emit({"event": "error", "kind": kind, "message": message,
                       "elapsed": round(progress.elapsed(), 2)})
    print(f"ctsr: error: {message}", file=sys.stderr)
    return code


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
