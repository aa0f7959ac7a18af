"""Training data: radiograph reading (MONOCHROME1 inverted), coarsening, DRRs, crops."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ctsr.prior.data import CropSampler, block_reduce, coarsen, drr_images, read_radiograph, xray_files
from ctsr.volume import Volume

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_png_radiograph_and_block_reduce(tmp_path):
    array = (np.arange(40 * 30, dtype=np.uint16).reshape(40, 30) % 251).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / "a.png"))
    image = read_radiograph(tmp_path / "a.png")
    assert image.dtype == np.float32 and np.array_equal(image, array)
    reduced = block_reduce(image, 4)
    assert reduced.shape == (10, 7)
    assert np.isclose(reduced[2, 3], image[8:12, 12:16].mean())
    assert xray_files(tmp_path) == [tmp_path / "a.png"]


@pytest.mark.skipif(not (DATA / "xray" / "chest_pa_cr.dcm").is_file(), reason="../shared/data is not here")
def test_monochrome1_radiograph_is_inverted():
    import pydicom

    raw = pydicom.dcmread(str(DATA / "xray" / "chest_pa_cr.dcm")).pixel_array.astype(np.float32)
    image = read_radiograph(DATA / "xray" / "chest_pa_cr.dcm")
    assert np.array_equal(image, raw.max() - raw)
    # dense (bright after inversion) structures: the spine and mediastinum in the middle column
    rows, cols = image.shape
    assert image[rows // 3: 2 * rows // 3, cols // 2 - 20: cols // 2 + 20].mean() > image.mean()


def test_coarsen_block_means_fine_axes_only():
    array = np.random.default_rng(0).random((4, 6, 8)).astype(np.float32)
    volume = Volume.from_spacing(array, spacing=(0.5, 0.5, 2.0))  # I, J fine; K coarse
    out = coarsen(volume, 1.0)
    assert out.array.shape == (4, 3, 4)
    assert np.allclose(out.spacing, (1.0, 1.0, 2.0))
    assert np.isclose(out.array[1, 2, 3], array[1, 4:6, 6:8].mean())
    fine = Volume.from_spacing(array, spacing=(1.0, 1.0, 1.0))
    assert coarsen(fine) is fine  # already at 1 mm: nothing merged


def test_drrs_of_a_ball_are_largest_through_its_centre():
    k, j, i = np.mgrid[:24, :24, :24] - 11.5
    hu = np.where(k**2 + j**2 + i**2 < 8**2, 1000.0, -1024.0).astype(np.float32)
    images = drr_images(Volume.from_spacing(hu, spacing=(1.5, 1.5, 1.5)), n_views=3, binnings=(1, 2))
    assert len(images) == 6
    full, binned = images[0], images[3]
    assert full.shape == (binned.shape[0] * 2, binned.shape[1] * 2)
    centre = np.unravel_index(np.argmax(full), full.shape)
    assert abs(centre[0] - (full.shape[0] - 1) / 2) <= 1 and abs(centre[1] - (full.shape[1] - 1) / 2) <= 1
    assert full.min() >= 0 and full.max() > 0


def test_crop_sampler_normalizes_each_crop_and_is_reproducible():
    rng = np.random.default_rng(0)
    drrs = [rng.random((50, 60)).astype(np.float32) * 5]
    xrays = [rng.random((80, 70)).astype(np.float32) * 1000, np.ones((10, 10), np.float32)]
    sampler = CropSampler(drrs, xrays, crop=32, xray_fraction=0.5)
    assert len(sampler.radiographs) == 1  # too small to crop: left out
    batch = sampler.batch(6, np.random.default_rng(1))
    assert batch.shape == (6, 1, 32, 32) and batch.dtype == torch.float32
    assert torch.allclose(batch.amin((1, 2, 3)), torch.full((6,), -1.0))
    assert torch.allclose(batch.amax((1, 2, 3)), torch.full((6,), 1.0))
    assert torch.equal(batch, sampler.batch(6, np.random.default_rng(1)))
