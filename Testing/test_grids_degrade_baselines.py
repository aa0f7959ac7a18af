"""Scales, the LR <-> HR grid relation, LR simulation and the interpolation baselines."""

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import require_shared_data
from ctsr.baselines import upsample_interpolate
from ctsr.errors import UserError
from ctsr.grids import (check_scale, format_scale, hr_grid, in_plane_then_through_plane, is_through_plane, lr_grid,
                        parse_scale, scale_for, slice_axis, suggested_scale)
from ctsr.io import image_from_volume, read_volume
from ctsr.lrmodel import simulate_lr
from ctsr.metrics import normalize, psnr
from ctsr.volume import Volume


@pytest.mark.parametrize("text, scale", [("2", (2, 2, 2)), (4, (4, 4, 4)), ("1x1x4", (1, 1, 4)),
                                         ((2, 2, 1), (2, 2, 1)), ("8", (8, 8, 8))])
def test_parse_scale(text, scale):
    assert parse_scale(text) == scale
    assert parse_scale(format_scale(scale)) == scale


@pytest.mark.parametrize("text", ["0", "1", "1x1x1", "2x2", "two", "-2", "99", "2.5"])
def test_bad_scales_are_refused_with_a_sentence(text):
    with pytest.raises(UserError, match="scale"):
        parse_scale(text)


@pytest.mark.parametrize("text, through_plane", [("1x1x2", True), ("1x1x4", True), ("2", False), ("4x4x1", False),
                                                  ("1x2x4", False), ("2x1x1", False)])
def test_through_plane_means_only_z_is_scaled(text, through_plane):
    assert is_through_plane(parse_scale(text)) is through_plane


@pytest.mark.parametrize("text, parts", [("2x2x4", ((2, 2, 1), (1, 1, 4))), ("2x2x3", ((2, 2, 1), (1, 1, 3))),
                                         ("4x4x8", ((4, 4, 1), (1, 1, 8))), ("1x1x4", None), ("2", None),
                                         ("4x4x2", None), ("2x1x4", None), ("2x2x1", None)])
def test_a_scale_with_z_coarsest_and_in_plane_scaled_splits_in_two(text, parts):
    assert in_plane_then_through_plane(parse_scale(text)) == parts


@pytest.mark.parametrize("text, axis", [("1x1x4", 2), ("4x1x1", 0), ("1x2x1", 1), ("2x2x4", 2), ("4x2x2", 0),
                                       ("2x8x2", 1), ("2", None), ("4x4x2", None), ("2x1x4", None), ("1x2x2", None)])
def test_the_slice_axis_is_the_one_scaled_more_than_the_two_others_alike(text, axis):
    assert slice_axis(parse_scale(text)) == axis


@pytest.mark.parametrize("spacing, scale", [((0.7, 0.7, 5.0), (1, 1, 4)), ((1.0, 1.0, 2.5), (1, 1, 2)),
                                            ((5.0, 0.6, 0.6), (4, 1, 1)), ((0.57, 0.57, 5.0), (1, 1, 4)),
                                            ((3.05, 3.05, 10.0), (2, 2, 4)), ((2.0, 2.0, 5.0), (2, 2, 4)),
                                            ((1.0, 1.0, 1.0), (2, 2, 2)), ((0.957, 0.957, 1.5), (2, 2, 2)),
                                            ((3.0, 3.0, 3.0), (2, 2, 2))])
def test_auto_scales_thick_slices_across_them_and_coarse_pixels_in_plane_and_any_other_scan_by_2(spacing, scale):
    assert suggested_scale(spacing) == scale
    assert scale_for("auto", spacing) == scale == scale_for(" AUTO ", spacing)
    assert scale_for("2x2x4", spacing) == (2, 2, 4)  # a scale given is kept whatever the spacing


def test_check_scale_takes_auto_and_refuses_the_rest_before_any_input_is_read():
    check_scale("auto")
    check_scale("1x1x4")
    with pytest.raises(UserError, match="is not a number like 2"):
        check_scale("automatic")


