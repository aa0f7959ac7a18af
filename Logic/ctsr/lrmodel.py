"""The LR model: how a low-resolution CT relates to the high-resolution one (one room for it).

An LR voxel is a weighted mean of the HR voxels around the centre of its block (the grid
relation of :mod:`ctsr.grids`), plus noise. Along each downsampled axis the weights come from
one **profile** (all widths in HR voxels of that axis unless stated):

* ``gauss:SIGMA``: Gaussian smoothing of standard deviation SIGMA HR voxels, then Lanczos-3
  windowed-sinc sampling at the block centre (the paper's LR simulation is ``gauss:1``);
* ``box``: the plain mean of the block (a big pixel or a contiguous thick slice integrates
  what it covers);
* ``slab:Tmm``: a rectangular slice-sensitivity profile of thickness T **mm**, centred on the
  block (T is DICOM SliceThickness; T above the slice spacing means overlapping slices).

and one **noise** SD in HU (white, added to the LR voxels). :class:`LRModel` holds a profile
per IJK axis (``None``: not known yet) and the noise SD (``None``: not known yet);
:func:`ctsr.lrestimate.resolve_lr_model` fills what is missing, in this order: given by the
user, read from DICOM (:func:`slab_from_dicom`), estimated from the input, the conservative
default (:data:`DEFAULT_PROFILE`).

:class:`LROperator` is the one forward operator ``D`` (HR -> LR, separable, one sparse matrix
per axis), used by ``simulate-lr``, the consistency step, the
projection-domain operator of the pipeline, the benchmarks and the tests.
Arrays are KJI (as :class:`ctsr.volume.Volume`), values keep their units (HU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage, sparse

from .errors import UserError
from .grids import AXES, Scale, lr_grid
from .lanczos import block_centre_positions, lanczos_matrix
from .volume import Volume


@dataclass(frozen=True)
class Profile:
    """The blur along one axis: ``kind`` ``gauss`` (``value`` = sigma, HR voxels), ``box``
    (the block width; ``value`` unused) or ``slab`` (``value`` = thickness, mm)."""

    kind: str
    value: float = 0.0

    def __post_init__(self):
        if self.kind not in ("gauss", "box", "slab"):
            raise UserError(f"unknown LR profile {self.kind!r}; use gauss:SIGMA, box or slab:THICKNESSmm.")
        if not math.isfinite(self.value) or self.value < 0 or (self.kind == "slab" and self.value <= 0):
            raise UserError(f"the LR profile {self} needs a positive, finite width.")

    def __str__(self) -> str:
        if self.kind == "gauss":
            return f"gauss:{self.value:g}"
        return "box" if self.kind == "box" else f"slab:{self.value:g}mm"

    @classmethod
    def parse(cls, text: str) -> "Profile":
        kind, _, value = text.strip().lower().partition(":")
        try:
            if kind == "gauss":
                return cls("gauss", float(value))
            if kind == "box" and not value:
                return cls("box")
            if kind == "slab":
                return cls("slab", float(value.removesuffix("mm")))
        except ValueError:
            pass
        raise UserError(f"{text!r} is not an LR profile; use gauss:SIGMA (HR voxels), box or slab:THICKNESSmm.")

    def std_hr_voxels(self, scale: int, hr_spacing_mm: float) -> float:
        """The profile's standard deviation in HR voxels (a width to compare profiles by)."""
        if self.kind == "gauss":
            return self.value
        width = scale if self.kind == "box" else self.value / hr_spacing_mm
        return width / math.sqrt(12.0)

    def matrix(self, n_hr: int, scale: int, hr_spacing_mm: float) -> sparse.csr_matrix:
        """``(n_hr // scale, n_hr)`` float32 matrix: LR sample ``i`` from HR samples ``j`` along
        one axis (rows sum to 1; beyond the border the edge sample repeats)."""
        n_lr = n_hr // scale
        if scale == 1:
            return sparse.identity(n_hr, dtype=np.float32, format="csr")
        if self.kind == "gauss":
            sampling = lanczos_matrix(n_hr, block_centre_positions(n_lr, scale, downsample=True))
            if self.value == 0:
                return sampling.astype(np.float32)
            smoothing = ndimage.gaussian_filter1d(np.eye(n_hr), self.value, axis=0, mode="nearest")
            smoothing[np.abs(smoothing) < 1e-12] = 0.0
            return (sampling @ sparse.csr_matrix(smoothing)).astype(np.float32).tocsr()
        width = scale if self.kind == "box" else self.value / hr_spacing_mm
        return _box_matrix(n_hr, scale, width)


