"""The external start of the internal prior: a :class:`ctsr.residual_cnn.ResidualCNN`
pretrained on *other* CT scans, which ``balanced`` fine-tunes on the scan at run time.

Pretraining (:func:`pretrain`): each HR scan is degraded by :attr:`PretrainSettings.models_per_scan`
random LR models (:func:`random_lr_model`: a Gaussian of sigma drawn in HR voxels or the block
mean, white noise up to :attr:`PretrainSettings.max_noise_hu`; ``ctsr.lrmodel.simulate_lr``),
brought back by ``fast`` under the model *estimated* from it (as a user runs it,
:func:`ctsr.lrestimate.resolve_lr_model`), and the network learns ``fast(L) -> HR`` on all of
them at once, from patches flipped and with their axes put in a random order (two or three
scans are few: the network should learn no anatomy tied to one axis of them). Alone it is
what transfers from other scans; fine-tuned for the internal prior's 300 steps on the scan's
own pair it gained +0.35 dB over learning from zero, leave one scan out, on the 36 x2 cells of
``benchmarks/degradation.md`` (worst cell -0.07, both averaged over flips; with one pass each
+0.32, worst -0.26; without the axis permutations +0.27, worst -0.29).

Storage: a folder with ``config.json`` (what the network is, the scale and LR models it was
pretrained for, the scans and steps) beside ``model.safetensors`` and a model card
``README.md``. Loading (:func:`load_external_prior`) is offline and reads safetensors only;
a folder that does not hold such a network is one :class:`ctsr.errors.UserError` sentence.

Arrays are KJI in HU; the network sees HU / :data:`ctsr.residual_cnn.HU_SCALE`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .errors import UserError
from .grids import Scale, is_thick_slice
from .internal_prior import InternalPriorSettings, consistent_upsample
from .lrestimate import resolve_lr_model
from .lrmodel import LRModel, simulate_lr
from .network_folder import (CONFIG_FILE, PretrainedNetwork, load_network_weights, read_network_config,
                             write_network_folder)
from .progress import Progress, SilentProgress
from .residual_cnn import HU_SCALE, ResidualCNN, fit_residual_network
from .resources import resources_dir
from .volume import Volume

FORMAT = "ctsr-external-volume-prior"
WHAT = "pretrained volume prior"
SHIPPED_NAME = "volume-prior-x2"


@dataclass(frozen=True)
class PretrainSettings:
    """steps: Adam steps (500 gave +0.13 dB after fine-tuning, 2000 +0.26,
    ``benchmarks/external_init*.md``); models_per_scan: random LR models per HR scan;
    sigma_range: the Gaussian's sigma (HR voxels) is drawn uniformly in it; box_share: the
    share of block-mean models; max_noise_hu: the white noise SD (HU) is drawn in [0, it];
    scale: IJK, the one scale the network is pretrained (and used) for; axis_permutations: each
    batch of patches also sees its axes in a random order (besides the flips), so the network
    learns no axis-specific anatomy of the few scans it sees."""

    steps: int = 2000
    models_per_scan: int = 4
    sigma_range: tuple[float, float] = (0.4, 1.6)
    box_share: float = 0.25
    max_noise_hu: float = 30.0
    scale: Scale = (2, 2, 2)
    axis_permutations: bool = True


def random_lr_model(rng: np.random.Generator, settings: PretrainSettings = PretrainSettings()) -> LRModel:
    """One LR model of the pretraining distribution (same blur on every axis)."""
    low, high = settings.sigma_range
    blur = "box" if rng.random() < settings.box_share else f"gauss:{rng.uniform(low, high):.2f}"
    return LRModel.parse(f"{blur},noise:{rng.uniform(0, settings.max_noise_hu):.1f}")


def pretraining_pairs(volumes: list[Volume], settings: PretrainSettings, seed: int = 0,
                      progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(fast(L), HR)`` of every HR volume under ``settings.models_per_scan`` random LR models,
    each cropped to the common in-plane (J, I) shape and stacked along K; HU / HU_SCALE."""
    progress = progress or SilentProgress()
    rng = np.random.default_rng(seed)
    sources, targets = [], []
    total = len(volumes) * settings.models_per_scan
    for volume in volumes:
        for _ in range(settings.models_per_scan):
            lr = simulate_lr(volume, settings.scale, random_lr_model(rng, settings), seed=int(rng.integers(1 << 30)))
            fast = consistent_upsample(lr, settings.scale, resolve_lr_model(lr, settings.scale)).array
            k, j, i = fast.shape
            sources.append(fast)
            targets.append(volume.array[:k, :j, :i].astype(np.float32))
            progress.update("pretraining", len(sources) / total, f"pretraining pair {len(sources)}/{total}")
    j = min(s.shape[1] for s in sources)
    i = min(s.shape[2] for s in sources)
    stack = lambda arrays: np.concatenate([a[:, :j, :i] for a in arrays]) / HU_SCALE
    return stack(sources), stack(targets)


