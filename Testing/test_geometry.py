"""ctsr.geometry: scene normalization, detector coverage, binning, ray construction."""

import math

import numpy as np
import pytest
import torch

from ctsr.errors import UserError
from ctsr.geometry import ConeGeometry, detector_binning
from ctsr.volume import Volume


def _volume(shape_kji=(48, 64, 56), spacing_ijk=(1.0, 1.2, 1.5)):
    return Volume.from_spacing(np.zeros(shape_kji, np.float32), spacing_ijk)


def test_scene_units_put_the_largest_side_on_minus_one_to_one():
    g = ConeGeometry.from_volume(_volume())
    extent = np.asarray(g.nVoxel) * np.asarray(g.dVoxel)
    assert extent.max() == pytest.approx(2.0)
    # J side: 64 voxels x 1.2 mm = 76.8 mm is the largest; mm_per_unit converts back.
    assert g.mm_per_unit == pytest.approx(38.4)
    assert g.dVoxel == pytest.approx((1.5 / 38.4, 1.2 / 38.4, 1.0 / 38.4))
    assert g.DSD / g.DSO == pytest.approx(1.5)
    assert g.n_views == 100
    assert g.angles[1] - g.angles[0] == pytest.approx(math.pi / 100)
    assert max(g.angles) < math.pi


@pytest.mark.parametrize("mode", ["cone", "parallel"])
def test_every_voxel_corner_lands_on_the_detector_from_every_angle(mode):
    g = ConeGeometry.from_volume(_volume(), n_views=17, mode=mode)
    assert all(n % 16 == 0 for n in g.nDetector)
    hz, hy, hx = g.half_extent
    corners = torch.tensor([[sx * hx, sy * hy, sz * hz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)],
                           dtype=torch.float64)
    source, centre, e_u, e_v, toward = g.view_frames(dtype=torch.float64)
    half_v = g.nDetector[0] * g.dDetector[0] / 2
    half_u = g.nDetector[1] * g.dDetector[1] / 2
    for view in range(g.n_views):
        scale = g.DSD / (g.DSO - corners @ toward[view]) if mode == "cone" else 1.0
        u = corners @ e_u[view] * scale
        v = corners[:, 2] * scale
        assert u.abs().max() <= half_u and v.abs().max() <= half_v
    # and the detector is not wastefully large: some corner comes within 2 pixels + 16-rounding
    assert half_u < g.detector_half_extent()[1] + 16 * g.dDetector[1]


def test_binning_keeps_the_physical_detector():
    g = ConeGeometry.from_volume(_volume(), n_views=4)
    lr = g.with_detector_binned((4, 2))
    assert lr.nDetector == (g.nDetector[0] // 4, g.nDetector[1] // 2)
    assert lr.nDetector[0] * lr.dDetector[0] == pytest.approx(g.nDetector[0] * g.dDetector[0])
    assert lr.nDetector[1] * lr.dDetector[1] == pytest.approx(g.nDetector[1] * g.dDetector[1])
    with pytest.raises(ValueError):
        g.with_detector_binned((5, 1)) if g.nDetector[0] % 5 else g.with_detector_binned((7, 1))


def test_the_scan_of_a_coarser_grid_bins_rows_by_z_and_columns_by_x():
    g = ConeGeometry.from_volume(_volume(), n_views=5)
    coarse = _volume(shape_kji=(12, 32, 28), spacing_ijk=(2.0, 2.4, 6.0))  # the same extent, scale (2, 2, 4)
    lr = g.of_coarser_grid(coarse, (2, 2, 4))
    assert detector_binning((2, 2, 4)) == (4, 2)
    assert lr.nDetector == (g.nDetector[0] // 4, g.nDetector[1] // 2)
    assert lr.nVoxel == (12, 32, 28)
    assert lr.dVoxel == pytest.approx((6.0 / g.mm_per_unit, 2.4 / g.mm_per_unit, 2.0 / g.mm_per_unit))
    assert (lr.angles, lr.DSO, lr.DSD, lr.mm_per_unit) == (g.angles, g.DSO, g.DSD, g.mm_per_unit)
    with pytest.raises(UserError, match="in-plane scales must be equal"):
        detector_binning((2, 4, 2))


def test_explicit_detector_shape_stretches_pixels_to_cover():
    g = ConeGeometry.from_volume(_volume(), n_views=4, detector_shape=(32, 40))
    half_v, half_u = g.detector_half_extent()
    assert g.nDetector == (32, 40)
    assert g.dDetector == pytest.approx((2 * half_v / 32, 2 * half_u / 40))


def test_cone_rays_start_at_the_source_and_hit_their_pixel():
    g = ConeGeometry.from_volume(_volume(), n_views=3)
    origin, direction = g.rays(dtype=torch.float64)
    assert torch.allclose(direction.norm(dim=-1), torch.ones(1, dtype=torch.float64))
    source, centre, e_u, e_v, toward = g.view_frames(dtype=torch.float64)
    view, row, col = 1, 5, g.nDetector[1] - 3
    assert torch.allclose(origin[view, row, col], source[view])
    v = (row - (g.nDetector[0] - 1) / 2) * g.dDetector[0]
    u = (col - (g.nDetector[1] - 1) / 2) * g.dDetector[1]
    pixel = centre[view] + u * e_u[view] + v * e_v[view]
    t = (pixel - origin[view, row, col]).norm()
    assert torch.allclose(origin[view, row, col] + t * direction[view, row, col], pixel)
    assert float((source[view] - centre[view]).norm()) == pytest.approx(g.DSD)


def test_bad_geometry_is_rejected():
    with pytest.raises(ValueError):
        ConeGeometry.from_volume(_volume(), mode="fan")
    with pytest.raises(ValueError):
        ConeGeometry.from_volume(_volume(), DSO=1.0, DSD=1.5)  # source inside the volume