def _box_matrix(n_hr: int, scale: int, width: float) -> sparse.csr_matrix:
    """A rectangular profile of ``width`` HR voxels centred on each block: each HR voxel (a unit
    interval) weighs by its overlap with the profile."""
    n_lr = n_hr // scale
    centres = block_centre_positions(n_lr, scale, downsample=True)
    half = width / 2
    reach = int(math.ceil(half + 0.5)) + 1
    offsets = np.arange(-reach, reach + 1)
    index = np.floor(centres)[:, None].astype(np.int64) + offsets[None, :]
    lo = np.maximum(index - 0.5, centres[:, None] - half)
    hi = np.minimum(index + 0.5, centres[:, None] + half)
    weights = np.clip(hi - lo, 0.0, None)
    weights /= weights.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(n_lr), offsets.size)
    columns = np.clip(index, 0, n_hr - 1).ravel()
    matrix = sparse.csr_matrix((weights.ravel(), (rows, columns)), shape=(n_lr, n_hr))
    matrix.eliminate_zeros()
    return matrix.astype(np.float32)


#: Where a part of an LR model came from (:attr:`LRModel.origin`, what the code decides by;
#: :attr:`LRModel.source` says it in words for the user): given by the user, given but looking
#: wider than the input (:func:`ctsr.lrestimate.resolve_lr_model` flags it), read from DICOM,
#: the paper's simulation, estimated from the input, assumed (:data:`DEFAULT_PROFILE`: nothing
#: given, read or estimated), or an assumption carried from another scale at its width in mm.
GIVEN, GIVEN_TOO_WIDE, DICOM, PAPER_ORIGIN, ESTIMATED, ASSUMED, CARRIED = (
    "given", "given, too wide", "dicom", "paper", "estimated", "assumed", "carried")


