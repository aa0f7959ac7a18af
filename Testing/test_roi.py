"""ROI parsing and cropping: the crop stays in place in RAS, on an oblique volume too."""

import numpy as np
import pytest

from ctsr.errors import UserError
from ctsr.roi import Roi, crop_to_roi


def test_parse_orders_the_corners_and_refuses_nonsense():
    roi = Roi.parse("ras:10,-5,3,-10,5,-3")
    assert roi.low == (-10.0, -5.0, -3.0) and roi.high == (10.0, 5.0, 3.0)
    assert Roi.parse(str(roi)) == roi
    for text in ["", "ras:1,2,3", "xyz:1,2,3,4,5,6", "ijk:a,b,c,d,e,f"]:
        with pytest.raises(UserError, match="ROI"):
            Roi.parse(text)


def test_voxel_roi_crops_exactly_and_keeps_ras_positions(oblique_sample):
    crop = crop_to_roi(oblique_sample, Roi.parse("ijk:10,20,5,30,44,15"))
    assert crop.shape_ijk == (20, 24, 10)
    np.testing.assert_array_equal(crop.array, oblique_sample.array[5:15, 20:44, 10:30])
    # voxel (0,0,0) of the crop is voxel (10,20,5) of the input, in RAS
    np.testing.assert_allclose(crop.origin, (oblique_sample.ijk_to_ras @ [10, 20, 5, 1])[:3])
    np.testing.assert_allclose(crop.ijk_to_ras[:3, :3], oblique_sample.ijk_to_ras[:3, :3])


def test_ras_roi_covers_the_voxels_whose_centres_it_contains(sample):
    # axis-aligned sample: a box around voxel centres 8..23 (i), 4..11 (j), 30..39 (k)
    lo = (sample.ijk_to_ras @ [8, 4, 30, 1])[:3]
    hi = (sample.ijk_to_ras @ [23, 11, 39, 1])[:3]
    crop = crop_to_roi(sample, Roi("ras", tuple(np.minimum(lo, hi) - 0.1), tuple(np.maximum(lo, hi) + 0.1)))
    np.testing.assert_array_equal(crop.array, sample.array[30:40, 4:12, 8:24])


def test_roi_outside_the_volume_is_refused(sample):
    with pytest.raises(UserError, match="outside"):
        crop_to_roi(sample, Roi.parse("ras:1000,1000,1000,1010,1010,1010"))
