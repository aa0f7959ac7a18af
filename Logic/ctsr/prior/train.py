"""Training the projection prior with Hugging Face Accelerate (``ctsr prior train``).

The same code runs on a CPU, one GPU, or several GPUs and nodes (``accelerate launch -m
ctsr.cli prior train ...``): every process draws its own random crops (seeded by the seed, the
step and the process index, so a resumed run continues the same stream), gradients are averaged
by Accelerate, and only the main process writes files.

Objective: the DDPM noise-prediction loss (MSE on epsilon, t uniform in 0..999, the schedule of
:func:`ctsr.prior.model.make_scheduler`). AdamW with linear warm-up; EMA of the weights (the
EMA weights are what is exported). A checkpoint (weights and EMA as safetensors, optimizer
state loaded with ``weights_only=True``, the step in JSON) is written every
``checkpoint_every`` steps and at the end; a run that finds one resumes from it.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..errors import UserError
from ..progress import Progress, SilentProgress
from .config import TrainConfig
from .model import make_scheduler, make_unet, save_prior

CHECKPOINT_STATE = "state.json"


def build_sampler(config: TrainConfig, progress: Progress):
    """The :class:`~ctsr.prior.data.CropSampler` over the DRRs and radiographs of ``config``,
    and a summary of the data for the model card."""
    from ..io import read_volume
    from .data import CropSampler, ct_files, drr_images, radiograph_images, xray_files

    cts = ct_files(Path(config.ct_dir), tuple(config.holdout))
    xrays = xray_files(Path(config.xray_dir)) if config.xray_dir else []
    if not cts and not xrays:
        raise UserError(f"no CT volume in {config.ct_dir} and no radiograph to train on.")
    drrs, radiographs = [], []
    for i, path in enumerate(cts):
        progress.update("training data", i / max(1, len(cts)), f"DRRs of {path.name}")
        drrs += drr_images(read_volume(path), n_views=config.n_views, seed=config.seed + i)
    for path in xrays:
        radiographs += radiograph_images(path)
    summary = {"ct_volumes": [p.name for p in cts], "radiographs": [p.name for p in xrays],
               "held_out": list(config.holdout), "drr_images": len(drrs),
               "radiograph_images": len(radiographs)}
    return CropSampler(drrs, radiographs, config.crop, config.xray_fraction), summary


def _save_checkpoint(folder: Path, unet, ema, optimizer, step: int, elapsed: float, data: dict,
                     loss: float | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, folder / "unet.safetensors")
    save_file({f"{i}": p.detach().contiguous() for i, p in enumerate(ema.shadow_params)}, folder / "ema.safetensors")
    # The optimizer's tensors as safetensors, the rest (hyperparameters) as JSON: nothing pickled.
    optimizer_state = optimizer.state_dict()
    save_file({f"{index}.{name}": value.contiguous() for index, slots in optimizer_state["state"].items()
               for name, value in slots.items()}, folder / "optimizer.safetensors")
    (folder / CHECKPOINT_STATE).write_text(json.dumps({"step": step, "ema_step": ema.optimization_step,
                                                       "train_seconds": elapsed, "data": data,
                                                       "recent_loss": loss,
                                                       "optimizer_groups": optimizer_state["param_groups"]}))


def _load_checkpoint(folder: Path, unet, ema, optimizer) -> tuple[int, float, dict, float | None]:
    state = json.loads((folder / CHECKPOINT_STATE).read_text())
    if not (folder / "optimizer.safetensors").is_file() or "optimizer_groups" not in state:
        raise UserError(f"the checkpoint in {folder} was written by an older version (its optimizer state is "
                        "pickled); start a new run with another checkpoint folder.")
    unet.load_state_dict(load_file(folder / "unet.safetensors"))
    shadow = load_file(folder / "ema.safetensors")
    for i, p in enumerate(ema.shadow_params):
        p.data.copy_(shadow[f"{i}"])
    ema.optimization_step = state["ema_step"]
    slots: dict = {}
    for key, value in load_file(folder / "optimizer.safetensors").items():
        index, name = key.split(".", 1)
        slots.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": slots, "param_groups": state["optimizer_groups"]})
    return (int(state["step"]), float(state.get("train_seconds", 0.0)), state.get("data", {}),
            state.get("recent_loss"))


def train(config: TrainConfig, out_dir: Path, checkpoint_dir: Path | None = None,
          progress: Progress | None = None) -> dict:
    """Train (or resume) a prior and export its EMA weights to ``out_dir``; returns the metadata."""
    try:
        from accelerate import Accelerator
    except ImportError as error:
        raise UserError("training needs Hugging Face Accelerate: pip install 'ctsr[train]'.") from error
    from diffusers.training_utils import EMAModel

    progress = progress or SilentProgress()
    out_dir = Path(out_dir)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else out_dir / "checkpoint"
    accelerator = Accelerator()
    main = accelerator.is_main_process
    report = progress if main else SilentProgress()
    torch.manual_seed(config.seed)

    unet = make_unet(config.preset, config.crop)
    scheduler = make_scheduler()
    ema = EMAModel(unet.parameters(), decay=config.ema_decay, use_ema_warmup=True, power=2 / 3)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.learning_rate, weight_decay=0.0)
    step, previous_seconds, data_summary, checkpoint_loss = 0, 0.0, {}, None
    if (checkpoint_dir / CHECKPOINT_STATE).is_file():
        step, previous_seconds, data_summary, checkpoint_loss = _load_checkpoint(checkpoint_dir, unet, ema,
                                                                                 optimizer)
        report.log(f"resumed from {checkpoint_dir} at step {step}")
    if step < config.steps:  # a finished run only exports
        sampler, data_summary = build_sampler(config, report.span(0.0, 0.05))
    unet, optimizer = accelerator.prepare(unet, optimizer)
    ema.to(accelerator.device)
    alphas_cumprod = scheduler.alphas_cumprod.to(accelerator.device, torch.float32)
    start, losses = time.monotonic(), []

    def elapsed():
        return previous_seconds + time.monotonic() - start

    unet.train()
    while step < config.steps:
        rng = np.random.default_rng([config.seed, step, accelerator.process_index])
        x0 = sampler.batch(config.batch_size, rng).to(accelerator.device)
        generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
        noise = torch.randn(x0.shape, generator=generator).to(accelerator.device)
        t = torch.randint(0, len(alphas_cumprod), (x0.shape[0],), generator=generator).to(accelerator.device)
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        loss = F.mse_loss(unet(a.sqrt() * x0 + (1 - a).sqrt() * noise, t).sample, noise)
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * min(1.0, (step + 1) / max(1, config.warmup))
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        ema.step(accelerator.unwrap_model(unet).parameters())
        step += 1
        losses.append(float(loss.detach()))
        if main and (step % 10 == 0 or step == config.steps):
            report.update("training", 0.05 + 0.95 * step / config.steps,
                          f"step {step}/{config.steps} loss {np.mean(losses[-50:]):.4f}",
                          iteration=step, loss=round(float(np.mean(losses[-50:])), 5))
        if main and (step % config.checkpoint_every == 0 or step == config.steps):
            _save_checkpoint(checkpoint_dir, accelerator.unwrap_model(unet), ema, optimizer, step, elapsed(),
                             data_summary, round(float(np.mean(losses[-50:])), 5))
        accelerator.wait_for_everyone()

    metadata = {}
    if main:
        final = copy.deepcopy(accelerator.unwrap_model(unet)).cpu().eval()
        ema.copy_to(final.parameters())
        metadata = {"format": "ctsr-prior/1", "training": asdict(config), "data": data_summary,
                    "train_steps": step, "train_hours": round(elapsed() / 3600, 3),
                    "parameters": sum(p.numel() for p in final.parameters()),
                    "devices": f"{accelerator.num_processes} x {accelerator.device.type}",
                    "final_loss": round(float(np.mean(losses[-50:])), 5) if losses else checkpoint_loss}
        save_prior(final, out_dir, metadata, scheduler)
        from .card import write_model_card
        write_model_card(out_dir)
    accelerator.wait_for_everyone()
    return metadata