def pretrain(volumes: list[Volume], settings: PretrainSettings = PretrainSettings(),
             network: InternalPriorSettings = InternalPriorSettings(), seed: int = 0,
             device: str | torch.device = "cpu", progress: Progress | None = None) -> ResidualCNN:
    """A :class:`ResidualCNN` of ``network``'s width and depth (3D kernel) trained for
    ``settings.steps`` steps on :func:`pretraining_pairs` of ``volumes`` (HR, HU)."""
    progress = progress or SilentProgress()
    if not volumes:
        raise UserError("pretraining needs at least one HR CT volume.")
    source, target = pretraining_pairs(volumes, settings, seed, progress.span(0.0, 0.2))
    return fit_residual_network(source, target, (3, 3, 3), replace(network, steps=settings.steps), seed, device,
                                progress.span(0.2, 1.0), "pretraining", loss_unit=HU_SCALE**2,
                                activity="learning from other scans", permute_axes=settings.axis_permutations)


def save_external_prior(network: ResidualCNN, folder, settings: PretrainSettings, metadata: dict) -> Path:
    """Write ``network``, ``config.json`` and the model card to ``folder``
    (:func:`ctsr.network_folder.write_network_folder`: whole or not at all, never over a folder
    that holds something else)."""
    convolutions = [m for m in network.modules() if isinstance(m, torch.nn.Conv3d)]
    config = {"format": FORMAT, "channels": convolutions[0].out_channels, "layers": len(convolutions),
              "kernel": list(convolutions[0].kernel_size), "hu_scale": HU_SCALE,
              "pretraining": {**asdict(settings), "scale": list(settings.scale)}, **metadata}
    return write_network_folder(network, folder, config, model_card(config), WHAT)


def model_card(config: dict) -> str:
    """The README.md of a pretrained folder, from its ``config.json``."""
    p = config["pretraining"]
    t = InternalPriorSettings()  # what pretrain() trains with, beside the steps
    scale = "x".join(str(s) for s in p["scale"])
    lines = [f"# {config.get('name', SHIPPED_NAME)}: the external start of the internal prior", "",
             "A `ctsr.residual_cnn.ResidualCNN` (3D, "
             f"{config['layers']} convolutions of {'x'.join(map(str, config['kernel']))}, {config['channels']} "
             f"channels, leaky ReLU, replicate padding; input and output in HU / {config['hu_scale']:g}) that adds "
             f"to `fast`'s result at scale {scale} (IJK) what `fast` misses. The `balanced` preset starts its "
             "internal prior from it and fine-tunes it on the scan's own pair (300 steps) wherever that pair is at "
             "this scale (at x2, and in the first of two levels at x4); elsewhere (through-plane, in-plane-only "
             "scales, `--pretrained none`) the internal prior learns from zero.", "",
             "## Data",
             f"- HR scans: {', '.join(config.get('scans', []))} (whole volumes, HU)",
             sources_line(config),
             f"- each degraded by {p['models_per_scan']} random LR models: Gaussian sigma uniform in "
             f"{p['sigma_range'][0]}..{p['sigma_range'][1]} HR voxels or the block mean ({p['box_share']:.0%}), "
             f"white noise uniform in 0..{p['max_noise_hu']:g} HU; `fast` under the LR model estimated from each LR "
             "is the input, the HR scan the target",
             "- scored only on scans it did not see: the benchmarks train one such network per held-out scan "
             "on the others (leave one scan out); the bundled sample is a crop of one of the scans above", "",
             "## Training",
             f"- {p['steps']} Adam steps of {t.batch} patches of {t.patch}^3 with flips"
             f"{' and the axes in a random order' if p.get('axis_permutations') else ''}, lr {t.learning_rate:g} "
             f"cosine-decayed to {t.learning_rate / 10:g}, seed {config.get('seed', 0)}",
             f"- {config.get('wall_s', '?')} s on {config.get('device', '?')} "
             f"(torch threads: {config.get('threads', '?')}), {config.get('date', '?')}",
             f"- reproduce: `{config.get('command', '?')}`", "",
             "## Measured (this recipe with `ctsr pretrain`'s defaults, leave one scan out)",
             "- `benchmarks/degradation.md`, the 36 x2 cells (three held-out 96^3 crops, four blurs, 0 to 30 HU): "
             "`balanced` from it gains +0.35 dB over `balanced` from zero on average, worst cell -0.07 (head, "
             "gauss:0.5, 30 HU; 2 of the 12 head cells below; both averaged over flips); over cubic +2.44 dB, "
             "worst +1.10",
             "- measured with one pass each (before the flip average; `git show c7cd1cb:benchmarks/...`):",
             "- `benchmarks/degradation_foreign.md`, the 18 x2 inputs made by other tools: +0.26 dB over learning "
             "from zero, worst -0.28 (head, B-spline resampling with correlated noise; 4 of the 6 head inputs below)",
             "- `benchmarks/degradation_between.md`, the 12 x2 inputs blurred between the estimate's widths: +0.31 dB "
             "over learning from zero, worst -0.28 (head, gauss:0.75 without noise)",
             "- `benchmarks/degradation_x4_large.md`, 16 x4 cells (160^3 chest and 104 x 192 x 192 head crops; the "
             "first of two levels starts from it): +0.30 dB over learning from zero, no cell below",
             "- `benchmarks/external_init.md` (12 cells, with networks pretrained on 2026-12-01 without axis "
             "permutations, before the in-plane blur estimate left out the block mean): alone -0.35 dB under "
             "`balanced` from zero, fine-tuned 300 steps +0.26 dB", ""]
    return "\n".join(lines)


