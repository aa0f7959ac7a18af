"""The internal prior: a small CNN that the input scan trains on itself, at run time.

Zero-shot construction (ZSSR, Shocher et al. 2018), driven by the LR model of
:mod:`ctsr.lrmodel`: the LR input ``L`` is degraded once more by the same operator,
``L2 = D(L) + n'`` (``n'`` tops the noise that ``D`` leaves up to the model's SD, so ``L2`` is
as noisy as ``L``), brought back to ``L``'s grid by the ``fast`` preset's own upsampling
(:func:`consistent_upsample`: Lanczos-3, then the consistency step), and a residual CNN learns
``fast(L2) -> L``. It is then applied one level up, to ``fast(L)``, and the consistency step
runs once more. What it learns is what ``fast`` misses at this scale on this scan. Where a
network pretrained on other scans is given (:mod:`ctsr.external_prior`; ``balanced`` gives the
shipped one) and the pair is a volume pair at that network's scale (x2: the volume kind, or
the first of two levels at x4), training starts from its weights instead of from zero
(fine-tuning, the same number of steps).

The pair is only as right as the LR model: when the blur along a scaled axis is the assumed
default (origin :data:`ctsr.lrmodel.ASSUMED`: not given, not read from DICOM, not estimated),
or was given but looks wider than the input (:data:`ctsr.lrmodel.GIVEN_TOO_WIDE`), nothing is
learned and the result is
``fast``'s (through-plane on the degradation benchmark, a pair made with the default profile
for a wider true blur lost up to 0.0064 SSIM to cubic; with the true profile it gained 1.2 dB).

Four geometries (:func:`plan`; the third, in two parts, is :func:`upsample_with_internal_prior`'s):

* **volume** (scales up to :data:`MAX_VOLUME_SCALE`, every scaled axis keeping
  :data:`MIN_PAIR_VOXELS` after a second degradation): the pair is made at the job's own
  scale and the CNN is 3D (3x3x3 kernels);
* **through-plane** (only z is scaled, so x and y are already at full resolution; SMORE's
  idea, Zhao et al. 2021): the pair degrades the *x* axis of ``L`` with the z profile and
  scale, the CNN works on 2D planes (1x3x3 kernels), and it is applied to the planes of
  ``fast(L)`` that contain z and one in-plane axis (both such orientations, averaged). This
  assumes the scan's physics along z, in HR voxels, is what it would be along x;
* **in-plane, then through-plane** (x and y by one factor, z by a larger one: ``2x2x4``, a scan
  with large pixels and thick slices; :func:`ctsr.grids.in_plane_then_through_plane`): the
  in-plane part first, on ``L`` under the x and y profiles (at x2 the volume kind, with z left
  alone), then the through-plane part on that result under the z profile (its x axis, now at
  the HR spacing, teaches z), then the consistency step with ``L`` under the whole model;
* **two levels** (scaled axes at x4, not through-plane): the volume pair at x2 under the LR
  model one level down (:func:`ctsr.lrestimate.lr_model_one_level_down`), the network applied
  to ``fast`` at x2, that made consistent with ``L`` at x2, then Lanczos-3 the rest of the way
  (one x4 pair lost 0.59 dB to ``fast`` on a head; this gained +0.60 to +0.79 dB on every
  cell of a 160^3 chest crop, ``benchmarks/degradation_x4_large.md``). An input too small to
  estimate the blur at x2 either makes its pair with x4's default carried to x2 at its width
  in mm, the narrowest blur assumed (:data:`ctsr.lrestimate.CARRIED_DEFAULT`), not a plain default.

Arrays are KJI and in HU; the network is :mod:`ctsr.residual_cnn`'s (it sees HU /
:data:`ctsr.residual_cnn.HU_SCALE`; bounded training, tiled inference, and on CUDA a seed gives
the same volume to 0.01 HU: 0.0004 HU apart on an H200).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from .baselines import upsample_interpolate
from .fidelity import enforce_lr_consistency
from .grids import AXES, Scale, halved, hr_grid, in_plane_then_through_plane, is_through_plane, lr_grid
from .lrestimate import LOOKS_TOO_WIDE, lr_model_one_level_down
from .lrmodel import ASSUMED, GIVEN_TOO_WIDE, LRModel, LROperator, Profile, add_noise
from .progress import Progress, SilentProgress
from .residual_cnn import HU_SCALE, ResidualCNN, TrainingSettings, apply_in_tiles, fit_residual_network
from .volume import Volume

#: Fewest voxels that ``L2`` needs along each scaled axis for a pair worth learning from.
MIN_PAIR_VOXELS = 12
#: Largest per-axis scale of the volume kind: at x4 one pair in the volume lost 0.59 dB to
#: ``fast`` on a head (DESIGN.md section 7), so x4 runs in two levels and above keeps ``fast``'s.
MAX_VOLUME_SCALE = 2
#: The flip ensembles of :func:`apply`, largest first: each a group of flips of a KJI volume
#: (the axes each reverses), identity first. ZSSR's geometric self-ensemble without its
#: rotations (a CT's axes differ): all eight flips; the four that reverse an even number of axes
#: (a half turn in each plane); the identity and the reversal of all three; one pass. On the 36
#: x2 cells of the degradation benchmark (a probe of the leave-one-out networks), averaging
#: gained +0.105, +0.098 and +0.067 dB over one pass (the worst cell over cubic +0.97 -> +1.10,
#: +1.09, +1.05; 3, 3 and 4 cells down by 0.04 dB at most).
FLIP_ENSEMBLES = (
    tuple(axes for count in range(4) for axes in itertools.combinations((0, 1, 2), count)),
    ((), (0, 1), (0, 2), (1, 2)),
    ((), (0, 1, 2)),
    ((),),
)


@dataclass(frozen=True)
class InternalPriorSettings(TrainingSettings):
    """The network's training (:class:`ctsr.residual_cnn.TrainingSettings`; its ``steps`` are
    those of the volume and two-level kinds: the same on every device, 1500 lost up to 1.03 dB
    to 300 on the head crops, ``benchmarks/prior_steps.md``), and: plane_steps: the Adam steps
    of the through-plane kind (2D planes: 1200 take about 30 s more than 300 on 2 CPU cores and
    gained +0.04 to +0.39 dB over 300, mean +0.24, SSIM up on all 24 through-plane cells of
    ``benchmarks/prior_steps_through_plane.md``; 2400 moved the chest another +0.1 dB but the
    head -0.1 to -0.15 on a probe of four cells); flip_budget: the most output voxels times
    network passes that the volume and two-level kinds spend on averaging over flips
    (:func:`flip_ensemble`; each pass takes about 1.2 us per voxel on 2 CPU cores,
    :data:`PASS_SECONDS_PER_VOXEL`, so this bounds the averaging to about 48 s there; 0: one
    pass; training ignores it)."""

    plane_steps: int = 1200
    flip_budget: int = 40_000_000

    def steps_for(self, kind: str) -> int:
        """The Adam steps that a plan of ``kind`` trains for."""
        return self.plane_steps if kind == "through-plane" else self.steps


@dataclass(frozen=True)
class PairPlan:
    """How the scan teaches itself: ``kind`` ``"volume"``, ``"through-plane"`` or ``"two levels"``, the scale
    and the LR model of the training pair (IJK), or ``kind`` None and ``reason``."""

    kind: str | None
    pair_scale: Scale | None = None
    pair_model: LRModel | None = None
    reason: str = ""


def plan(lr: Volume, scale: Scale, model: LRModel) -> PairPlan:
    """The geometry of the training pair for ``lr`` at ``scale`` (IJK) under ``model``."""
    scale = tuple(int(s) for s in scale)
    through_plane = is_through_plane(scale)
    if not through_plane and max(scale) == 2 * MAX_VOLUME_SCALE and set(scale) <= {1, 2 * MAX_VOLUME_SCALE}:
        return _two_level_plan(lr, scale, model)
    origins = {axis: model.origin.get(AXES[axis]) for axis, s in enumerate(scale) if s > 1}
    assumed = [axis for axis, origin in origins.items() if origin == ASSUMED]
    if assumed:
        return PairPlan(None, reason=f"the blur along {AXES[assumed[0]]} is assumed, not known or estimated (a "
                                     "pair made by an assumed operator can teach the wrong correction; give "
                                     "--lr-model or the DICOM series)")
    too_wide = [axis for axis, origin in origins.items() if origin == GIVEN_TOO_WIDE]
    if too_wide:
        return PairPlan(None, reason=f"the given blur along {AXES[too_wide[0]]} is {LOOKS_TOO_WIDE} (a pair made with "
                                     "it would teach halos)")
    if through_plane:
        # x takes z's profile and scale; slab widths in mm are rescaled to x's spacing.
        profile = model.profiles[2]
        if profile.kind == "slab":
            profile = Profile("slab", profile.value * lr.spacing[0] / (lr.spacing[2] / scale[2]))
        pair_model = LRModel((profile, None, None), model.noise_hu)
        pair_scale = (scale[2], 1, 1)
        kind = "through-plane"
    elif max(scale) > MAX_VOLUME_SCALE:
        return PairPlan(None, reason=f"x{max(scale)} in the volume is not measured (the internal prior runs up "
                                     f"to x{MAX_VOLUME_SCALE}, at x{2 * MAX_VOLUME_SCALE} in two levels, and "
                                     "through-plane)")
    else:
        pair_model, pair_scale, kind = model, scale, "volume"
    short = [(axis, n // s) for axis, (n, s) in enumerate(zip(lr.shape_ijk, pair_scale))
             if s > 1 and n // s < MIN_PAIR_VOXELS]
    if short:
        axis, n = short[0]
        return PairPlan(None, reason=f"the input is too small to teach itself at this scale ({AXES[axis]}: "
                                     f"{n} voxels after a second degradation, {MIN_PAIR_VOXELS} needed)")
    return PairPlan(kind, pair_scale, pair_model)


def _two_level_plan(lr: Volume, scale: Scale, model: LRModel) -> PairPlan:
    """Scaled axes at twice :data:`MAX_VOLUME_SCALE`: the volume pair at half the scale, under
    the LR model one level down (:func:`ctsr.lrestimate.lr_model_one_level_down`)."""
    half = halved(scale)
    half_model = lr_model_one_level_down(lr, scale, model)
    inner = plan(lr, half, half_model)
    if inner.kind is None:
        return PairPlan(None, reason=f"at x{max(scale)} it learns at x{max(half)} first, and there {inner.reason}")
    return PairPlan("two levels", half, half_model)


def consistent_upsample(lr: Volume, scale: Scale, model: LRModel) -> Volume:
    """The ``fast`` preset's result: Lanczos-3 upsampling made consistent with ``lr``."""
    return enforce_lr_consistency(upsample_interpolate(lr, scale, "lanczos"), lr, scale, model)[0]


