"""The projection prior's network and noise schedule, and their offline storage.

The prior is an unconditional DDPM on single-channel 2D X-ray projections. Images are in
[-1, 1]: each projection is min-max normalized on its own (see :mod:`ctsr.prior.operators`).
The noise schedule is the paper's: T = 1000 steps, betas linear from 1e-4 to 0.02.

A model folder holds what ``UNet2DModel.save_pretrained`` and ``DDPMScheduler.save_pretrained``
write (``config.json``, ``diffusion_pytorch_model.safetensors``, ``scheduler_config.json``),
plus ``README.md`` (the model card, :mod:`ctsr.prior.card`) and ``ctsr_prior.json`` (how it was
trained and how well it does). Loading is offline and reads safetensors only: nothing is ever
unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel

from ..errors import UserError
from ..resources import resources_dir
from .config import PRESETS

NUM_TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02
METADATA_FILE = "ctsr_prior.json"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
DEFAULT_MODEL_NAME = "xray-ddpm-tiny"

def make_unet(preset: str = "tiny", sample_size: int = 64) -> UNet2DModel:
    """A fresh, randomly initialized one-channel UNet of the given size preset."""
    if preset not in PRESETS:
        raise UserError(f"unknown model preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    return UNet2DModel(sample_size=sample_size, in_channels=1, out_channels=1, **PRESETS[preset])


def make_scheduler() -> DDPMScheduler:
    """The training noise schedule (T = 1000, linear betas 1e-4..0.02, samples in [-1, 1])."""
    return DDPMScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, beta_schedule="linear",
                         beta_start=BETA_START, beta_end=BETA_END, clip_sample=True,
                         clip_sample_range=1.0, prediction_type="epsilon")


@dataclass
class Prior:
    """A loaded prior: the noise-predicting UNet, the cumulative schedule and its metadata."""

    unet: UNet2DModel
    alphas_cumprod: torch.Tensor  # [T] float64, alpha-bar_t of the training schedule
    metadata: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def levels(self) -> int:
        """Number of resolution levels; image sides must be multiples of 2 ** (levels - 1)."""
        return len(self.unet.config.block_out_channels)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @classmethod
    def from_unet(cls, unet: UNet2DModel, scheduler: DDPMScheduler | None = None, metadata=None):
        scheduler = scheduler or make_scheduler()
        return cls(unet.eval(), alphas_cumprod(scheduler), dict(metadata or {}))


def alphas_cumprod(scheduler: DDPMScheduler) -> torch.Tensor:
    """alpha-bar_t of a linear-beta schedule in float64 (diffusers keeps float32)."""
    c = scheduler.config
    if c.beta_schedule != "linear":
        return scheduler.alphas_cumprod.to(torch.float64)
    betas = torch.linspace(c.beta_start, c.beta_end, c.num_train_timesteps, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


def default_model_dir() -> Path:
    """The shipped default prior, ``Resources/Models/xray-ddpm-tiny``."""
    return resources_dir() / "Models" / DEFAULT_MODEL_NAME


def save_prior(unet: UNet2DModel, out_dir: Path, metadata: dict, scheduler: DDPMScheduler | None = None) -> None:
    """Write the UNet (config + safetensors), the schedule and ``ctsr_prior.json`` to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(out_dir, safe_serialization=True)
    (scheduler or make_scheduler()).save_pretrained(out_dir)
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


def load_prior(path: str | Path | None = None, device: str | torch.device = "cpu") -> Prior:
    """Load a prior folder offline (``None``: the shipped default) onto ``device``.

    Raises :class:`UserError` with one sentence if the folder is missing, incomplete or corrupt,
    or holds a model that is not a one-channel image UNet.
    """
    folder = Path(path) if path is not None else default_model_dir()
    if not folder.is_dir():
        raise UserError(f"the prior model folder {folder} does not exist.")
    for name in ("config.json", WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise UserError(f"the prior model folder {folder} has no {name}; "
                            "it must hold a diffusers UNet2DModel saved with safetensors.")
    try:
        unet = UNet2DModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    except Exception as error:  # diffusers raises many types for a bad folder
        raise UserError(f"the prior model in {folder} could not be loaded ({type(error).__name__}: "
                        f"{str(error).splitlines()[0] if str(error) else 'corrupt file'}).") from error
    if unet.config.in_channels != 1 or unet.config.out_channels != 1:
        raise UserError(f"the prior model in {folder} is not a one-channel image model.")
    try:
        scheduler = (DDPMScheduler.from_pretrained(folder, local_files_only=True)
                     if (folder / "scheduler_config.json").is_file() else make_scheduler())
    except Exception as error:
        raise UserError(f"the noise schedule in {folder} could not be read ({type(error).__name__}).") from error
    metadata = {}
    if (folder / METADATA_FILE).is_file():
        try:
            metadata = json.loads((folder / METADATA_FILE).read_text())
        except ValueError as error:
            raise UserError(f"{folder / METADATA_FILE} is not valid JSON.") from error
    prior = Prior.from_unet(unet.to(device), scheduler, metadata)
    prior.path = folder
    return prior