@pytest.mark.parametrize("scale", [(2, 2, 2), (4, 4, 4), (1, 1, 4), (2, 3, 1)])
def test_hr_grid_is_recovered_from_lr_grid(oblique_sample, scale):
    hr = oblique_sample
    lr_matrix, lr_shape = lr_grid(hr.ijk_to_ras, hr.shape_ijk, scale)
    matrix, shape = hr_grid(lr_matrix, lr_shape, scale)
    np.testing.assert_allclose(matrix, hr.ijk_to_ras, atol=1e-9)
    assert shape == tuple(n // s * s for n, s in zip(hr.shape_ijk, scale))


def test_lr_voxel_centre_is_the_centre_of_its_hr_block(oblique_sample):
    """A linear ramp is kept by the smoothing and the sinc: each LR voxel must hold the mean
    of its HR block, which for a ramp is the value at the block centre."""
    scale = (2, 4, 1)
    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in oblique_sample.array.shape], indexing="ij")
    ramp = oblique_sample.with_array(3.0 * i - 2.0 * j + 0.5 * k)
    lr = simulate_lr(ramp, scale)
    assert lr.shape_ijk == tuple(n // s for n, s in zip(ramp.shape_ijk, scale))
    block_means = ramp.array[:, : lr.shape_ijk[1] * 4, : lr.shape_ijk[0] * 2].reshape(
        lr.array.shape[0], lr.array.shape[1], 4, lr.array.shape[2], 2).mean(axis=(2, 4))
    interior = (slice(2, -2), slice(2, -2), slice(2, -2))
    np.testing.assert_allclose(lr.array[interior], block_means[interior], atol=1e-2)
    expected_matrix, _ = lr_grid(ramp.ijk_to_ras, ramp.shape_ijk, scale)
    np.testing.assert_allclose(lr.ijk_to_ras, expected_matrix, atol=1e-4)


@pytest.mark.parametrize("method, tol", [("trilinear", 1e-3), ("cubic", 0.05), ("lanczos", 0.25)])
def test_baselines_land_on_the_hr_grid_and_keep_a_ramp(oblique_sample, method, tol):
    """Output grid = hr_grid(LR); a linear ramp over LR indices (slopes 2 to 5 per voxel) comes
    back, in the interior, as the same ramp sampled at each HR voxel's LR position
    (o + 0.5) / s - 0.5 (Lanczos-3 reproduces a ramp only approximately)."""
    scale = (2, 2, 4)
    lr = simulate_lr(oblique_sample, scale)
    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in lr.array.shape], indexing="ij")
    lr = lr.with_array(5.0 * i - 3.0 * j + 2.0 * k)
    hr = upsample_interpolate(lr, scale, method)
    assert hr.shape_ijk == tuple(n * s for n, s in zip(lr.shape_ijk, scale))
    np.testing.assert_allclose(hr.spacing, lr.spacing / np.array(scale), atol=1e-6)
    matrix, _ = hr_grid(lr.ijk_to_ras, lr.shape_ijk, scale)
    np.testing.assert_allclose(hr.ijk_to_ras, matrix, atol=1e-4)
    kk, jj, ii = np.meshgrid(*[(np.arange(n) + 0.5) / s - 0.5 for n, s in zip(hr.array.shape, scale[::-1])],
                             indexing="ij")
    expected = 5.0 * ii - 3.0 * jj + 2.0 * kk
    interior = (slice(16, -16), slice(8, -8), slice(8, -8))
    np.testing.assert_allclose(hr.array[interior], expected[interior], atol=tol)


@pytest.mark.parametrize("name, scale", [("chest_cta_1.5mm.nrrd", 2), ("abdomen_pelvis_3mm.nrrd", 4),
                                         ("head_1.5mm.nrrd", "1x1x4")])
def test_cubic_reproduces_the_hr_grid_and_matches_simpleitk_bspline(name, scale):
    """The issue's 'done when': simulate-lr then cubic upsample gives back the HR grid exactly,
    within 0.1 dB of SimpleITK's cubic B-spline resampling onto that grid (an independent
    implementation of the same interpolation, which also checks our grid arithmetic)."""
    data = require_shared_data()
    full = read_volume(data / "ct" / name)
    scale = parse_scale(scale)
    crop = tuple(slice(0, min(n, 96) // s * s) for n, s in zip(full.array.shape, scale[::-1]))
    hr = Volume(full.array[crop], full.ijk_to_ras)
    lr = simulate_lr(hr, scale)
    ours = upsample_interpolate(lr, scale, "cubic")
    assert ours.same_grid(hr, tol=1e-4)
    theirs = sitk.GetArrayFromImage(sitk.Resample(image_from_volume(lr), image_from_volume(hr), sitk.Transform(),
                                                  sitk.sitkBSpline, 0.0, sitk.sitkFloat32))
    truth = normalize(hr.array)
    gap = psnr(normalize(ours.array), truth) - psnr(normalize(theirs), truth)
    assert abs(gap) < 0.1, gap
