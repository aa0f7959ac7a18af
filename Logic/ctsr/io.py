"""Reading and writing volumes with SimpleITK (NRRD, NIfTI, MHA, DICOM series folders).

SimpleITK (like ITK and DICOM) describes geometry in **LPS**; Slicer and :class:`Volume` use
**RAS**. :func:`volume_from_image` and :func:`image_from_volume` are the only places that
convert. Every user mistake (missing file, not an image, 2D, vector, empty, NaN) raises
:class:`UserError` with one sentence; writing is atomic (temporary file, then rename), so a
failed or interrupted write never leaves a partial output.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import UserError
from .volume import Volume


@contextmanager
def quiet_itk():
    """ITK's own warnings off inside it (e.g. "No Series were found" for a folder without
    DICOM: every failure they hint at becomes one sentence of ours), as they were after it:
    in Slicer's process, ITK's setting stays Slicer's."""
    before = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(before)


#: Flips the first two axes: LPS <-> RAS (its own inverse).
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Files that hold one volume each (besides DICOM series, which are folders).
VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
#: What an output can be written as.
WRITE_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha")


def split_suffix(path: Path) -> tuple[str, str]:
    """(stem, suffix) of ``path``'s name, ``.nii.gz`` counted as one suffix; the suffix as
    spelled (``scan.NII.GZ`` -> ``("scan", ".NII.GZ")``)."""
    name = path.name
    length = len(".nii.gz") if name.lower().endswith(".nii.gz") else len(path.suffix)
    return name[: len(name) - length], name[len(name) - length:]


def _suffix(path: Path) -> str:
    return split_suffix(path)[1].lower()


def uncertainty_path(output: Path) -> Path:
    """Where the uncertainty map of ``output`` goes: ``out.nii.gz`` -> ``out_uncertainty.nii.gz``."""
    stem, suffix = split_suffix(Path(output))
    return Path(output).with_name(stem + "_uncertainty" + suffix)


def volume_from_image(image: sitk.Image, what: str = "the input", check: bool = True) -> Volume:
    """Convert a SimpleITK image (LPS) to a :class:`Volume` (RAS, float32 KJI); ``check``:
    refuse what :meth:`Volume.check_usable` refuses (off for results such as an uncertainty
    map, which may be constant)."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise UserError(
            f"{what} has {image.GetNumberOfComponentsPerPixel()} values per voxel (a vector or "
            "colour image); a scalar volume is needed."
        )
    if image.GetDimension() != 3:
        raise UserError(f"{what} is a {image.GetDimension()}D image; a 3D volume is needed.")
    lps = np.eye(4)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    lps[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)
    lps[:3, 3] = image.GetOrigin()
    volume = Volume(sitk.GetArrayViewFromImage(image).astype(np.float32), _LPS_TO_RAS @ lps)
    if check:
        volume.check_usable(what)
    return volume


def image_from_volume(volume: Volume) -> sitk.Image:
    """Convert a :class:`Volume` (RAS) to a float32 SimpleITK image (LPS)."""
    return image_from_array(volume.array, volume.ijk_to_ras)


def image_from_array(array: np.ndarray, ijk_to_ras: np.ndarray) -> sitk.Image:
    """A KJI array, its voxels in their own type, on the grid ``ijk_to_ras`` (RAS, mm) as a
    SimpleITK image (LPS)."""
    lps = _LPS_TO_RAS @ np.asarray(ijk_to_ras, dtype=np.float64)
    image = sitk.GetImageFromArray(array, isVector=False)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    image.SetDirection((lps[:3, :3] / spacing).ravel().tolist())
    return image


def read_volume(path, check: bool = True) -> Volume:
    """Read a scalar 3D volume from a file (NRRD, NIfTI, MHA, ...) or a DICOM series folder;
    ``check=False`` accepts a constant volume (see :func:`volume_from_image`)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist.")
    if path.is_dir():
        with quiet_itk():
            image = _read_dicom_series(path)
        return volume_from_image(image, f"the DICOM series in {path}", check)
    try:
        with quiet_itk():
            image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise UserError(f"{path} is not a readable image file (NRRD, NIfTI, MHA or DICOM) or holds no voxels.") from None
    return volume_from_image(image, str(path), check)


def _dicom_series_files(folder: Path) -> tuple:
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise UserError(f"{folder} is a folder with no DICOM series in it.")
    # Several series in one folder: the one with the most slices (a localizer or a reformat
    # beside an axial series); two as large (phases of one study) leave no safe choice.
    files = sorted((reader.GetGDCMSeriesFileNames(str(folder), uid) for uid in series), key=len, reverse=True)
    if len(files) > 1 and len(files[0]) == len(files[1]):
        raise UserError(f"{folder} holds {len(files)} DICOM series, the largest two of {len(files[0])} slices each; "
                        "put the one to super-resolve in a folder of its own.")
    return files[0]


#: How far a DICOM slice may sit from the regular grid that the series reader assumes (first
#: slice, one mean step) before the series is refused: along the slice normal, this fraction of
#: the step; across it (gantry tilt, which the reader ignores), this fraction of an in-plane
#: pixel at the last slice; and never less than :data:`SLICE_POSITION_ROUNDING_MM`. A missing
#: slice misplaces others by half a step or more.
SLICE_GRID_TOLERANCE = {"along": 0.25, "across": 0.5}
#: The least misplacement refused (mm): positions rounded to 0.1 mm, as some scanners write
#: them, put an oblique slice up to 0.09 mm off, and the grid through the first and the last
#: as much again.
SLICE_POSITION_ROUNDING_MM = 0.2