@dataclass(frozen=True)
class LRModel:
    """Per-axis profiles (IJK order, ``None`` = not known) and the LR noise SD (HU, ``None`` =
    not known); for each part (``"x"``, ``"y"``, ``"z"``, ``"noise"``) ``source`` says where it
    came from in words (reported with every result) and ``origin`` as one of :data:`GIVEN` ...
    :data:`CARRIED`."""

    profiles: tuple = (None, None, None)
    noise_hu: float | None = None
    source: dict = field(default_factory=dict, compare=False)
    origin: dict = field(default_factory=dict, compare=False)

    @classmethod
    def parse(cls, text: str | None, slice_axis: int | None = None) -> "LRModel":
        """``"gauss:1"``, ``"box"``, ``"slab:5mm"`` (the slice axis: ``slice_axis``, IJK, or z
        when None; :func:`ctsr.grids.slice_axis` of the job's scale), ``"noise:15"``, joined by
        commas; ``"xy=box,z=slab:3mm"`` names the axes; ``"auto"``, ``""`` or None: nothing
        given (everything is read from DICOM, estimated, or defaulted)."""
        profiles, noise, source = [None, None, None], None, {}
        for term in (text or "").split(","):
            term = term.strip().lower()
            if term in ("", "auto"):
                continue
            if term.startswith("noise:"):
                try:
                    noise = float(term[6:].removesuffix("hu"))
                except ValueError:
                    noise = -1.0
                if not math.isfinite(noise) or noise < 0:
                    raise UserError(f"{term!r}: the LR noise is an SD in HU, 0 or more (like noise:15).")
                source["noise"] = "given"
                continue
            axes, _, spec = term.rpartition("=")
            profile = Profile.parse(spec)
            axes = axes or (AXES[2 if slice_axis is None else slice_axis] if profile.kind == "slab" else AXES)
            if not axes or set(axes) - set(AXES):
                raise UserError(f"{term!r}: name the axes with x, y, z (like xy=box or z=slab:5mm).")
            for axis in axes:
                profiles[AXES.index(axis)] = profile
                source[axis] = "given"
        return cls(tuple(profiles), noise, source, dict.fromkeys(source, GIVEN))

    def __str__(self) -> str:
        parts = []
        groups: dict = {}
        for axis, profile in zip(AXES, self.profiles):
            groups.setdefault(str(profile) if profile else None, []).append(axis)
        for text, axes in groups.items():
            if text is not None:
                parts.append(text if len(axes) == 3 else f"{''.join(axes)}={text}")
        if self.noise_hu is not None:
            parts.append(f"noise:{self.noise_hu:.3g}")
        return ",".join(parts) or "auto"

    def with_profile(self, axis: int, profile: Profile, source: str, origin: str) -> "LRModel":
        """This model with ``profile`` along ``axis`` (IJK), from ``origin`` (said as ``source``)."""
        profiles = list(self.profiles)
        profiles[axis] = profile
        return replace(self, profiles=tuple(profiles), source={**self.source, AXES[axis]: source},
                       origin={**self.origin, AXES[axis]: origin})

    def with_noise(self, noise_hu: float, source: str, origin: str) -> "LRModel":
        """This model with a noise SD of ``noise_hu`` (HU), from ``origin`` (said as ``source``)."""
        return replace(self, noise_hu=float(noise_hu), source={**self.source, "noise": source},
                       origin={**self.origin, "noise": origin})

    def restricted_to(self, axes) -> "LRModel":
        """This model with the profiles of ``axes`` (IJK) only, the others not known; the noise stays."""
        kept = {AXES[axis] for axis in axes} | {"noise"}
        return replace(self, profiles=tuple(p if axis in axes else None for axis, p in enumerate(self.profiles)),
                       source={k: v for k, v in self.source.items() if k in kept},
                       origin={k: v for k, v in self.origin.items() if k in kept})

    def with_axes_swapped(self, a: int, b: int) -> "LRModel":
        """This model for a volume whose index axes ``a`` and ``b`` (IJK) were exchanged
        (:meth:`ctsr.volume.Volume.with_axes_swapped`)."""
        profiles = list(self.profiles)
        profiles[a], profiles[b] = profiles[b], profiles[a]
        names = {AXES[a]: AXES[b], AXES[b]: AXES[a]}
        return replace(self, profiles=tuple(profiles), source={names.get(k, k): v for k, v in self.source.items()},
                       origin={names.get(k, k): v for k, v in self.origin.items()})

    def describe(self) -> dict:
        """For provenance: the model as text and where each part came from."""
        return {"model": str(self), "source": dict(self.source)}


#: The paper's LR simulation (DESIGN.md section 5): Gaussian sigma 1 HR voxel, no noise.
PAPER = LRModel((Profile("gauss", 1.0),) * 3, 0.0, dict.fromkeys(("x", "y", "z", "noise"), "paper"),
                dict.fromkeys(("x", "y", "z", "noise"), PAPER_ORIGIN))

#: What an axis gets when nothing is given, read or estimated: the narrowest profile of the
#: family (assuming a narrower blur than the truth deconvolves less and cannot overshoot;
#: assuming the box at x4 lost up to 0.3 dB to cubic on a gauss:0.5 LR; chosen by
#: benchmarks/degradation_bench.py).
DEFAULT_PROFILE = Profile("gauss", 0.5)


