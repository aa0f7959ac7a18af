"""Training images for the projection prior: DRRs of CT volumes and real radiographs.

* DRRs come from the pipeline's own projector and geometry (:mod:`ctsr.geometry`,
  :mod:`ctsr.projector`): the CT is clipped to the HU window and scaled to [0, 1]
  (:func:`ctsr.metrics.normalize`, the pipeline's step 1), then cone-beam projected over 180
  degrees at the default detector (pixel = smallest voxel magnified to the detector), and again
  with the detector binned by 2. Values are line integrals in scene units.
* Radiographs: DICOM (MONOCHROME1 inverted so that dense is bright, like a line integral) or PNG
  / JPEG, reduced by block means so that their longest side is 512 and 256 pixels.

Images are 2D float32 arrays ``[rows, cols]`` in their own units; :class:`CropSampler` cuts
random crops, flips them, applies a random gamma, and min-max normalizes each crop to [-1, 1]
with :func:`ctsr.prior.operators.normalize_image`, as the sampler normalizes each projection.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..errors import UserError
from ..io import VOLUME_SUFFIXES
from ..metrics import DEFAULT_WINDOW
from ..volume import Volume
from .operators import normalize_image

XRAY_SUFFIXES = (".dcm", ".png", ".jpg", ".jpeg")
RADIOGRAPH_SIDES = (512, 256)


def _files(folder: Path, suffixes) -> list[Path]:
    if not Path(folder).is_dir():
        raise UserError(f"the folder {folder} does not exist.")
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.name.lower().endswith(suffixes))


def ct_files(folder: Path, holdout: tuple[str, ...] = ()) -> list[Path]:
    """CT volume files in ``folder`` except those whose name starts with an entry of ``holdout``."""
    return [p for p in _files(folder, VOLUME_SUFFIXES) if not any(p.name.startswith(h) for h in holdout)]


def xray_files(folder: Path) -> list[Path]:
    """Radiograph files (DICOM, PNG, JPEG) in ``folder``."""
    return _files(folder, XRAY_SUFFIXES)


def read_radiograph(path: Path) -> np.ndarray:
    """A radiograph as float32 ``[rows, cols]``, dense = bright.

    DICOM is read with pydicom (the stored values, rescaled, and inverted when MONOCHROME1), not
    with SimpleITK, whose GDCM reader inverts MONOCHROME1 on its own in some versions only;
    PNG / JPEG with SimpleITK (colour images: mean of R, G, B)."""
    path = Path(path)
    if path.name.lower().endswith(".dcm"):
        return _read_dicom_radiograph(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise UserError(f"{path} could not be read as an image.") from error
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    if image.GetNumberOfComponentsPerPixel() > 1:
        array = array[..., :3].mean(-1)
    if array.ndim != 2:
        raise UserError(f"{path} is not a 2D radiograph (shape {array.shape}).")
    return array


def _read_dicom_radiograph(path: Path) -> np.ndarray:
    try:
        import pydicom
    except ImportError as error:
        raise UserError("reading DICOM radiographs needs pydicom: pip install 'ctsr[train]'.") from error
    try:
        dataset = pydicom.dcmread(str(path))
        array = dataset.pixel_array.astype(np.float32)
    except Exception as error:  # pydicom raises many types for bad or unsupported files
        raise UserError(f"{path} could not be read as a DICOM radiograph ({type(error).__name__}).") from error
    if array.ndim != 2:
        raise UserError(f"{path} is not a single-frame grey radiograph (shape {array.shape}).")
    array = array * float(getattr(dataset, "RescaleSlope", 1) or 1) + float(getattr(dataset, "RescaleIntercept", 0) or 0)
    if str(getattr(dataset, "PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        array = array.max() - array
    return array.astype(np.float32)


def block_reduce(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor x factor`` blocks (the trailing partial blocks are dropped)."""
    rows, cols = (s // factor * factor for s in image.shape)
    return image[:rows, :cols].reshape(rows // factor, factor, cols // factor, factor).mean((1, 3))


def radiograph_images(path: Path) -> list[np.ndarray]:
    """The radiograph at the sizes of :data:`RADIOGRAPH_SIDES` (longest side)."""
    image = read_radiograph(path)
    return [block_reduce(image, max(1, round(max(image.shape) / side))) for side in RADIOGRAPH_SIDES]


def coarsen(volume: Volume, min_spacing: float = 1.0) -> Volume:
    """``volume`` with voxels merged by block means along each axis whose spacing (mm) is well
    below ``min_spacing``, by the integer factor that brings it nearest to ``min_spacing`` (0.57
    mm -> 1.14 mm; 0.96 mm stays): fine in-plane grids cost the projector far more than they
    add to 64-pixel training crops."""
    factors = [max(1, round(min_spacing / s)) for s in volume.spacing[::-1]]  # KJI
    if factors == [1, 1, 1]:
        return volume
    shape = [n // f * f for n, f in zip(volume.array.shape, factors)]
    array = volume.array[: shape[0], : shape[1], : shape[2]]
    array = array.reshape(shape[0] // factors[0], factors[0], shape[1] // factors[1], factors[1],
                          shape[2] // factors[2], factors[2]).mean((1, 3, 5))
    spacing = tuple(s * f for s, f in zip(volume.spacing, factors[::-1]))
    return Volume.from_spacing(array.astype(np.float32), spacing, volume.origin, volume.direction)


def drr_images(volume: Volume, n_views: int = 40, window=DEFAULT_WINDOW, binnings=(1, 2),
               seed: int = 0) -> list[np.ndarray]:
    """Cone-beam DRRs of ``volume`` (HU; coarsened to voxels of at least 1 mm first) at
    ``n_views`` angles over 180 degrees (offset by a random fraction of the angular step so that
    each seed sees other angles), for each detector binning."""
    from ..geometry import ConeGeometry
    from ..projector import project_hu

    volume = coarsen(volume)
    offset = np.random.default_rng(seed).uniform(0, np.pi / n_views)
    geometry = ConeGeometry.from_volume(volume, n_views=n_views)
    geometry = geometry.with_angles(np.asarray(geometry.angles) + offset)
    images = []
    for binning in binnings:
        g = geometry.with_detector_binned((binning, binning)) if binning > 1 else geometry
        images.extend(project_hu(volume.array, g, window).numpy())
    return images


class CropSampler:
    """Random training crops ``[B, 1, crop, crop]`` in [-1, 1] from a list of 2D images.

    ``xray_fraction`` of each batch comes from radiographs (when there are any); crops whose
    value range is below ``min_range`` of their image's range (flat air) are redrawn.
    """

    def __init__(self, drrs: list[np.ndarray], radiographs: list[np.ndarray], crop: int = 64,
                 xray_fraction: float = 0.25, min_range: float = 0.05):
        self.drrs = [d for d in drrs if min(d.shape) >= crop]
        self.radiographs = [r for r in radiographs if min(r.shape) >= crop]
        if not self.drrs and not self.radiographs:
            raise UserError(f"no training image is at least {crop} pixels on each side.")
        self.crop, self.min_range = crop, min_range
        self.xray_fraction = xray_fraction if self.radiographs else 0.0
        if not self.drrs:
            self.xray_fraction = 1.0
        self._ranges = {id(im): float(im.max() - im.min()) or 1.0 for im in self.drrs + self.radiographs}

    def _crop(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.crop
        for _ in range(20):
            r = rng.integers(0, image.shape[0] - c + 1)
            q = rng.integers(0, image.shape[1] - c + 1)
            patch = image[r:r + c, q:q + c]
            if patch.max() - patch.min() >= self.min_range * self._ranges[id(image)]:
                break
        return patch

    def batch(self, size: int, rng: np.random.Generator) -> torch.Tensor:
        out = np.empty((size, 1, self.crop, self.crop), np.float32)
        for b in range(size):
            pool = self.radiographs if rng.random() < self.xray_fraction else self.drrs
            patch = self._crop(pool[rng.integers(len(pool))], rng)
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            if rng.random() < 0.5:
                patch = patch[::-1, :]
            low, high = patch.min(), patch.max()
            unit = (patch - low) / (high - low) if high > low else np.zeros_like(patch)
            out[b, 0] = unit ** rng.uniform(0.7, 1.4)  # intensity augmentation (gamma)
        return normalize_image(torch.from_numpy(out))