def shipped_dir() -> Path:
    """The shipped network, ``Resources/Models/volume-prior-x2``."""
    return resources_dir() / "Models" / SHIPPED_NAME


def load_external_prior(folder: str | Path | None = None, network: InternalPriorSettings = InternalPriorSettings(),
                        device: str | torch.device = "cpu") -> PretrainedNetwork:
    """The pretrained network in ``folder`` (None: the shipped one) onto ``device``, offline
    and from safetensors. Raises :class:`UserError` with one sentence when the folder is
    missing, lacks a file, or holds something else than a network of ``network``'s width and
    depth."""
    shipped = folder is None
    folder = shipped_dir() if shipped else Path(folder)
    config = read_network_config(folder, FORMAT, WHAT)
    try:
        scale = tuple(int(s) for s in config["pretraining"]["scale"])
    except (KeyError, TypeError, ValueError):
        scale = None
    if scale is None or len(scale) != 3:
        raise UserError(f"{folder} does not hold a pretrained volume prior ({CONFIG_FILE} has no pretraining "
                        "scale).")
    if (config.get("channels"), config.get("layers")) != (network.channels, network.layers):
        raise UserError(f"the pretrained volume prior in {folder} has {config.get('channels')} channels and "
                        f"{config.get('layers')} layers; the internal prior uses {network.channels} and "
                        f"{network.layers}.")
    if (config.get("hu_scale"), config.get("kernel")) != (HU_SCALE, [3, 3, 3]):
        raise UserError(f"the pretrained volume prior in {folder} works in HU / {config.get('hu_scale')} with "
                        f"{config.get('kernel')} kernels; the internal prior works in HU / {HU_SCALE:g} with "
                        "[3, 3, 3] kernels.")
    model = ResidualCNN(network.channels, network.layers, (3, 3, 3))
    load_network_weights(model, folder, WHAT)
    name = SHIPPED_NAME if shipped else str(folder)
    return PretrainedNetwork(model.to(device).eval(), scale, name, config)


def read_hr_scans(paths: list[Path], progress: Progress) -> list[Volume]:
    """The HR scans at ``paths`` for pretraining, each checked usable; an anisotropic one is
    logged (pretraining takes every scan as HR along all three axes)."""
    from .io import read_volume

    volumes = [read_volume(path) for path in paths]
    for path, volume in zip(paths, volumes):
        volume.check_usable()
        if is_thick_slice(volume.spacing):
            progress.log(f"{Path(path).name} has voxels of {' x '.join(f'{s:.3g}' for s in volume.spacing)} mm: "
                         "pretraining takes every scan as HR along all three axes")
    return volumes


def pretraining_record(out, paths: list[Path], seed: int, started: float, command: str, sources: str = "") -> dict:
    """What a pretrained folder's ``config.json`` says about how it was made: its name, the
    scans, where they come from and their licences (``sources``, as the user gave it), seed,
    wall time since ``started`` (``time.monotonic()``), device, threads, date and the command."""
    return {"name": Path(out).name, "scans": [Path(p).name for p in paths], "sources": sources, "seed": seed,
            "wall_s": round(time.monotonic() - started, 1), "device": "cpu", "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d"), "command": command}


def sources_line(config: dict) -> str:
    """The model card's line on where the training scans come from and their licences."""
    return f"- sources and licences: {config.get('sources') or 'not recorded (ctsr pretrain --sources)'}"


def pretrain_and_save(paths: list[Path], out, settings: PretrainSettings = PretrainSettings(), seed: int = 0,
                      progress: Progress | None = None, command: str = "", sources: str = "") -> Path:
    """Read the HR scans at ``paths``, :func:`pretrain` on them and :func:`save_external_prior`
    to ``out`` with what was done (:func:`pretraining_record`; ``sources``: where the scans come
    from and their licences, for the model card)."""
    start = time.monotonic()
    progress = progress or SilentProgress()
    network = pretrain(read_hr_scans(paths, progress), settings, seed=seed, progress=progress)
    return save_external_prior(network, out, settings, pretraining_record(out, paths, seed, start, command, sources))
