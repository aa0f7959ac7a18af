"""The external projection prior: a 2D CNN conditioned on ``y``, pretrained on DRRs of *other* CT scans,
that turns ``P_up`` into the target ``Y`` of the NAB-GS presets where the scan cannot teach
itself in the projection domain (x4; :mod:`ctsr.internal_projection_prior` covers x2).

**What it sees** (:func:`conditioning`), per projection, each image divided by ``s``, the
largest value of that projection of ``P_up`` (so scans of any size look alike): ``P_up`` (the
residual adds to it) and ``y`` brought to the HR detector by bicubic interpolation; it gives
``Y = P_up + s * f(P_up, y)``. It does **not** see the LR model's parameters: measured with them
as constant input planes (blur per detector axis and noise SD, as estimated from the input), the
network pretrained without the chest CTA swung by 5.7 dB on a held-out chest cell between a
noise plane of 0 and 144 HU (the x4 noise estimate of a 24^3 input reads its anatomy as noise,
2 to 154 HU on random crops made with 0.5 to 28 HU, so the plane told the network which scan it
saw, not how noisy it was), and on every x4 training crop the blur estimate is the default
(too few LR voxels), so those planes carry nothing.

**How it is made** (:func:`pretraining_pairs`, the pipeline's own operators): random cubic crops
of each HR scan, each degraded by random LR models (:func:`ctsr.external_prior.random_lr_model`:
Gaussian or block mean, 0 to 30 HU) with :func:`ctsr.lrmodel.simulate_lr`, then ``P_up`` (of the
cubic upsampling), ``y`` (of the LR, on the binned detector) and the truth (of the HR crop)
projected by the pipeline's cone-beam scan (:func:`ctsr.geometry.scan_geometries`) over views at
a random angle offset. The network learns ``truth - P_up`` on all of them.

Storage: a :mod:`ctsr.network_folder` of format :data:`FORMAT`. Projections are (views, rows,
columns) of line integrals of the normalized intensity (HU window mapped to [0, 1]), scene
units; volumes KJI in HU.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .baselines import upsample_interpolate
from .errors import UserError
from .external_prior import (PretrainSettings, pretraining_record, random_lr_model, read_hr_scans,
                             sources_line)
from .geometry import detector_binning, scan_geometries
from .grids import AXES, Scale
from .internal_projection_prior import KERNEL, STAGE, one_level_down
from .lrmodel import GIVEN, LRModel, simulate_lr
from .metrics import DEFAULT_WINDOW
from .network_folder import PretrainedNetwork, load_network_weights, read_network_config, write_network_folder
from .progress import Progress, SilentProgress
from .projector import project_hu
from .residual_cnn import ResidualCNN, TrainingSettings, apply_in_tiles, fit_residual_network
from .resources import resources_dir
from .roi import Roi, crop_to_roi
from .volume import Volume

FORMAT = "ctsr-external-projection-prior"
WHAT = "pretrained projection prior"
SHIPPED_NAME = "projection-prior-x4"
#: Input channels of :func:`conditioning`.
INPUTS = 2


@dataclass(frozen=True)
class ProjectionPretrainSettings:
    """scale: IJK, the one scale it is pretrained (and used) for; crops_per_scan, crop: random
    cubic crops of each HR scan (edge in HR voxels, a multiple of the scale; shorter scans give
    their whole extent); models_per_crop: random LR models per crop (the distribution of
    :class:`ctsr.external_prior.PretrainSettings`); views: projections per crop and model, at a
    random angle offset; network: the CNN's width, depth and training (steps, patch, batch:
    patches of ``patch``^2 per step are ``batch * patch``)."""

    scale: Scale = (4, 4, 4)
    crops_per_scan: int = 4
    crop: int = 96
    models_per_crop: int = 2
    views: int = 24
    lr_models: PretrainSettings = PretrainSettings()
    network: TrainingSettings = TrainingSettings(steps=3000, patch=32, batch=2, channels=16, layers=8)


def conditioning(p_up: torch.Tensor, y: torch.Tensor, scale: Scale) -> tuple[np.ndarray, np.ndarray]:
    """The network's input, (:data:`INPUTS`, views, rows, columns) float32: ``p_up`` (views,
    rows, columns on the HR detector) and bicubic ``y`` (the same views on the detector binned
    for ``scale``), each projection divided by its ``s``; and ``s`` (views,), the largest value of
    each projection of ``p_up`` (at least 1e-6)."""
    from .prior.operators import bicubic

    unit = torch.clamp(p_up.flatten(1).amax(1), min=1e-6)[:, None, None]
    images = [p_up / unit, bicubic(y[:, None], detector_binning(scale))[:, 0] / unit]
    return torch.stack(images).numpy().astype(np.float32), unit[:, 0, 0].numpy()


def _random_crop(volume: Volume, edge: int, multiple: int, rng: np.random.Generator) -> Volume:
    """A random box of ``volume`` of ``edge`` voxels per axis (fewer where the volume is shorter),
    each side a multiple of ``multiple``; in place in RAS."""
    sides = [min(edge, n) // multiple * multiple for n in volume.shape_ijk]
    low = [int(rng.integers(0, n - s + 1)) for n, s in zip(volume.shape_ijk, sides)]
    return crop_to_roi(volume, Roi("ijk", tuple(low), tuple(a + s for a, s in zip(low, sides))))


def scan_pairs(hr: Volume, model: LRModel, scale: Scale, n_views: int, angle_offset: float = 0.0,
               seed: int = 0, truth: torch.Tensor | None = None):
    """What the pipeline sees of ``hr`` degraded by ``model`` at ``scale``, and the truth:
    ``(inputs, unit, target, truth)``: :func:`conditioning`, ``truth / unit`` and the truth's
    projections (views at ``angle_offset`` + even steps over 180 degrees, the pipeline's scan).
    ``truth``: the HR projections when already made for the same views."""
    lr = simulate_lr(hr, scale, model, seed=seed)
    v_up = upsample_interpolate(lr, scale, "cubic")
    geometry, _ = scan_geometries(lr, v_up, scale, n_views)
    geometry = geometry.with_angles(np.asarray(geometry.angles) + angle_offset)
    lr_geometry = geometry.of_coarser_grid(lr, scale)
    truth = project_hu(hr.array, geometry) if truth is None else truth
    inputs, unit = conditioning(project_hu(v_up.array, geometry), project_hu(lr.array, lr_geometry), scale)
    return inputs, unit, (truth / torch.from_numpy(unit)[:, None, None]).numpy(), truth


def pretraining_pairs(volumes: list[Volume], settings: ProjectionPretrainSettings = ProjectionPretrainSettings(),
                      seed: int = 0, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, target)`` of every crop and random LR model of ``volumes`` (HR, HU), stacked
    along the views axis and cropped to the common detector shape: (INPUTS, N, rows, columns)
    and (N, rows, columns), in the units of :func:`conditioning`."""
    progress = progress or SilentProgress()
    rng = np.random.default_rng(seed)
    sources, targets = [], []
    total = len(volumes) * settings.crops_per_scan * settings.models_per_crop
    for volume in volumes:
        for _ in range(settings.crops_per_scan):
            crop = _random_crop(volume, settings.crop, max(settings.scale), rng)
            offset, truth = float(rng.uniform(0, 2 * np.pi)), None
            for _ in range(settings.models_per_crop):
                model = random_lr_model(rng, settings.lr_models)
                inputs, _, target, truth = scan_pairs(crop, model, settings.scale, settings.views, offset,
                                                      int(rng.integers(1 << 30)), truth)
                sources.append(inputs)
                targets.append(target)
                progress.update("pretraining", len(targets) / total, f"pretraining projections {len(targets)}/{total}")
    rows = min(t.shape[1] for t in targets)
    cols = min(t.shape[2] for t in targets)
    return (np.concatenate([s[:, :, :rows, :cols] for s in sources], axis=1),
            np.concatenate([t[:, :rows, :cols] for t in targets]))


def pretrain(volumes: list[Volume], settings: ProjectionPretrainSettings = ProjectionPretrainSettings(),
             seed: int = 0, device: str | torch.device = "cpu", progress: Progress | None = None) -> ResidualCNN:
    """The :class:`ResidualCNN` (2D kernel, :data:`INPUTS` channels) trained on
    :func:`pretraining_pairs` of ``volumes``."""
    progress = progress or SilentProgress()
    if not volumes:
        raise UserError("pretraining needs at least one HR CT volume.")
    source, target = pretraining_pairs(volumes, settings, seed, progress.span(0.0, 0.4))
    return fit_residual_network(source, target, KERNEL, settings.network, seed, device, progress.span(0.4, 1.0),
                                "pretraining", activity="learning projections from other scans")


def upsample_projections_externally(prior: PretrainedNetwork, p_up: torch.Tensor, y: torch.Tensor,
                                    scale: Scale, device: str | torch.device = "cpu",
                                    progress: Progress | None = None) -> torch.Tensor:
    """``Y = P_up + s * f(conditioning)`` (same shape and units as ``p_up``; ``scale`` IJK)."""
    progress = progress or SilentProgress()
    inputs, unit = conditioning(p_up.cpu(), y.cpu(), scale)
    target = apply_in_tiles(prior.network, inputs, torch.device(device), progress, unit=1.0, stage=STAGE)
    return torch.from_numpy(target * unit[:, None, None]).to(p_up.device)


class TooSmallToCheck(ValueError):
    """The input is too small for :func:`self_check` (the prior then declines)."""


def self_check(prior: PretrainedNetwork, lr: Volume, scale: Scale, model: LRModel, y: torch.Tensor,
               lr_geometry, seed: int = 0, device: str | torch.device = "cpu", window=DEFAULT_WINDOW) -> float:
    """The network's gain (dB) on the scan's own relation one level down: ``L`` degraded once
    more by ``model`` (no noise added: at x4 the noise estimate reads anatomy as noise) and
    brought back by cubic (:func:`ctsr.internal_projection_prior.one_level_down`), projected on
    ``lr_geometry`` (the LR detector: ``P_up2``), and ``L2`` projected on that detector binned
    again (``y2``); the gain is ``10 log10(|P_up2 - y|^2 / |Y2 - y|^2)`` with ``Y2`` the network's
    output for ``(P_up2, y2)`` and ``y`` the projections of ``L`` on ``lr_geometry`` (the
    pipeline's, in its units: ``window`` mapped to [0, 1]). Positive: what the network adds
    brings the scan's own coarser projections closer to its finer ones. Raises
    :class:`TooSmallToCheck` (a sentence) when ``lr`` is too small to be degraded once more
    (under 2 voxels left)."""
    short = [(axis, n) for axis, (n, s) in enumerate(zip(lr.shape_ijk, scale)) if s > 1 and n // s < 2]
    if short:
        axis, n = short[0]
        raise TooSmallToCheck(f"the input is too small to check it on ({AXES[axis]}: {n} voxels, "
                              f"{2 * scale[axis]} needed)")
    u2, low = one_level_down(lr, scale, model.with_noise(0.0, "none", GIVEN), seed)
    p_up2 = project_hu(u2, lr_geometry, window, device)
    y2 = project_hu(low.array, lr_geometry.of_coarser_grid(low, scale), window, device)
    y = y.to(p_up2.device)
    y2_up = upsample_projections_externally(prior, p_up2, y2, scale, device)
    return float(10 * torch.log10(((p_up2 - y) ** 2).sum() / ((y2_up - y) ** 2).sum().clamp(min=1e-20)))


def model_card(config: dict) -> str:
    """The README.md of a pretrained projection prior folder, from its ``config.json``."""
    p, n = config["pretraining"], config["pretraining"]["network"]
    m = p["lr_models"]
    scale = "x".join(str(s) for s in p["scale"])
    return "\n".join([
        f"# {config.get('name', SHIPPED_NAME)}: the external projection prior", "",
        f"A conditional 2D `ctsr.residual_cnn.ResidualCNN` ({n['layers']} convolutions of 3x3, {n['channels']} "
        f"channels, leaky ReLU, replicate padding; {INPUTS} input channels: `P_up` and bicubic `y`, each projection "
        "divided by its largest `P_up` value) that adds to "
        f"`P_up` what it misses at scale {scale} (IJK). The NAB-GS presets (`standard`, `quality`) use it as their "
        "target `Y` at this scale where the scan cannot teach itself, if it passes its self-check on the scan's own "
        "projections one level down (else `Y` is `P_up`; `ctsr.external_projection_prior`).", "",
        "## Data",
        f"- HR scans: {', '.join(config.get('scans', []))} (HU)",
        sources_line(config),
        f"- {p['crops_per_scan']} random crops of {p['crop']}^3 per scan, each degraded by {p['models_per_crop']} "
        f"random LR models (Gaussian sigma uniform in {m['sigma_range'][0]}..{m['sigma_range'][1]} HR voxels or the "
        f"block mean ({m['box_share']:.0%}), white noise uniform in 0..{m['max_noise_hu']:g} HU) by "
        "`ctsr.lrmodel.simulate_lr`; `P_up`, `y` and the "
        f"truth projected by the pipeline's cone-beam scan over {p['views']} views at a random angle offset",
        "- scored only on scans it did not see (`benchmarks/external_projection_prior_bench.py` trains one per "
        "held-out scan on the others)", "",
        "## Training",
        f"- {n['steps']} Adam steps of {n['batch'] * n['patch']} patches of {n['patch']}^2 with flips, lr "
        f"{n['learning_rate']:g} cosine-decayed to {n['learning_rate'] / 10:g}, seed {config.get('seed', 0)}",
        f"- {config.get('wall_s', '?')} s on {config.get('device', '?')} (torch threads: {config.get('threads', '?')}),"
        f" {config.get('date', '?')}",
        f"- reproduce: `{config.get('command', '?')}`", "",
        "## Measured (leave one scan out)",
        "- `benchmarks/external_projection_prior.md` (`python benchmarks/external_projection_prior_bench.py`): three "
        "held-out 96^3 crops at x4, LR by `gauss:0.5`, `gauss:1.5` and the block mean with 10 HU noise, 72 views, "
        "PSNR against the truth's projections, 9 cells",
        "- with its self-check (what the NAB-GS presets use): +0.53 dB over the consistent `P_up` on average, worst "
        "cell +0.05, none below; over `P_up` +0.23, worst -0.05; the check passed on the abdomen, declined on the "
        "chest and the head",
        "- applied without the check: +0.50 dB over the consistent `P_up`, worst -0.72 (chest, `gauss:0.5`)",
        "- `benchmarks/external_projection_prior_noise.md` (`--noises 0 30`, 18 cells): with its self-check +0.49 "
        "dB over the consistent `P_up`, 17 cells above and one 0.01 dB below (abdomen, `gauss:0.5`, 30 HU)",
        "- learning curve (`--train-scans 1 2 --steps 1000 3000 --out external_projection_prior_curve`, the 9 "
        "cells): with its self-check +0.25 / +0.54 dB over the consistent `P_up` for one training scan and 1000 / "
        "3000 steps, +0.29 / +0.53 for two; steps matter, a second scan did not (at 1000 steps on one scan the "
        "check passed on the chest, where the network lost 0.06 to 0.17 dB to `P_up`)",
        "- end to end (`--end-to-end abdomen:box,noise:10 abdomen:gauss:1.5,noise:10 head:box,noise:10`): "
        "`standard` on it 31.45 and 31.17 dB on the two abdomen cells, +0.05 and +0.04 over `fast` and 0.84 and "
        "0.82 under `balanced`, in about 15 minutes each on 2 cores; declined on the head (`fast`'s volume)",
        "- three radiographs (cat lateral DX, chest PA CR, lower leg CR) as 72 extra training pairs "
        "(`benchmarks/external_projection_prior_radiographs.py`): with its self-check +0.31 dB over the consistent "
        "`P_up` against +0.53 without them (the check then declined on the abdomen), so they are not used",
        "- not measured: a fourth scan, more than 3000 steps", ""])


def save_external_projection_prior(network: ResidualCNN, folder, settings: ProjectionPretrainSettings,
                                   metadata: dict) -> Path:
    """Write ``network``, ``config.json`` and the model card to ``folder`` (whole or not at all)."""
    pretraining = asdict(settings)
    pretraining["scale"] = list(settings.scale)
    config = {"format": FORMAT, "inputs": INPUTS, "pretraining": pretraining, **metadata}
    return write_network_folder(network, folder, config, model_card(config), WHAT)


def shipped_dir() -> Path:
    """The shipped network, ``Resources/Models/projection-prior-x4``."""
    return resources_dir() / "Models" / SHIPPED_NAME


def load_external_projection_prior(folder: str | Path | None = None, device: str | torch.device = "cpu",
                                   only_for: Scale | None = None) -> PretrainedNetwork | None:
    """The pretrained network in ``folder`` (None: the shipped one) onto ``device``, offline and
    from safetensors; one :class:`UserError` sentence when it is not such a folder. With
    ``only_for`` (IJK), None when it was pretrained for another scale (its weights unread)."""
    shipped = folder is None
    folder = shipped_dir() if shipped else Path(folder)
    config = read_network_config(folder, FORMAT, WHAT)
    try:
        network = config["pretraining"]["network"]
        scale = tuple(int(s) for s in config["pretraining"]["scale"])
        model = ResidualCNN(int(network["channels"]), int(network["layers"]), KERNEL, int(config["inputs"]))
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{folder} does not hold a complete {WHAT} config (pretraining scale, network, "
                        "inputs).") from None
    if len(scale) != 3 or config["inputs"] != INPUTS:
        raise UserError(f"{folder} holds a {WHAT} for {len(scale)} axes and {config['inputs']} inputs; this "
                        f"version uses 3 and {INPUTS}.")
    if only_for is not None and scale != tuple(only_for):
        return None
    load_network_weights(model, folder, WHAT)
    return PretrainedNetwork(model.to(device).eval(), scale, SHIPPED_NAME if shipped else str(folder), config)


def pretrain_and_save(paths: list[Path], out, settings: ProjectionPretrainSettings = ProjectionPretrainSettings(),
                      seed: int = 0, progress: Progress | None = None, command: str = "", sources: str = "") -> Path:
    """Read the HR scans at ``paths``, :func:`pretrain` on them and save to ``out`` with what
    was done (:func:`ctsr.external_prior.pretraining_record`; ``sources``: where the scans come
    from and their licences, for the model card)."""
    start = time.monotonic()
    progress = progress or SilentProgress()
    network = pretrain(read_hr_scans(paths, progress), settings, seed=seed, progress=progress)
    record = pretraining_record(out, paths, seed, start, command, sources)
    return save_external_projection_prior(network, out, settings, record)