def degrade_again(lr: Volume, scale: Scale, model: LRModel, seed: int = 0) -> Volume:
    """``L2 = D(L) + n'``: ``lr`` degraded by ``model``'s operator at ``scale``, with white noise
    of SD ``noise * sqrt(1 - g^2)`` (``g`` the operator's noise gain), so that ``L2`` carries
    about the model's noise SD as ``L`` does."""
    operator = LROperator.for_volume(model, scale, lr)
    gain = operator.noise_gain()
    extra = (model.noise_hu or 0.0) * math.sqrt(max(0.0, 1.0 - gain * gain))
    matrix, _ = lr_grid(lr.ijk_to_ras, lr.shape_ijk, scale)
    return Volume(add_noise(operator(lr.array), extra, seed), matrix)


def training_pair(lr: Volume, the_plan: PairPlan, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(fast(L2), L)`` cropped to a common KJI shape, in HU (float32)."""
    low = degrade_again(lr, the_plan.pair_scale, the_plan.pair_model, seed)
    source = consistent_upsample(low, the_plan.pair_scale, the_plan.pair_model).array
    k, j, i = source.shape
    return source, np.ascontiguousarray(lr.array[:k, :j, :i], dtype=np.float32)


def kernel_for(kind: str) -> tuple[int, int, int]:
    """The convolution kernel (KJI) of a plan's kind: 2D planes through-plane, 3D otherwise."""
    return (1, 3, 3) if kind == "through-plane" else (3, 3, 3)


def train(lr: Volume, scale: Scale, model: LRModel, settings: InternalPriorSettings = InternalPriorSettings(),
          seed: int = 0, device: str | torch.device = "cpu", progress: Progress | None = None
          ) -> tuple[ResidualCNN, PairPlan]:
    """Train the internal prior of ``lr`` (HU) for ``scale`` (IJK) under ``model``; returns the
    network (eval mode, on ``device``) and its :class:`PairPlan`. Raises ``ValueError`` when the
    plan has no pair (check :func:`plan` first). Deterministic for a seed on the CPU (on CUDA to
    0.01 HU, :func:`ctsr.residual_cnn.exact_convolutions`)."""
    the_plan = plan(lr, scale, model)
    if the_plan.kind is None:
        raise ValueError(the_plan.reason)
    return _train_for(lr, the_plan, settings, seed, device, progress or SilentProgress()), the_plan


def _train_for(lr: Volume, the_plan: PairPlan, settings: InternalPriorSettings, seed: int, device: str | torch.device,
               progress: Progress, initial: ResidualCNN | None = None) -> ResidualCNN:
    """:func:`train` for a plan already made (it may have estimated an LR model), from
    ``initial``'s weights when given."""
    progress.update("internal prior", 0.0, f"making the {the_plan.kind} training pair")
    source, target = training_pair(lr, the_plan, seed)
    settings = replace(settings, steps=settings.steps_for(the_plan.kind))
    return fit_residual_network(source / HU_SCALE, target / HU_SCALE, kernel_for(the_plan.kind), settings,
                                seed, device, progress, "internal prior", loss_unit=HU_SCALE**2, initial=initial)


def flip_ensemble(shape: tuple[int, ...], budget: int) -> tuple[tuple[int, ...], ...]:
    """The largest of :data:`FLIP_ENSEMBLES` whose passes over a volume of ``shape`` fit in
    ``budget`` voxel-passes (at least the identity)."""
    voxels = math.prod(shape)
    return next(flips for flips in FLIP_ENSEMBLES if len(flips) * voxels <= budget or len(flips) == 1)


def apply(network: ResidualCNN, the_plan: PairPlan, volume: Volume, device: str | torch.device = "cpu",
          progress: Progress | None = None, flip_budget: int = InternalPriorSettings.flip_budget) -> Volume:
    """``volume`` (HU, the ``fast`` result on the job's HR grid) plus what ``network`` adds. The
    volume and two-level kinds average the network's results over the flips of
    :func:`flip_ensemble` (each flipped back; the result commutes with every flip of that
    group); the through-plane kind averages over the two plane orientations that contain z (a
    probe that also flipped those planes, four times the passes, moved 12 chest cells of the
    degradation benchmark by +0.01 dB: not done)."""
    progress = progress or SilentProgress()
    device = torch.device(device)
    if the_plan.kind in ("volume", "two levels"):
        flips = flip_ensemble(volume.array.shape, flip_budget)
        total = np.zeros(volume.array.shape, dtype=np.float32)
        for n, axes in enumerate(flips):
            flipped = np.ascontiguousarray(np.flip(volume.array, axes))
            part = progress.span(n / len(flips), (n + 1) / len(flips))
            total += np.flip(apply_in_tiles(network, flipped, device, part), axes)
        return volume.with_array(total / len(flips))
    # KJI -> IJK puts z last (the degraded axis of training) with y beside it; KJI -> JIK with x.
    results = []
    for order, part in (((2, 1, 0), (0.0, 0.5)), ((1, 2, 0), (0.5, 1.0))):
        moved = np.ascontiguousarray(volume.array.transpose(order))
        done = apply_in_tiles(network, moved, device, progress.span(*part))
        results.append(done.transpose(np.argsort(order)))
    return volume.with_array((results[0] + results[1]) / 2)


#: Expected seconds on 2 CPU cores (``benchmarks/balanced_cost.md``, the whole 5 mm chest at
#: x2) of an Adam step of each kind, of ``fast`` per HR voxel and of one network pass per HR
#: voxel; they only split the progress bar between the stages, so that its fraction and the
#: time left it implies stay honest whatever the output size.
STEP_SECONDS = {"volume": 0.07, "two levels": 0.07, "through-plane": 0.045}
FAST_SECONDS_PER_VOXEL, PASS_SECONDS_PER_VOXEL = 3e-7, 1.2e-6


def _expected_seconds(kind: str | None, settings: InternalPriorSettings, hr_shape_ijk) -> tuple[float, float, float]:
    """Expected seconds of training, of the ``fast`` upsampling and of the network's passes for a
    plan of ``kind`` (None: ``fast`` only) on an HR grid of ``hr_shape_ijk``."""
    voxels = math.prod(hr_shape_ijk)
    if kind is None:
        return 0.0, voxels * FAST_SECONDS_PER_VOXEL, 0.0
    passes = 2 if kind == "through-plane" else len(flip_ensemble(tuple(hr_shape_ijk), settings.flip_budget))
    return (settings.steps_for(kind) * STEP_SECONDS[kind], voxels * FAST_SECONDS_PER_VOXEL,
            voxels * passes * PASS_SECONDS_PER_VOXEL)


def _progress_marks(the_plan: PairPlan, settings: InternalPriorSettings, hr_shape_ijk) -> tuple[float, float]:
    """The fractions of :func:`upsample_with_internal_prior` at which training and the ``fast``
    upsampling end (the network's passes then run to 0.95, the consistency step after), in
    proportion to their expected seconds on an HR grid of ``hr_shape_ijk``."""
    seconds = _expected_seconds(the_plan.kind, settings, hr_shape_ijk)
    trained = 0.95 * seconds[0] / sum(seconds)
    return trained, trained + 0.95 * seconds[1] / sum(seconds)


def upsample_with_internal_prior(lr: Volume, scale: Scale, model: LRModel,
                                 settings: InternalPriorSettings = InternalPriorSettings(), seed: int = 0,
                                 device: str | torch.device = "cpu", progress: Progress | None = None,
                                 external=None) -> tuple[Volume, dict]:
    """``lr`` (HU) super-resolved by ``scale``: ``fast``, plus the internal prior when the input
    can teach itself (:func:`plan`), then the consistency step; returns the volume and what
    was done. In two levels, the prior's result at half the scale (made consistent with ``lr``
    under the half-scale model) is brought the rest of the way by Lanczos-3.

    external: a :class:`ctsr.network_folder.PretrainedNetwork` (a network pretrained on other
    scans): a volume pair at its scale (the volume kind, or the first level of two) starts from
    its weights (fine-tuning); elsewhere (through-plane, other scales), and without it, the
    network starts from zero."""
    progress = progress or SilentProgress()
    if in_plane_then_through_plane(scale) is not None:
        return _in_plane_then_through_plane(lr, scale, model, settings, seed, device, progress, external)
    the_plan = plan(lr, scale, model)
    if the_plan.kind is None:
        progress.log(f"internal prior skipped: {the_plan.reason}")
        progress.update("upsample", 0.0, "Lanczos-3 upsampling made consistent with the input")
        return consistent_upsample(lr, scale, model), {"internal_prior": f"skipped: {the_plan.reason}"}
    warm = (external is not None and the_plan.kind in ("volume", "two levels")
            and tuple(the_plan.pair_scale) == external.scale)
    two_levels = the_plan.kind == "two levels"
    level_scale, level_model = (the_plan.pair_scale, the_plan.pair_model) if two_levels else (scale, model)
    trained, upsampled = _progress_marks(the_plan, settings, hr_grid(lr.ijk_to_ras, lr.shape_ijk, level_scale)[1])
    network = _train_for(lr, the_plan, settings, seed, device, progress.span(0.0, trained),
                         external.network if warm else None)
    start = f"from {external.name}" if warm else "from zero"
    progress.update("upsample", trained, "Lanczos-3 upsampling onto the HR grid, made consistent with the input")
    fast = consistent_upsample(lr, level_scale, level_model)
    hr = apply(network, the_plan, fast, device, progress.span(upsampled, 0.95), settings.flip_budget)
    what = the_plan.kind
    if two_levels:
        hr, _ = enforce_lr_consistency(hr, lr, level_scale, level_model)
        hr = upsample_interpolate(hr, tuple(s // h for s, h in zip(scale, level_scale)), "lanczos")
        what = f"two levels (the volume pair at x{max(level_scale)} under {level_model}, then Lanczos-3)"
    if the_plan.kind != "through-plane":
        what += f", averaged over {len(flip_ensemble(fast.shape_ijk, settings.flip_budget))} flips"
    done = f"{what}, {settings.steps_for(the_plan.kind)} steps {start}"
    progress.update("consistency", 0.96, f"matching the LR input ({model})")
    hr, consistency = enforce_lr_consistency(hr, lr, scale, model)
    return hr, {"internal_prior": done, "consistency": consistency, **({"pretrained": external.name} if warm else {})}


def _in_plane_then_through_plane(lr: Volume, scale: Scale, model: LRModel, settings: InternalPriorSettings,
                                 seed: int, device, progress: Progress, external) -> tuple[Volume, dict]:
    """:func:`upsample_with_internal_prior` at a scale that
    :func:`ctsr.grids.in_plane_then_through_plane` splits (``2x2x4``): the in-plane part on
    ``lr`` under the x and y profiles of ``model``, the through-plane part on that result under
    z's, then the consistency step with ``lr`` under the whole model. Both parts take the noise
    SD of ``lr`` (the in-plane result is less noisy: its pairs are a little noisier than it, and
    the consistency step stops no lower). Where neither part learns anything, ``fast``."""
    in_plane, through = in_plane_then_through_plane(scale)
    in_plane_model, through_model = model.restricted_to((0, 1)), model.restricted_to((2,))
    grid = lambda part: hr_grid(lr.ijk_to_ras, lr.shape_ijk, part)[1]
    first_plan = plan(lr, in_plane, in_plane_model)
    first_seconds = sum(_expected_seconds(first_plan.kind, settings, grid(in_plane)))
    second_seconds = sum(_expected_seconds("through-plane", settings, grid(scale)))
    share = 0.95 * first_seconds / (first_seconds + second_seconds)
    progress.log(f"in-plane x{in_plane[0]} first, then through-plane x{through[2]}")
    first, first_done = upsample_with_internal_prior(lr, in_plane, in_plane_model, settings, seed, device,
                                                     progress.span(0.0, share), external)
    through_plan = plan(first, through, through_model)
    if first_plan.kind is None and through_plan.kind is None:
        progress.log(f"internal prior skipped through-plane: {through_plan.reason}")
        progress.update("upsample", 0.95, "Lanczos-3 upsampling made consistent with the input")
        return consistent_upsample(lr, scale, model), {"internal_prior": f"skipped: in-plane {first_plan.reason}; "
                                                                         f"through-plane {through_plan.reason}"}
    second, second_done = upsample_with_internal_prior(first, through, through_model, settings, seed, device,
                                                       progress.span(share, 0.95))
    parts = (first_done["internal_prior"], second_done["internal_prior"])
    progress.update("consistency", 0.96, f"matching the LR input ({model})")
    hr, consistency = enforce_lr_consistency(second, lr, scale, model)
    return hr, {"internal_prior": f"in-plane x{in_plane[0]}: {parts[0]}; then through-plane x{through[2]}: {parts[1]}",
                "consistency": consistency, **{k: v for k, v in first_done.items() if k == "pretrained"}}
