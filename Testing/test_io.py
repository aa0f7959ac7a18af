"""Volume IO: round trips on the real CTs, an independent check of the LPS -> RAS conversion,
a DICOM series, and one clear sentence for every kind of bad input."""

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import SHARED_CT, require_shared_data
from dicom_series import write_dicom_series
from ctsr.errors import UserError
from ctsr.io import read_volume, write_volume
from ctsr.volume import Volume


def _same_geometry(a: Volume, b: Volume):
    np.testing.assert_allclose(a.spacing, b.spacing, atol=1e-4)
    np.testing.assert_allclose(a.origin, b.origin, atol=1e-4)
    np.testing.assert_allclose(a.direction, b.direction, atol=1e-4)


@pytest.mark.parametrize("name", [p.name for p in SHARED_CT] or ["(no shared data)"])
@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_real_ct_round_trips(tmp_path, name, suffix):
    data = require_shared_data()
    original = read_volume(data / "ct" / name)
    copy = read_volume(write_volume(original, tmp_path / f"copy{suffix}"))
    np.testing.assert_array_equal(copy.array, original.array)
    _same_geometry(copy, original)


def test_ras_geometry_matches_the_nrrd_header_read_by_hand():
    """Independent of SimpleITK: parse the gzip NRRD header ourselves (LPS) and flip to RAS."""
    data = require_shared_data()
    path = data / "ct" / "abdomen_pelvis_3mm.nrrd"  # a flipped (-1, -1, 1) direction
    header = path.read_bytes().split(b"\n\n", 1)[0].decode()
    assert "left-posterior-superior" in header
    vectors = re.search(r"space directions: (.*)", header).group(1)
    directions = np.array([[float(x) for x in v.split(",")] for v in re.findall(r"\(([^)]*)\)", vectors)])
    origin = np.array([float(x) for x in re.search(r"space origin: \(([^)]*)\)", header).group(1).split(",")])
    sizes = [int(x) for x in re.search(r"sizes: (.*)", header).group(1).split()]
    volume = read_volume(path)
    flip = np.diag([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(volume.ijk_to_ras[:3, :3], flip @ directions.T, atol=1e-6)
    np.testing.assert_allclose(volume.origin, flip @ origin, atol=1e-6)
    assert volume.shape_ijk == tuple(sizes)
    # KJI order: the fastest-varying file axis (I) is the last array axis.
    raw = np.frombuffer(gzip.decompress(path.read_bytes().split(b"\n\n", 1)[1]), dtype="<i2")
    np.testing.assert_array_equal(volume.array.ravel(), raw.astype(np.float32))


def test_dicom_series_folder_loads_with_its_geometry(tmp_path, oblique_sample):
    """Write a real CT crop as a DICOM series (one file per slice) and read the folder."""
    volume = Volume.from_spacing(oblique_sample.array[:12], (0.8, 1.1, 2.5), (-31.5, 12.25, 80.0),
                                 oblique_sample.direction)
    loaded = read_volume(write_dicom_series(tmp_path, volume))
    np.testing.assert_array_equal(loaded.array, np.round(volume.array))
    _same_geometry(loaded, volume)


@pytest.mark.parametrize("how, words", [
    ({"skip": (5,)}, "unevenly spaced slices (0.625 to 1.25 mm apart; a slice may be missing)"),
    ({"sideways_mm": 0.11}, "gantry tilt"),
    ({"decimals": 1}, None),  # positions rounded to 0.1 mm: still one regular grid
    ({"sideways_mm": 0.01}, None),  # 0.1 mm at the last slice: under half a pixel
])
def test_a_dicom_series_off_a_regular_grid_is_refused_in_one_sentence(tmp_path, sample, how, words):
    """ITK would read these with one mean step and no shear: every slice after a gap, or of a
    tilted gantry, in the wrong place."""
    volume = Volume.from_spacing(sample.array[:12, :16, :16], (0.7, 0.7, 0.625), (3.0, -2.0, 40.0))
    folder = write_dicom_series(tmp_path, volume, **how)
    if words is None:
        np.testing.assert_allclose(read_volume(folder).spacing, volume.spacing, atol=0.01)
        return
    with pytest.raises(UserError) as error:
        read_volume(folder)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_two_slices_at_one_place_are_refused():
    from ctsr.io import check_slice_grid

    positions = [(0, 0, 0), (0, 0, 1), (0, 0, 1), (0, 0, 2)]
    with pytest.raises(UserError, match="two slices at the same position"):
        check_slice_grid(positions, (0, 0, 1), 0.5, "the series")
    check_slice_grid(positions[::-1][:1] + [(0, 0, 1), (0, 0, 0)], (0, 0, 1), 0.5, "the series")  # descending


def _write(tmp_path, name, array, vector=False):
    path = tmp_path / name
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=vector), str(path))
    return path


