"""Projection super-resolution with the diffusion prior: DDNM / DDNM+ and per-projection
adaptive sampling (PAS). DESIGN.md section 2, step 4.

Entry point: :func:`upsample_projections`. Shapes are ``[N, 1, rows, cols]`` (detector v, u),
values in the caller's units (line integrals); each projection is min-max normalized to the
model's [-1, 1] on its own and mapped back afterwards.

One DDIM step from ``t`` to ``t'`` (``abar`` = alpha-bar of the training schedule):

    eps  = unet(x_t, t);  x0 = clip((x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), -1, 1)
    x0^  = x0 - lam * A_pinv(A(x0) - target)                    (null-space correction)
    x_t' = sqrt(abar_t') x0^ + gam * (c1 z + c2 eps),           z ~ N(0, I)

with DDIM's ``c1 = eta * sqrt((1 - abar_t') / (1 - abar_t) * (1 - abar_t / abar_t'))`` and
``c2 = sqrt(1 - abar_t' - c1^2)``. DDNM: ``lam = gam = 1``. DDNM+ (``sigma_y > 0``, the LR
noise std as a fraction of the projection's value range): the correction injects noise of std
``sqrt(abar_t') * lam * sigma_y`` into ``x_t'``, so ``lam = min(1, s / (sqrt(abar_t') sigma_y))``
with ``s = sqrt(1 - abar_t')``, and the fresh noise is scaled by ``gam`` so that the total stays
``s`` (``gam = sqrt(max(0, s^2 - (sqrt(abar_t') lam sigma_y)^2)) / s``). At the last step
(``abar_t' = 1``) DDNM+ makes no correction: the output is not forced onto a noisy ``y``.

PAS: the start image ``x_s = A_pinv(target) + init - A_pinv(A(init))`` (``init`` is the
pipeline's ``P_up``, else bicubic of ``y``) is noised to candidate levels ``t`` of the DDIM
schedule, noisiest first; at each, ``x0^`` is predicted and corrected, and sampling starts at the
first ``t`` where ``RMS(x0^ - x_s)`` (in units of the projection's value range) is below
``pas_threshold``, i.e. at the most noise the prior can remove while staying near the start
image. The last candidate is always ``t = 0``; a projection that fails even there (the prior
cannot reproduce its start image within the threshold) runs no step and keeps ``x_s``. So PAS
never runs more steps than full sampling, and each projection reports its own count (0 to
``steps``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import UserError
from .model import Prior
from .operators import as_binning, bicubic, from_model_range, minmax_bounds, project_to_range, to_model_range

RANGE_TARGETS = ("y", "init")


@dataclass
class ProjectionSR:
    """The result of :func:`upsample_projections`.

    images:  ``[N, 1, h*sy, w*sx]`` float32, in the units of the input (the mean over samples
             when ``n_samples > 1``);
    steps:   ``[N]`` int64, DDIM steps each projection ran (``steps`` without PAS, fewer with);
    start_t: ``[N]`` int64, the training timestep (0..999) where each one started (-1: none,
             the output is the start image ``A_pinv(target) + init - A_pinv(A(init))``);
    std:     ``[N, 1, h*sy, w*sx]`` pixelwise standard deviation over the samples (input units),
             or ``None`` when ``n_samples == 1``.
    """

    images: torch.Tensor
    steps: torch.Tensor
    start_t: torch.Tensor
    std: torch.Tensor | None = None


def consistent_init(init: torch.Tensor, lr: torch.Tensor, scale) -> torch.Tensor:
    """``A_pinv(y) + init - A_pinv(A(init))``: ``init`` with its block means replaced by ``y``."""
    return project_to_range(init, lr, scale)


def ddim_timesteps(steps: int, num_train_timesteps: int = 1000) -> torch.Tensor:
    """``steps`` training timesteps from ``T - 1`` down to 0, evenly spaced (int64)."""
    if steps < 1:
        raise UserError("the number of diffusion steps must be at least 1.")
    return torch.linspace(num_train_timesteps - 1, 0, steps).round().long()


def _predict_eps(prior: Prior, x: torch.Tensor, t: int) -> torch.Tensor:
    """The UNet's noise prediction, reflect-padding ``x`` to a multiple of the UNet's stride."""
    multiple = 2 ** (prior.levels - 1)
    rows, cols = x.shape[-2:]
    pad_r, pad_c = (-rows) % multiple, (-cols) % multiple
    padded = F.pad(x, (0, pad_c, 0, pad_r), mode="reflect") if pad_r or pad_c else x
    timestep = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
    eps = prior.unet(padded, timestep).sample
    return eps[..., :rows, :cols]


def _predict_x0(prior: Prior, x: torch.Tensor, t: int, abar: float):
    eps = _predict_eps(prior, x, t)
    x0 = (x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)
    return x0.clamp(-1, 1), eps


def _noise(shape, generator, device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device)


def _ddnm_plus_weights(abar_next: float, sigma_y: float) -> tuple[float, float]:
    """(lam, gam) of the noise-aware correction; (1, 1) when ``sigma_y == 0``."""
    if sigma_y <= 0:
        return 1.0, 1.0
    s = math.sqrt(1 - abar_next)
    a = math.sqrt(abar_next) * sigma_y
    lam = 1.0 if s >= a else s / a
    gam = math.sqrt(max(0.0, s * s - (a * lam) ** 2)) / s if s > 0 else 0.0
    return lam, gam


def _pas_start(prior, x_start, target, scale, ts, abar, candidates, threshold, generator):
    """Index into ``ts`` where each projection starts (PAS); ``len(ts)`` (no step) if none passes."""
    n = x_start.shape[0]
    start = torch.full((n,), len(ts), dtype=torch.long)
    undecided = torch.ones(n, dtype=torch.bool)
    for index in candidates:
        rows = undecided.nonzero().flatten()
        if rows.numel() == 0:
            break
        a = float(abar[ts[index]])
        xs = x_start[rows]
        x_t = math.sqrt(a) * xs + math.sqrt(1 - a) * _noise(xs.shape, generator, xs.device)
        x0, _ = _predict_x0(prior, x_t, int(ts[index]), a)
        x0 = project_to_range(x0, target[rows], scale)
        deviation = ((x0 - xs) / 2).pow(2).mean(dim=(1, 2, 3)).sqrt().cpu()  # in [0, 1] units
        passed = rows[deviation < threshold]
        start[passed] = index
        undecided[passed] = False
    return start


def _sample_once(prior, x_start, target, scale, ts, abar, start, eta, sigma_y, generator, report,
                 from_noise=False):
    x = x_start.clone()  # projections that never start keep the start image
    for i, t in enumerate(ts.tolist()):
        report(i)
        entering = (start == i).nonzero().flatten().to(x.device)
        if entering.numel():
            a = float(abar[t])
            z = _noise(x_start[entering].shape, generator, x.device)
            # full sampling (DDNM) starts from pure noise; PAS from the noised start image
            x[entering] = z if from_noise else math.sqrt(a) * x_start[entering] + math.sqrt(1 - a) * z
        rows = (start <= i).nonzero().flatten().to(x.device)
        if rows.numel() == 0:
            continue
        a_t = float(abar[t])
        a_next = float(abar[ts[i + 1]]) if i + 1 < len(ts) else 1.0
        x0, eps = _predict_x0(prior, x[rows], t, a_t)
        lam, gam = _ddnm_plus_weights(a_next, sigma_y)
        x0 = project_to_range(x0, target[rows], scale, lam)
        if a_next >= 1.0:
            x[rows] = x0
            continue
        c1 = eta * math.sqrt((1 - a_next) / (1 - a_t) * (1 - a_t / a_next))
        c2 = math.sqrt(max(0.0, 1 - a_next - c1 * c1))
        z = _noise(x0.shape, generator, x.device)
        x[rows] = math.sqrt(a_next) * x0 + gam * (c1 * z + c2 * eps)
    return x


@torch.inference_mode()
def upsample_projections(model, lr: torch.Tensor, scale, steps: int = 20, eta: float = 0.85,
                         sigma_y: float = 0.0, pas: bool = True, generator: torch.Generator | None = None,
                         init: torch.Tensor | None = None, range_target: str | None = None,
                         pas_threshold: float = 0.003, pas_candidates: int = 10, n_samples: int = 1,
                         batch_size: int = 16, progress=None) -> ProjectionSR:
    """Super-resolve LR projections ``lr [N, 1, h, w]`` with the prior; ``scale``: the range
    operator ``A``, a :class:`~ctsr.prior.operators.DetectorBinning` (the pipeline passes the
    LR model's) or ``(sy, sx)`` for the block mean.

    model:        a :class:`~ctsr.prior.model.Prior` (see :func:`~ctsr.prior.model.load_prior`);
    steps:        DDIM steps of full sampling; eta: DDIM stochasticity (0 deterministic, 1 DDPM);
    sigma_y:      LR noise std as a fraction of each projection's value range (0: DDNM; > 0: DDNM+);
    pas:          per-projection adaptive start (module docstring); ``pas_threshold`` in units of
                  the projection's value range (default 0.003: the best of 0.003 / 0.01 / 0.03
                  for the shipped prior, benchmarks/prior_bench*.md), ``pas_candidates`` start
                  levels tried at most;
    init:         ``[N, 1, h*sy, w*sx]`` HR estimate (the pipeline's ``P_up``) that PAS noises
                  and whose null-space part fills the start image; default bicubic of ``lr``;
    range_target: ``"y"`` (the output's block means equal ``lr``) or ``"init"`` (they equal
                  ``A(init)``; needs ``init``); default ``"init"`` when ``init`` is given, else
                  ``"y"``: on held-out DRRs ``A(P_up)`` differs from ``y`` by 0.6 % (x2) to
                  1.5 % (x4) in relative L2 (block averaging is not exactly how the LR scan
                  relates to the HR one) and forcing ``y`` lowered the PSNR by 0.1 to 0.5 dB
                  (benchmarks/prior_bench.md);
    n_samples:    K > 1 returns the mean of K samples and their pixelwise std;
    generator:    a CPU ``torch.Generator``: the same seed gives the same output;
    progress:     an optional :class:`ctsr.progress.Progress` (fractions 0..1 of this call).

    Returns a :class:`ProjectionSR` (``.images``, ``.steps``, ``.start_t``, ``.std``).
    """
    prior = model if isinstance(model, Prior) else Prior.from_unet(model)
    operator = as_binning(scale)
    sy, sx = operator.scale
    if lr.ndim != 4 or lr.shape[1] != 1:
        raise UserError(f"LR projections must be [N, 1, rows, cols], not {list(lr.shape)}.")
    out_shape = (lr.shape[0], 1, lr.shape[2] * sy, lr.shape[3] * sx)
    if init is not None and tuple(init.shape) != out_shape:
        raise UserError(f"init must be {list(out_shape)} (the HR detector), not {list(init.shape)}.")
    if range_target is None:
        range_target = "init" if init is not None else "y"
    if range_target not in RANGE_TARGETS:
        raise UserError(f"range_target must be one of {RANGE_TARGETS}, not {range_target!r}.")
    if range_target == "init" and init is None:
        raise UserError("range_target='init' needs an init (the projections of the upsampled volume).")
    if n_samples < 1:
        raise UserError("n_samples must be at least 1.")

    device = prior.device
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    abar = prior.alphas_cumprod
    ts = ddim_timesteps(steps, len(abar))
    stride = max(1, math.ceil(len(ts) / max(1, pas_candidates)))
    candidates = sorted(set(range(0, len(ts), stride)) | {len(ts) - 1})
    images, stds, all_steps, all_start = [], [], [], []
    n_chunks = math.ceil(lr.shape[0] / batch_size)

    for c in range(n_chunks):
        chunk = slice(c * batch_size, (c + 1) * batch_size)
        y = lr[chunk].to(device, torch.float32)
        hr_init = init[chunk].to(device, torch.float32) if init is not None else None
        low, high = minmax_bounds(y, hr_init) if hr_init is not None else minmax_bounds(y)
        y_n = to_model_range(y, low, high)
        init_n = to_model_range(hr_init, low, high) if hr_init is not None else bicubic(y_n, (sy, sx))
        target = operator(init_n) if range_target == "init" else y_n
        x_start = project_to_range(init_n, target, operator)

        def report(i, sample=0):
            if progress is not None:
                done = (c + (sample + (i + 1) / len(ts)) / n_samples) / n_chunks
                progress.update("projection prior", done, f"projections {chunk.start + 1}-"
                                f"{min(chunk.stop, lr.shape[0])} of {lr.shape[0]}, step {i + 1}/{len(ts)}")

        start = (_pas_start(prior, x_start, target, operator, ts, abar, candidates, pas_threshold, generator)
                 if pas else torch.zeros(y.shape[0], dtype=torch.long))
        samples = torch.stack([
            _sample_once(prior, x_start, target, operator, ts, abar, start, eta, sigma_y, generator,
                         lambda i, k=k: report(i, k), from_noise=not pas)
            for k in range(n_samples)])
        samples = from_model_range(samples, low, high)
        images.append(samples.mean(0).cpu())
        stds.append(samples.std(0, unbiased=False).cpu() if n_samples > 1 else None)
        all_steps.append(len(ts) - start)
        all_start.append(torch.where(start < len(ts), ts[start.clamp(max=len(ts) - 1)], -1))

    return ProjectionSR(images=torch.cat(images), steps=torch.cat(all_steps), start_t=torch.cat(all_start),
                        std=torch.cat(stds) if n_samples > 1 else None)