class LROperator:
    """``D``: HR (KJI array on the HR grid) -> LR (on :func:`ctsr.grids.lr_grid`), separable,
    for one model, scale (IJK) and HR shape/spacing; :attr:`matrices` are its per-axis factors."""

    def __init__(self, model: LRModel, scale: Scale, hr_shape_kji, hr_spacing_ijk):
        self.model, self.scale = model, tuple(int(s) for s in scale)
        self.hr_shape_kji = tuple(int(n) for n in hr_shape_kji)
        self.lr_shape_kji = tuple(n // s for n, s in zip(self.hr_shape_kji, self.scale[::-1]))
        # matrices[a] acts on array axis a (KJI), i.e. on image axis 2 - a.
        self.matrices = []
        for a, n in enumerate(self.hr_shape_kji):
            axis = 2 - a
            s = self.scale[axis]
            if s == 1:
                self.matrices.append(None)
                continue
            profile = model.profiles[axis]
            if profile is None:
                raise ValueError(f"the LR model has no profile for the {AXES[axis]} axis")
            self.matrices.append(profile.matrix(n, s, float(hr_spacing_ijk[axis])))

    @classmethod
    def for_volume(cls, model: LRModel, scale: Scale, hr: Volume) -> "LROperator":
        return cls(model, scale, hr.array.shape, hr.spacing)

    def __call__(self, hr: np.ndarray) -> np.ndarray:
        """``D(hr)``: float32 KJI array of :attr:`lr_shape_kji` (trailing partial blocks dropped)."""
        if tuple(hr.shape) != self.hr_shape_kji:
            raise ValueError(f"expected an HR array of shape {self.hr_shape_kji}, got {hr.shape}")
        return apply_separable(hr, self.matrices)

    def noise_gain(self) -> float:
        """How much white HR noise of SD 1 keeps after ``D`` (sqrt of the sum of squared
        weights per LR voxel, interior average): e.g. 1/sqrt(8) for the box at x2."""
        gain = 1.0
        for matrix in self.matrices:
            if matrix is not None:
                gain *= float(np.sqrt(np.median(np.asarray(matrix.multiply(matrix).sum(axis=1)))))
        return gain


def apply_separable(array: np.ndarray, matrices) -> np.ndarray:
    """Apply one matrix (sparse or dense) per array axis (None: leave that axis); float32 result."""
    out = np.asarray(array, dtype=np.float32)
    for axis, matrix in enumerate(matrices):
        if matrix is None:
            continue
        moved = np.moveaxis(out, axis, 0)
        flat = matrix @ moved.reshape(moved.shape[0], -1)
        out = np.moveaxis(flat.reshape((matrix.shape[0],) + moved.shape[1:]), 0, axis)
    return np.ascontiguousarray(out, dtype=np.float32)


def add_noise(lr: np.ndarray, noise_hu: float, seed: int = 0) -> np.ndarray:
    """``lr`` plus white Gaussian noise of SD ``noise_hu`` (HU), reproducible for a seed."""
    if not noise_hu:
        return np.asarray(lr, dtype=np.float32)
    noise = np.random.default_rng(seed).standard_normal(lr.shape, dtype=np.float32)
    return (lr + np.float32(noise_hu) * noise).astype(np.float32)


def simulate_lr(hr: Volume, scale: Scale, model: LRModel = PAPER, seed: int = 0) -> Volume:
    """Degrade an HR volume (HU) to its LR grid with ``model`` (every downsampled axis needs a
    profile; noise None counts as 0). Trailing HR voxels that do not fill a block are dropped."""
    matrix, shape = lr_grid(hr.ijk_to_ras, hr.shape_ijk, scale)
    operator = LROperator.for_volume(model, scale, hr)
    lr = Volume(add_noise(operator(hr.array), model.noise_hu or 0.0, seed), matrix)
    assert lr.shape_ijk == shape
    return lr


def slab_from_dicom(slice_thickness_mm: float | None, slice_spacing_mm: float) -> tuple[Profile | None, str]:
    """The through-plane profile that DICOM's SliceThickness (0018,0050) gives, and a sentence
    saying so; (None, reason) when the tag is absent or not a positive number."""
    if slice_thickness_mm is None or not math.isfinite(slice_thickness_mm) or slice_thickness_mm <= 0:
        return None, "DICOM SliceThickness (0018,0050) absent"
    return (Profile("slab", round(float(slice_thickness_mm), 4)),
            f"DICOM SliceThickness (0018,0050) {slice_thickness_mm:g} mm, slice spacing {slice_spacing_mm:.4g} mm")