BAD_INPUTS = {
    "missing": (lambda d: d / "nope.nrrd", "does not exist"),
    "not an image": (lambda d: (d / "notes.nrrd").write_text("hello") and d / "notes.nrrd",
                     "not a readable image"),
    "2D": (lambda d: _write(d, "slice.nrrd", np.arange(64, dtype=np.int16).reshape(8, 8)), "2D"),
    "one slice": (lambda d: _write(d, "flat.nrrd", np.arange(64, dtype=np.int16).reshape(1, 8, 8)), "2D"),
    "vector": (lambda d: _write(d, "rgb.nrrd", np.zeros((4, 8, 8, 3), np.uint8), vector=True),
               "values per voxel"),
    "empty": (lambda d: (d / "empty.nrrd").write_text(
        "NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 0\nencoding: raw\n\n") and d / "empty.nrrd",
        "holds no voxels"),
    "NaN": (lambda d: _write(d, "nan.nrrd", np.full((4, 8, 8), np.nan, np.float32)), "NaN"),
    "empty folder": (lambda d: (d / "dicom").mkdir() or d / "dicom", "no DICOM series"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_clear_sentence(tmp_path, case):
    make, words = BAD_INPUTS[case]
    with pytest.raises(UserError) as error:
        read_volume(make(tmp_path))
    message = str(error.value)
    assert words in message
    assert "\n" not in message and message.endswith(".")


def test_write_is_atomic_and_refuses_unknown_formats(tmp_path, sample, monkeypatch):
    with pytest.raises(UserError, match="cannot write"):
        write_volume(sample, tmp_path / "out.png")
    with pytest.raises(UserError, match="does not exist"):
        write_volume(sample, tmp_path / "missing" / "out.nrrd")

    class Boom(Exception):
        pass

    def fail_halfway(image, path, compress):
        path = Path(path)
        path.write_bytes(b"NRRD0004\npartial")  # a half-written file, then the failure
        raise Boom()

    monkeypatch.setattr(sitk, "WriteImage", fail_halfway)
    with pytest.raises(Boom):
        write_volume(sample, tmp_path / "out.nrrd")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_of_two_equally_large_series_is_refused_and_a_larger_one_is_read(tmp_path, sample):
    """Phases of one study in one folder leave no safe choice; a localizer beside the series does."""
    volume = Volume.from_spacing(sample.array[:6, :8, :8], (0.7, 0.7, 1.0))
    write_dicom_series(tmp_path, volume)
    for path in sorted(tmp_path.glob("slice*.dcm"))[:3]:  # a second, smaller series
        image = sitk.ReadImage(str(path))
        image.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.1.43")
        image.SetMetaData("0008|0018", image.GetMetaData("0008|0018") + ".9")
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(path.with_name("other_" + path.name)))
        writer.Execute(image)
    assert read_volume(tmp_path).shape_ijk == (8, 8, 6)
    for path in sorted(tmp_path.glob("slice*.dcm"))[3:]:  # now 3 slices each
        path.unlink()
    with pytest.raises(UserError, match="holds 2 DICOM series, the largest two of 3 slices each"):
        read_volume(tmp_path)


def test_itk_warnings_are_off_only_while_we_read(tmp_path):
    """Our reads keep ITK's warnings from the user (they become our one sentence), but the
    process's setting is left as it was: in Slicer it is Slicer's."""
    assert sitk.ProcessObject.GetGlobalWarningDisplay()  # importing ctsr.io changed nothing
    seen = []
    original = sitk.ProcessObject.SetGlobalWarningDisplay
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sitk.ProcessObject, "SetGlobalWarningDisplay",
                      lambda on: seen.append(on) or original(on))
        with pytest.raises(UserError, match="no DICOM series"):
            read_volume((tmp_path / "empty").mkdir() or tmp_path / "empty")
    assert seen == [False, True] and sitk.ProcessObject.GetGlobalWarningDisplay()