def check_slice_grid(positions_lps, normal_lps, pixel_mm: float, what: str) -> None:
    """:class:`UserError` unless slice positions (mm, LPS, in reading order) lie on a regular
    grid along the slice normal (``normal_lps``; ``pixel_mm`` the finer in-plane spacing): no two
    at one place, no gap (a missing slice), no sideways shift (gantry tilt). A series that fails
    would be read in the wrong place; Slicer's DICOM loader reads it under a correcting
    transform."""
    positions = np.asarray(positions_lps, dtype=np.float64)
    normal = np.asarray(normal_lps, dtype=np.float64)
    along = (positions - positions[0]) @ normal
    steps = np.abs(np.diff(along))
    step = abs(along[-1]) / (len(along) - 1)
    if step == 0.0 or steps.min() < SLICE_GRID_TOLERANCE["along"] * step:
        raise UserError(f"{what} has two slices at the same position (several phases or echoes in one series?); "
                        "export one of them as its own series.")
    misplaced = np.max(np.abs(np.abs(along) - step * np.arange(len(along))))
    if misplaced > max(SLICE_GRID_TOLERANCE["along"] * step, SLICE_POSITION_ROUNDING_MM):
        raise UserError(f"{what} has unevenly spaced slices ({steps.min():.3g} to {steps.max():.3g} mm apart; a "
                        "slice may be missing): load it in Slicer, which corrects the geometry with a transform, "
                        "or resample it first.")
    sideways = np.linalg.norm(positions[-1] - positions[0] - along[-1] * normal)
    if sideways > max(SLICE_GRID_TOLERANCE["across"] * pixel_mm, SLICE_POSITION_ROUNDING_MM):
        raise UserError(f"{what} was acquired with gantry tilt (its last slice {sideways:.3g} mm sideways of the "
                        "first): load it in Slicer, which corrects the geometry with a transform, or resample it "
                        "first.")


def _read_dicom_series(folder: Path) -> sitk.Image:
    files = _dicom_series_files(folder)
    if len(files) < 2:
        raise UserError(f"the DICOM series in {folder} has a single slice; a 3D volume is needed.")
    headers = sitk.ImageFileReader()
    positions = []
    for name in files:
        headers.SetFileName(name)
        try:
            headers.ReadImageInformation()
        except RuntimeError:
            raise UserError(f"the DICOM series in {folder} could not be read ({Path(name).name}).") from None
        positions.append(headers.GetOrigin())
    normal = np.asarray(headers.GetDirection(), dtype=np.float64).reshape(3, 3)[:, 2]
    check_slice_grid(positions, normal, min(headers.GetSpacing()[:2]), f"the DICOM series in {folder}")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError:
        raise UserError(f"the DICOM series in {folder} could not be read.") from None


def read_slice_thickness(path) -> float | None:
    """DICOM SliceThickness (0018,0050, mm) of the series :func:`read_volume` reads from the
    folder ``path``; None for a file input or when the tag is absent or not a number."""
    path = Path(path)
    if not path.is_dir():
        return None
    reader = sitk.ImageFileReader()
    try:
        with quiet_itk():
            reader.SetFileName(_dicom_series_files(path)[0])
            reader.ReadImageInformation()
        return float(reader.GetMetaData("0018|0050"))
    except (RuntimeError, ValueError):
        return None


def check_writable(path, inputs=()) -> None:
    """Raise :class:`UserError` unless ``path`` has a writable format, its folder exists and
    it is none of ``inputs`` (the same file also through a link or another spelling); called
    before long work, so that a typo does not cost a whole run or the input."""
    path = Path(path)
    if _suffix(path) not in WRITE_SUFFIXES:
        raise UserError(f"cannot write {path.name}: use one of {', '.join(WRITE_SUFFIXES)}.")
    if not path.parent.is_dir():
        raise UserError(f"the output folder {path.parent} does not exist.")
    if path.is_dir():
        raise UserError(f"the output {path} is a folder; name a file.")
    for source in map(Path, inputs):
        same = path.exists() and source.exists() and os.path.samefile(path, source)
        if same or path.resolve() == source.resolve():
            raise UserError(f"the output {path} is the input {source}; name a different output file.")


def write_volume(volume: Volume, path, compress: bool = True) -> Path:
    """Write ``volume`` (float32) to NRRD, NIfTI or MHA, atomically. Returns the path.
    ``compress=False`` skips gzip (temporary files: about 20x faster to write)."""
    return write_image(image_from_volume(volume), path, compress)


def write_result(volume: Volume, path, uncertainty: Volume | None = None, uncertainty_to=None,
                 compress: bool = True) -> dict:
    """Write a super-resolved ``volume`` to ``path`` and, when given, its ``uncertainty`` map
    to ``uncertainty_to`` (default :func:`uncertainty_path`), both or neither: the map first,
    removed again if the volume cannot be written. Returns ``{"output": path[, "uncertainty":
    its path]}`` (strings)."""
    written = {}
    if uncertainty is not None:
        written["uncertainty"] = str(write_volume(uncertainty, uncertainty_to or uncertainty_path(path), compress))
    try:
        written["output"] = str(write_volume(volume, path, compress))
    except BaseException:
        if "uncertainty" in written:
            Path(written["uncertainty"]).unlink(missing_ok=True)
        raise
    return written


def write_image(image: sitk.Image, path, compress: bool = True) -> Path:
    """Write a SimpleITK image (any voxel type, e.g. :func:`image_from_array` of an int16 CT)
    atomically; returns the path."""
    path = Path(path)
    check_writable(path)
    write_atomically(path, lambda tmp: sitk.WriteImage(image, str(tmp), compress))
    return path


def write_atomically(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then move the temporary file onto ``path``; on any failure or
    interruption, remove the temporary file and leave ``path`` untouched."""
    path = Path(path)
    suffix = _suffix(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's mode
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
