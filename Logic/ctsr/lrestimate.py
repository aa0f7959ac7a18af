"""Estimating the LR model from the LR volume alone (blind): its noise SD and its blur width.

* **Noise** (:func:`estimate_noise_hu`): the SD of the whole noise, the level the consistency
  step stops at. Two readings, the larger taken:

  - :func:`fine_band_noise_hu`: the finest 3D Haar wavelet band (each 2x2x2 block's
    alternating-sign sum over sqrt(8)) has an SD of exactly sigma for white noise of SD sigma,
    while smooth anatomy gives it almost nothing. The band is cut into tiles of WINDOW^3
    coefficients; the QUANTILE-th tile energy, unbiased by the chi-square quantile, is sigma^2
    (tiles that hold edges are the energetic ones, above that quantile). Tiles touching the
    volume's minimum are left out (CT padding clipped at -1024 HU is flat and would pull the
    estimate to zero). Donoho's median estimator (0.6745) serves volumes too small for tiles.
    Noise correlated within the slice (by the reconstruction kernel) has less power in that
    band than white noise of its SD: of 20 HU smoothed by a Gaussian of 0.7 voxels it finds 9 to
    14 (benchmarks/noise_readings.md).
    This reading is also what the blur estimate takes out of the top octave.
  - :func:`slice_difference_noise_hu`: the fourth difference across slices (taps 1 -4 6 -4 1
    over sqrt(70)), through the same tiles, reads the whole SD of noise that is independent
    from slice to slice however it is correlated within each (axial reconstruction without
    overlapping slices).
    Anatomy changes from slice to slice too, and more the thicker the slices, so it is read only
    where the slices are at most :data:`SLICE_SPACING_RATIO` times the pixel spacing apart.
    Noise correlated across slices as well (overlapping reconstruction) reads low here too, and
    the fine band's reading stands.
* **Blur** (:func:`estimate_profile`): cross-scale self-consistency. CT anatomy is close to
  self-similar across scales (a power-law spectrum), so the LR volume relates to the HR one as
  the LR volume degraded once more relates to the LR volume. For each candidate profile ``k``
  we degrade the LR volume once more along the axis with ``k`` (``L2 = D_k(L)``) and compare a
  scale-free sharpness statistic, the ratio of the spectral energy in the top octave
  (0.25 to 0.5 cycles per voxel) to that of the octave below, of ``L2`` with that of ``L``
  (after taking the estimated noise out of both). The candidate whose ``L2`` is as sharp as
  ``L`` is the estimate; between two that miss, the one that misses on the narrow side is
  preferred (:data:`TOO_WIDE_WEIGHT`). The candidates are Gaussians only
  (:data:`CROSS_SCALE_CANDIDATES`). Measured on the degradation matrix
  (benchmarks/degradation_bench.py) and on LR made outside these families (``--foreign``).
* **Through-plane blur** (:func:`estimate_through_plane_profile`, scales ``1x1xS``, and
  ``AxAxS`` with ``S > A``): x and y are at full resolution (or at a finer spacing than z), so
  they show what z would look like without its blur (the idea of SMORE / ESPRESO, assuming the
  anatomy is about as sharp along z as along the in-plane axes). For each candidate ``k``
  (widths in z's HR voxels, converted to the reference axis's) the reference axis is degraded
  by ``k`` to z's LR spacing (in mm, whole voxels) and its sharpness along that axis is compared
  with the sharpness of ``L`` along z; the closest is the axis's reading, a miss on the wide
  side counting :data:`TOO_WIDE_WEIGHT` times, as in-plane. Through-plane x and y each give
  a reading and the wider one is the estimate (a reference axis blurrier than z's HR, by the
  scanner's in-plane resolution or the anatomy, reads narrow): on the benchmark's 54 1x1x4
  inputs (the crops, the Gaussians, the block and widths between, 0 to 30 HU) it picks the
  truth on 21 where x alone picked it on 9, and never a wider profile (too narrow deconvolves
  less; too wide makes halos; not a guarantee: on the bundled 64^3 sample a ``gauss:1.5`` LR
  reads ``gauss:2`` with x, as it did with x alone). With x and y scaled too (``2x2x4``) they
  are at the LR's own spacing and blur, and y's reading went wider than the truth on 12 of 54
  such inputs (all the abdomen's): x's alone is the estimate there (wider on 1 of 54:
  ``gauss:0.75`` with 30 HU on the abdomen read ``gauss:1``; with equal weights x read a
  ``gauss:0.5`` abdomen crop of the tests as ``gauss:1``). benchmarks/slice_profile_bench.py; Testing/test_lrmodel.py checks the
  crops of the four matrix profiles at both scales.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.stats import chi2

from .grids import AXES, Scale, halved, is_through_plane, is_z_coarsest
from .lrmodel import (ASSUMED, CARRIED, DEFAULT_PROFILE, DICOM, ESTIMATED, GIVEN, GIVEN_TOO_WIDE, LRModel, LROperator,
                      Profile, slab_from_dicom)
from .volume import Volume

#: Gaussian widths (HR voxels) the blur estimates choose from.
CANDIDATE_SIGMAS = (0.5, 1.0, 1.5, 2.0)
#: What the cross-scale estimate (:func:`estimate_profile`) chooses from: Gaussians, not the
#: block mean. At x2 the block and ``gauss:0.5`` have the same SD (0.5 HR voxels) and the
#: statistic told them apart no better than chance (8 of the matrix's 18 x2 inputs made by the
#: two read the other one), but the block's response falls to zero at the HR Nyquist, so the
#: step and the internal prior restore more near the LR Nyquist under it. On a head crop that
#: SimpleITK's B-spline interpolator resampled without antialiasing (close to point sampling)
#: the estimate read ``box`` and ``balanced`` lost 0.50 dB to cubic; under ``gauss:0.5`` it
#: gained +0.17 dB (with correlated noise -0.03; +0.03 and +0.08 with the networks pretrained
#: with axis permutations). The block-mean inputs gave up at most 0.13 dB at
#: x2, and the large x4 cells whose x2 level had read the block 0.29 dB at most
#: (benchmarks/degradation_foreign.md, degradation.md, degradation_x4_large.md).
CROSS_SCALE_CANDIDATES = tuple(Profile("gauss", s) for s in CANDIDATE_SIGMAS)
#: What the through-plane estimate (:func:`estimate_through_plane_profile`) chooses from: the
#: Gaussians and the block (contiguous thick slices).
THROUGH_PLANE_CANDIDATES = CROSS_SCALE_CANDIDATES + (Profile("box"),)
#: In-plane (cross-scale) estimate: a candidate that looks wider than the input's blur (its
#: ``L2`` blurrier than ``L``) pays this many times its log gap, one that looks narrower pays it
#: once. Too wide a blur makes the consistency step deconvolve noise and aliasing, too narrow a
#: one only gives up part of the gain: at x2 on the matrix's crops, one member too wide put
#: ``fast`` at -5.8 to +0.2 dB against cubic (23 of 27 inputs below), one member too narrow
#: cost 0.02 to 2.4 dB against the right member and stayed above cubic
#: (benchmarks/blur_choice.md). With equal weights, a head crop resampled by SimpleITK without
#: antialiasing (the block mean at x2) plus in-plane correlated noise read ``gauss:1`` (log
#: gaps -0.30 against +0.33 for ``box``) and ``balanced`` lost 4.9 dB to cubic
#: (benchmarks/degradation_bench.py ``--foreign``). 1.5 keeps that input at the narrow end; 2 also
#: moved a ``gauss:1.5`` chest input to ``gauss:1`` (1.6 dB less gain).
TOO_WIDE_WEIGHT = 1.5
#: Noise: tiles of WINDOW^3 band coefficients; the QUANTILE-th tile energy, unbiased for
#: white noise by the chi-square quantile (tiles holding anatomy are the energetic ones).
WINDOW, QUANTILE = 4, 0.25
#: The slice-difference noise reading counts where the slices are at most this many times the
#: pixel spacing apart (x2 of the 1.5 mm head crop: 1.6). Through-plane x4 (ratio 4) the anatomy
#: between slices reads as noise: 5.7 to 70 HU on the noiseless LRs of the degradation
#: benchmark's crops, where the fine band reads 3.4 to 35.
SLICE_SPACING_RATIO = 2.0
#: Order of the difference across slices: anatomy leaks less into higher orders while white
#: noise reads the same. On the chest crop's noiseless x2 LR (``gauss:1.5``) the second
#: difference read 12.2 HU where the fine band reads 7.2 (``fast`` gave up 0.6 dB), the fourth
#: 6.2; both read 20 HU of in-plane correlated noise at about 20 on the head and abdomen.
ACROSS_ORDER = 4
#: Fewest voxels along an axis, after the extra degradation, to estimate its blur.
MIN_SAMPLES = 16
#: Largest scale whose blur is estimated: the estimate was measured on the degradation matrix
#: at x2 only (at x4 the benchmark crops are too small for it); larger scales get the default.
MAX_ESTIMATED_SCALE = 2
#: A given profile more than this many times wider (in SD) than the estimate is flagged: at x2
#: the estimate returned the true width or the narrowest pair (benchmarks/degradation.md), and a
#: blur wider than the truth made the consistency step lose over 11 dB to cubic
#: (benchmarks/wrong_model.md).
WIDER_FACTOR = 1.5
#: What the source of a flagged profile says (the internal prior learns nothing from it).
LOOKS_TOO_WIDE = "wider than the input looks"
#: What the source of an axis too short to estimate says when it takes the narrowest estimate of
#: an axis of the same scale (read in HR voxels of either axis, or carried at its width in mm,
#: whichever is narrower: a narrower blur than the truth costs little, a wider one makes halos).
#: On a head crop at x4 (26 LR slices, 48 x 48 in-plane) z borrowed the in-plane estimate and
#: the internal prior ran where it had kept ``fast``: +0.69 to +1.25 dB over ``fast`` on the 8
#: cells of benchmarks/degradation_x4_large.md.
BORROWED = "estimated on"
#: What the source of an axis says one level down (x4 -> x2, :func:`lr_model_one_level_down`)
#: when its blur could be estimated at neither scale: the x4 default carried at its width in mm
#: (gauss:0.5 at x4 is gauss:0.25 at x2), the narrowest blur assumed, and the one ``fast``'s
#: consistency step at x4 already assumes. The internal prior learns from a pair made with it
#: (it refuses a plain default): on the 36 x4 cells of the 96^3 crops, whose 24^3 LR is too
#: small to estimate the blur, that gained +0.44 dB over ``fast`` on average (worst +0.15 dB)
#: and SSIM on all of them (+0.005 at worst; with the flip average of
#: :func:`ctsr.internal_prior.apply`; benchmarks/degradation.md).
CARRIED_DEFAULT = "carried default"


def _tile_sd(band: np.ndarray, usable: np.ndarray) -> float:
    """The SD of white noise whose ``band`` (KJI, normalized to unit gain on white noise) has
    the :data:`QUANTILE`-th tile energy of ``band`` over tiles whose voxels are all ``usable``."""
    w = WINDOW
    shape = [n // w * w for n in band.shape]
    if min(shape) == 0:
        return float(np.median(np.abs(band))) / 0.6745
    tiles = lambda x: x[: shape[0], : shape[1], : shape[2]].reshape(
        shape[0] // w, w, shape[1] // w, w, shape[2] // w, w)
    energy = (tiles(band) ** 2).mean(axis=(1, 3, 5))
    clean = tiles(usable).all(axis=(1, 3, 5))
    energy = energy[clean] if clean.any() else energy.ravel()
    return math.sqrt(float(np.quantile(energy, QUANTILE)) / (chi2.ppf(QUANTILE, w**3) / w**3))


def fine_band_noise_hu(array: np.ndarray) -> float:
    """The SD (HU) of white noise with the finest 3D Haar band's energy of ``array`` (KJI, HU);
    0 for a volume without noise (module docstring)."""
    a = np.asarray(array, dtype=np.float32)
    a = a[: a.shape[0] // 2 * 2, : a.shape[1] // 2 * 2, : a.shape[2] // 2 * 2]
    if min(a.shape) < 2:
        return 0.0
    blocks = a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2, a.shape[2] // 2, 2)
    sign = np.array([1.0, -1.0], dtype=np.float32)
    band = np.einsum("aibjck,i,j,k->abc", blocks, sign, sign, sign) / np.float32(math.sqrt(8.0))
    return round(_tile_sd(band, blocks.min(axis=(1, 3, 5)) > float(a.min())), 3)


def slice_difference_noise_hu(array: np.ndarray) -> float:
    """The SD (HU) of noise independent from slice to slice in ``array`` (KJI, HU), read from
    the :data:`ACROSS_ORDER`-th difference along K (unit gain on white noise); 0 with too few
    slices (module docstring)."""
    a = np.asarray(array, dtype=np.float32)
    n = a.shape[0] - ACROSS_ORDER
    if n < 1:
        return 0.0
    taps = np.array([(-1) ** k * math.comb(ACROSS_ORDER, k) for k in range(ACROSS_ORDER + 1)], dtype=np.float32)
    taps /= np.float32(math.sqrt(float(np.sum(taps**2))))
    band = sum(t * a[k:k + n] for k, t in enumerate(taps))
    usable = functools.reduce(np.minimum, (a[k:k + n] for k in range(1, ACROSS_ORDER + 1)), a[:n]) > float(a.min())
    return round(_tile_sd(band, usable), 3)


def estimate_noise_hu(volume: Volume, fine: float | None = None) -> tuple[float, str]:
    """(robust SD of the noise in ``volume`` in HU, which reading gave it): the larger of
    :func:`fine_band_noise_hu` (``fine`` when the caller has read it already) and, where the
    slices are no more than :data:`SLICE_SPACING_RATIO` times the pixel spacing apart,
    :func:`slice_difference_noise_hu`."""
    fine = fine_band_noise_hu(volume.array) if fine is None else fine
    spacing = volume.spacing
    if float(spacing[2]) > SLICE_SPACING_RATIO * float(min(spacing[0], spacing[1])):
        return fine, "estimated (finest wavelet band; slices too far apart to read it across them)"
    across = slice_difference_noise_hu(volume.array)
    if across > fine:
        return across, f"estimated (across slices; the finest wavelet band reads {fine:.3g})"
    return fine, "estimated (finest wavelet band)"


def _sharpness(array: np.ndarray, axis: int, noise_var: float) -> float | None:
    """Top-octave over next-octave spectral energy along ``axis`` (Hann-windowed, averaged over
    the other axes), white noise of variance ``noise_var`` removed; None if too few samples."""
    n = array.shape[axis]
    if n < MIN_SAMPLES:
        return None
    moved = np.moveaxis(np.asarray(array, dtype=np.float64), axis, -1)
    moved = moved - moved.mean(axis=-1, keepdims=True)
    window = np.hanning(n)
    power = (np.abs(np.fft.rfft(moved * window, axis=-1)) ** 2).reshape(-1, n // 2 + 1).mean(axis=0)
    freq = np.fft.rfftfreq(n)
    noise = noise_var * float(np.sum(window**2))  # white noise's flat power per bin
    hi = (freq >= 0.25) & (freq <= 0.5)
    lo = (freq >= 0.125) & (freq < 0.25)
    if not hi.any() or not lo.any():
        return None
    e_hi = max(float(np.mean(power[hi])) - noise, 0.0)
    e_lo = max(float(np.mean(power[lo])) - noise, 1e-12)
    return e_hi / e_lo


def _closest_candidate(target: float | None, degrade, candidates,
                       too_wide_weight: float = 1.0) -> tuple[Profile | None, float]:
    """The profile of ``candidates`` whose ``degrade(profile) -> sharpness`` is closest to ``target``
    in log ratio, a gap on the side of too wide a candidate (its ``L2`` blurrier than ``L``)
    counted ``too_wide_weight`` times; and that gap, signed (negative: the candidate looks
    wider than the input's blur). (None, inf) when nothing can be compared."""
    best, best_gap, best_cost = None, math.inf, math.inf
    if target is None or target <= 0:
        return best, best_gap
    for profile in candidates:
        value = degrade(profile)
        if value is None or value <= 0:
            continue
        gap = math.log(value / target)
        cost = gap if gap >= 0 else -too_wide_weight * gap
        if cost < best_cost:
            best, best_gap, best_cost = profile, gap, cost
    return best, best_gap


def through_plane_reading(lr: Volume, scale_z: int, noise_hu: float, axis: int,
                          too_wide_weight: float = TOO_WIDE_WEIGHT):
    """(profile, log gap) that in-plane image axis ``axis`` (0 = x, 1 = y) of ``lr`` (HU) reads
    for z's profile at scale ``AxAx{scale_z}`` (module docstring), a miss on the wide side
    counting ``too_wide_weight`` times; None when there are too few voxels to tell.
    ``noise_hu``: the white noise level taken out of the top octave (:func:`fine_band_noise_hu`)."""
    axis_mm, z_hr_mm = float(lr.spacing[axis]), float(lr.spacing[2]) / scale_z
    # The axis is degraded to z's LR spacing (in mm, rounded to whole voxels), each candidate's
    # width taken from z's HR voxels to the axis's.
    factor = max(2, round(float(lr.spacing[2]) / axis_mm))
    if lr.array.shape[0] < MIN_SAMPLES or lr.array.shape[2 - axis] // factor < MIN_SAMPLES:
        return None
    only = [1, 1, 1]
    only[axis] = factor

    def degrade(profile):
        in_axis = Profile("gauss", profile.value * z_hr_mm / axis_mm) if profile.kind == "gauss" else profile
        operator = LROperator(LRModel((in_axis,) * 3), tuple(only), lr.array.shape, (axis_mm,) * 3)
        return _sharpness(operator(lr.array), 2 - axis, (noise_hu * operator.noise_gain()) ** 2)

    best, gap = _closest_candidate(_sharpness(lr.array, 0, noise_hu**2), degrade, THROUGH_PLANE_CANDIDATES,
                                   too_wide_weight)
    return None if best is None else (best, gap)


def estimate_through_plane_profile(lr: Volume, scale: Scale, noise_hu: float):
    """(profile, how) for the z axis of ``lr`` (HU) at ``scale`` (``AxAxS``, ``A`` below ``S``):
    through-plane (``A`` = 1) the wider of the readings with x and with y as the reference, else
    x's (:func:`through_plane_reading`, module docstring); (None, reason) when none can tell."""
    scale_z = int(scale[2])
    references = (0, 1) if is_through_plane(scale) else (0,)
    readings = {axis: through_plane_reading(lr, scale_z, noise_hu, axis) for axis in references}
    readings = {axis: r for axis, r in readings.items() if r is not None}
    if not readings:
        return None, (f"default (too few voxels to read the slice profile: {lr.shape_ijk[2]} slices, "
                      f"{MIN_SAMPLES} needed, and as many in-plane at the slice spacing)")
    z_hr_mm = float(lr.spacing[2]) / scale_z
    axis = max(readings, key=lambda a: readings[a][0].std_hr_voxels(scale_z, z_hr_mm))
    best, gap = readings[axis]
    others = "".join(f"; {AXES[a]} reads {p}" for a, (p, _) in readings.items() if a != axis)
    return best, f"estimated (in-plane axes as reference: {AXES[axis]}, log gap {gap:+.2f}{others})"


def estimate_profile(lr: Volume, scale: Scale, axis: int, noise_hu: float):
    """(profile, how) for image axis ``axis`` (0 = x, 1 = y, 2 = z) of ``lr`` (HU) at ``scale``;
    (None, reason) when the volume is too small along that axis to tell. ``noise_hu``: the white
    noise level taken out of the top octave (:func:`fine_band_noise_hu`)."""
    s = int(scale[axis])
    array_axis = 2 - axis
    n = lr.array.shape[array_axis]
    if s > MAX_ESTIMATED_SCALE:
        return None, f"default (the blur is estimated up to x{MAX_ESTIMATED_SCALE} only, where it was measured)"
    if n // s < MIN_SAMPLES:
        return None, f"default (too few voxels along {AXES[axis]} to estimate the blur)"
    target = _sharpness(lr.array, array_axis, noise_hu**2)
    if target is None or target <= 0:
        return None, "default (no detail left to estimate the blur from)"
    hr_spacing = float(lr.spacing[axis]) / s
    only_axis = [1, 1, 1]
    only_axis[axis] = s

    def degrade(profile):
        operator = LROperator(LRModel(tuple(profile for _ in range(3))), tuple(only_axis), lr.array.shape,
                              (hr_spacing, hr_spacing, hr_spacing))
        return _sharpness(operator(lr.array), array_axis, (noise_hu * operator.noise_gain()) ** 2)

    best, best_gap = _closest_candidate(target, degrade, CROSS_SCALE_CANDIDATES, TOO_WIDE_WEIGHT)
    if best is None:
        return None, "default (the blur could not be estimated)"
    return best, f"estimated (cross-scale sharpness, log gap {best_gap:+.2f})"


def resolve_lr_model(lr: Volume, scale: Scale, given: LRModel | str | None = None,
                     slice_thickness_mm: float | None = None) -> LRModel:
    """Complete an LR model for ``lr`` at ``scale`` (IJK): what the user gave, then the z
    profile from DICOM SliceThickness (``slice_thickness_mm``, when z is downsampled), then
    estimates from the input (noise SD, blur width per axis, above), then
    :data:`DEFAULT_PROFILE`. ``source`` records which for each part."""
    model = given if isinstance(given, LRModel) else LRModel.parse(given)
    if scale[2] > 1 and model.profiles[2] is None:
        profile, reason = slab_from_dicom(slice_thickness_mm, float(lr.spacing[2]))
        if profile is not None:
            model = model.with_profile(2, profile, reason, DICOM)
    # The blur estimate takes the noise out of the top octave: the fine band's reading, whatever
    # the whole SD (noise correlated within slices has less there).
    fine_noise_hu = fine_band_noise_hu(lr.array)
    if model.noise_hu is None:
        model = model.with_noise(*estimate_noise_hu(lr, fine_noise_hu), ESTIMATED)
    if is_z_coarsest(scale) and model.profiles[2] is None:
        profile, how = estimate_through_plane_profile(lr, scale, fine_noise_hu)
        if profile is not None:
            model = model.with_profile(2, profile, how, ESTIMATED)
        elif scale[2] > MAX_ESTIMATED_SCALE:  # nor is z estimated below: say why this could not
            model = model.with_profile(2, DEFAULT_PROFILE, how, ASSUMED)
    estimates = {axis: estimate_profile(lr, scale, axis, fine_noise_hu)
                 for axis, s in enumerate(scale) if s > 1 and model.profiles[axis] is None}
    for axis, (profile, how) in estimates.items():
        # Axes of one scale share the narrowest estimate: an axis whose HR was already blurred
        # (z of a scan with thicker slices than pixels) looks more degraded than it was, and
        # assuming too wide a blur is what makes the consistency step overshoot. An axis too
        # short to be estimated borrows it (BORROWED).
        peers = {a: p for a, (p, _) in estimates.items() if scale[a] == scale[axis] and p is not None}
        s, spacing = scale[axis], float(lr.spacing[axis]) / scale[axis]
        if profile is not None:
            profile = min(peers.values(), key=lambda p: p.std_hr_voxels(s, spacing))
        elif peers:
            candidates = [(q, a) for a, p in peers.items()
                          for q in (p, _at_physical_width(p, s, float(lr.spacing[a]) / s, spacing))]
            profile, lender = min(candidates, key=lambda c: c[0].std_hr_voxels(s, spacing))
            how = f"{BORROWED} {AXES[lender]} ({how.removeprefix('default (').removesuffix(')')})"
        model = model.with_profile(axis, profile or DEFAULT_PROFILE, how, ESTIMATED if profile else ASSUMED)
    return _flag_given_profiles_wider_than_estimated(lr, scale, model, fine_noise_hu)


def _at_physical_width(profile: Profile, scale: int, from_mm: float, to_mm: float) -> Profile:
    """``profile`` of an axis with HR voxels of ``from_mm`` carried to one with HR voxels of
    ``to_mm`` at the same width in mm (a box becomes a slab as wide as its block)."""
    if profile.kind == "gauss":
        return Profile("gauss", round(profile.value * from_mm / to_mm, 4))
    if profile.kind == "box":
        return Profile("slab", round(scale * from_mm, 4))
    return profile


def _flag_given_profiles_wider_than_estimated(lr: Volume, scale: Scale, model: LRModel,
                                               fine_noise_hu: float) -> LRModel:
    """``model`` with the source of each given profile that is more than :data:`WIDER_FACTOR`
    times wider than the cross-scale estimate (axes where it runs; ``fine_noise_hu`` taken out of
    the top octave, :func:`fine_band_noise_hu`) saying so."""
    for axis, s in enumerate(scale):
        if s == 1 or model.origin.get(AXES[axis]) != GIVEN:
            continue
        estimate, _ = estimate_profile(lr, scale, axis, fine_noise_hu)
        spacing = float(lr.spacing[axis]) / s
        if estimate is not None and (model.profiles[axis].std_hr_voxels(s, spacing)
                                     > WIDER_FACTOR * estimate.std_hr_voxels(s, spacing)):
            model = model.with_profile(axis, model.profiles[axis],
                                       f"given ({LOOKS_TOO_WIDE}: estimated {estimate}; a blur wider than "
                                       "the truth makes halos)", GIVEN_TOO_WIDE)
    return model


def lr_model_one_level_down(lr: Volume, scale: Scale, model: LRModel) -> LRModel:
    """The LR model of ``lr`` at half of ``scale`` (each scaled axis halved; IJK), from
    ``model`` at ``scale``: profiles that were given, read from DICOM or the paper's keep their
    physical width (a Gaussian's sigma halves in HR voxels twice as large; a box stays the
    block; a slab stays in mm; a given one is checked against the estimate again, which runs at
    x2); estimated and default ones are estimated again at the half scale, and a default one
    that cannot be estimated there either keeps its physical width too (:data:`CARRIED_DEFAULT`);
    the noise SD stays."""
    half = halved(scale)
    carried = LRModel(noise_hu=model.noise_hu, source={"noise": model.source.get("noise", "")},
                      origin={"noise": model.origin.get("noise", "")})
    for axis, (profile, s) in enumerate(zip(model.profiles, scale)):
        origin = model.origin.get(AXES[axis])
        if s == 1 or profile is None or origin in (ESTIMATED, ASSUMED):
            continue
        if origin in (GIVEN, GIVEN_TOO_WIDE):  # checked again at the half scale
            carried = carried.with_profile(axis, _one_level_down(profile, s, half[axis]), "given", GIVEN)
        else:
            carried = carried.with_profile(axis, _one_level_down(profile, s, half[axis]),
                                           model.source.get(AXES[axis], ""), origin)
    down = resolve_lr_model(lr, half, carried)
    for axis, (profile, s) in enumerate(zip(model.profiles, scale)):
        if s > 1 and model.origin.get(AXES[axis]) == ASSUMED and down.origin.get(AXES[axis]) == ASSUMED:
            down = down.with_profile(axis, _one_level_down(profile, s, half[axis]),
                                     f"{CARRIED_DEFAULT} (x{s}'s {profile} at its width in mm; the blur could be "
                                     f"estimated neither at x{s} nor at x{half[axis]})", CARRIED)
    return down


def _one_level_down(profile: Profile, scale: int, half_scale: int) -> Profile:
    """``profile`` of an axis at ``scale`` at the same width in mm at ``half_scale`` (a
    Gaussian's sigma in HR voxels scales with them; a box stays the block; a slab is in mm)."""
    return Profile("gauss", profile.value * half_scale / scale) if profile.kind == "gauss" else profile
