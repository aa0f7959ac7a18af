"""The LR model: its grammar, its one operator (checked against independent computations),
DICOM's slice thickness, and the blind estimates of noise and blur on real CT."""

import numpy as np
import pytest
from scipy import ndimage

from conftest import require_shared_data
from ctsr.errors import UserError
from ctsr.grids import lr_grid
from ctsr.io import read_volume
from ctsr.lanczos import block_centre_positions, resample_axis
from ctsr.lrestimate import (estimate_noise_hu, estimate_profile, fine_band_noise_hu, resolve_lr_model,
                             slice_difference_noise_hu)
from ctsr.lrmodel import (DEFAULT_PROFILE, ESTIMATED, GIVEN, LRModel, LROperator, Profile,
                          simulate_lr, slab_from_dicom)
from ctsr.volume import Volume


@pytest.mark.parametrize("text, expected", [
    ("gauss:1", "gauss:1"), ("box", "box"), ("box,noise:15", "box,noise:15"),
    ("slab:5mm", "z=slab:5mm"), ("xy=box,z=slab:3mm", "xy=box,z=slab:3mm"), ("auto", "auto"), ("", "auto")])
def test_model_text_round_trips(text, expected):
    model = LRModel.parse(text)
    assert str(model) == expected
    assert LRModel.parse(str(model)) == model


def test_a_slab_with_no_axis_is_the_slice_axis_and_swapping_axes_moves_profiles_and_sources():
    assert str(LRModel.parse("slab:5mm,noise:3", slice_axis=0)) == "x=slab:5mm,noise:3"
    model = LRModel.parse("x=slab:5mm,y=gauss:1,z=box").with_axes_swapped(0, 2)
    assert str(model) == "x=box,y=gauss:1,z=slab:5mm"
    assert model.source == {"x": "given", "y": "given", "z": "given"}
    swapped = model.with_profile(1, Profile("box"), "estimated (...)", ESTIMATED).with_axes_swapped(1, 2)
    assert swapped.source["z"] == "estimated (...)" and swapped.origin["z"] == ESTIMATED
    assert swapped.origin["y"] == GIVEN


def test_a_model_restricted_to_axes_keeps_their_profiles_and_sources_and_the_noise():
    model = LRModel.parse("xy=box,z=slab:5mm,noise:12").with_profile(1, Profile("gauss", 1.0), "estimated", ESTIMATED)
    in_plane, through = model.restricted_to((0, 1)), model.restricted_to((2,))
    assert str(in_plane) == "x=box,y=gauss:1,noise:12" and str(through) == "z=slab:5mm,noise:12"
    assert in_plane.origin == {"x": GIVEN, "y": ESTIMATED, "noise": GIVEN}
    assert set(through.source) == {"z", "noise"}


@pytest.mark.parametrize("text", ["gauss", "gauss:-1", "blur:2", "noise:-3", "noise:x", "w=box", "slab:0mm"])
def test_bad_models_are_one_sentence(text):
    with pytest.raises(UserError) as error:
        LRModel.parse(text)
    assert text in str(error.value) and "\n" not in str(error.value) and str(error.value).endswith(".")


def test_paper_model_is_the_gaussian_then_lanczos_protocol(sample):
    """Independent path: scipy's Gaussian filter over the volume, then Lanczos-3 sampling at
    the block centres (DESIGN.md section 5)."""
    scale = (2, 2, 4)
    ours = simulate_lr(sample, scale).array
    expected = ndimage.gaussian_filter(sample.array.astype(np.float64), 1.0, mode="nearest")
    for axis, s in enumerate(scale[::-1]):
        expected = resample_axis(expected, axis, block_centre_positions(sample.array.shape[axis] // s, s, True))
    np.testing.assert_allclose(ours, expected, atol=0.02)


@pytest.mark.parametrize("scale", [(2, 2, 2), (4, 4, 1), (1, 1, 4)])
def test_box_is_the_block_mean_and_slab_of_the_spacing_is_the_box(sample, scale):
    lr = simulate_lr(sample, scale, LRModel.parse("box"))
    k, j, i = lr.array.shape
    sx, sy, sz = scale
    blocks = sample.array[: k * sz, : j * sy, : i * sx].reshape(k, sz, j, sy, i, sx).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(lr.array, blocks, atol=1e-3)
    if scale[2] > 1:
        thickness = sample.spacing[2] * scale[2]  # the LR slice spacing: contiguous slices
        slab = LRModel.parse(f"xy=box,z=slab:{thickness:.6f}mm")
        np.testing.assert_allclose(simulate_lr(sample, scale, slab).array, lr.array, atol=1e-3)


@pytest.mark.parametrize("fixture", ["sample", "oblique_sample"])
def test_the_box_lr_grid_is_where_simpleitk_puts_the_block_centres(fixture, request):
    """Independent of ctsr's own geometry code: SimpleITK, linearly resampling the HR onto the
    LR grid's physical points (LPS, through ctsr.io), lands each x2 point midway between two HR
    voxels per axis, so it reads the 2x2x2 block mean that the box model gives."""
    import SimpleITK as sitk

    from ctsr.io import image_from_array, image_from_volume

    sample = request.getfixturevalue(fixture)
    matrix, shape = lr_grid(sample.ijk_to_ras, sample.shape_ijk, (2, 2, 2))
    reference = image_from_array(np.zeros(shape[::-1], np.float32), matrix)
    itk = sitk.GetArrayFromImage(sitk.Resample(image_from_volume(sample), reference, sitk.Transform(), sitk.sitkLinear))
    np.testing.assert_allclose(itk, simulate_lr(sample, (2, 2, 2), LRModel.parse("box")).array, atol=1e-3)


def test_lr_grid_and_noise_are_reproducible(sample):
    model = LRModel.parse("gauss:1.5,noise:20")
    a, b = simulate_lr(sample, (2, 2, 2), model, seed=3), simulate_lr(sample, (2, 2, 2), model, seed=3)
    np.testing.assert_array_equal(a.array, b.array)
    clean = simulate_lr(sample, (2, 2, 2), LRModel.parse("gauss:1.5"))
    assert abs(np.std(a.array - clean.array) - 20) < 1.0
    np.testing.assert_allclose(a.ijk_to_ras, lr_grid(sample.ijk_to_ras, sample.shape_ijk, (2, 2, 2))[0])


@pytest.mark.parametrize("text", ["gauss:1", "gauss:0", "box", "xy=gauss:0.5,z=slab:4mm"])
def test_the_operator_is_its_separable_matrices_and_keeps_constants(text):
    """D applied to a volume equals the Kronecker product of its per-axis matrices applied to
    the flattened volume (an independent dense computation), and every LR voxel is a weighted
    mean (a constant stays that constant)."""
    rng = np.random.default_rng(0)
    operator = LROperator(LRModel.parse(text), (2, 3, 4), (16, 15, 14), (0.7, 0.7, 1.25))
    x = rng.standard_normal(operator.hr_shape_kji).astype(np.float32)
    dense = [np.eye(n) if m is None else m.toarray() for m, n in zip(operator.matrices, operator.hr_shape_kji)]
    kron = np.kron(np.kron(dense[0], dense[1]), dense[2])
    np.testing.assert_allclose(operator(x).ravel(), kron @ x.ravel().astype(np.float64), atol=1e-4)
    assert np.allclose(operator(np.full(operator.hr_shape_kji, 7.0, np.float32)), 7.0)


def test_dicom_slice_thickness_gives_the_z_profile(sample):
    profile, reason = slab_from_dicom(5.0, 3.0)
    assert profile == Profile("slab", 5.0) and "SliceThickness" in reason and "0018,0050" in reason
    assert slab_from_dicom(None, 3.0)[0] is None and slab_from_dicom(0.0, 3.0)[0] is None
    model = resolve_lr_model(sample, (1, 1, 2), None, slice_thickness_mm=4.0)
    assert model.profiles[2] == Profile("slab", 4.0) and "SliceThickness" in model.source["z"]
    given = resolve_lr_model(sample, (1, 1, 2), "z=box", slice_thickness_mm=4.0)
    assert given.profiles[2] == Profile("box") and given.source["z"] == "given"


def test_resolution_completes_the_model_and_says_where_each_part_came_from(sample):
    model = resolve_lr_model(sample, (2, 2, 2), "noise:5")
    assert None not in model.profiles and model.noise_hu == 5.0 and model.source["noise"] == "given"
    assert all(model.source[a].startswith(("estimated", "default")) for a in "xyz")
    tiny = Volume(np.ascontiguousarray(sample.array[:20, :20, :20]), sample.ijk_to_ras)  # too few voxels to estimate a blur
    small = resolve_lr_model(tiny, (2, 2, 2), "noise:0")
    assert small.profiles == (DEFAULT_PROFILE,) * 3 and small.source["x"].startswith("default")


def test_noise_estimate_recovers_added_noise_on_real_ct(sample):
    """Real CT carries its own noise: what is added must show up as the difference of variances."""
    lr = simulate_lr(sample, (2, 2, 2), LRModel.parse("gauss:1"))
    own, _ = estimate_noise_hu(lr)
    for sd in (10.0, 30.0):
        noisy = simulate_lr(sample, (2, 2, 2), LRModel.parse(f"gauss:1,noise:{sd}"), seed=1)
        found = np.sqrt(max(estimate_noise_hu(noisy)[0] ** 2 - own**2, 0.0))
        assert abs(found - sd) < 0.15 * sd, (sd, found, own)
    assert fine_band_noise_hu(np.full((16, 16, 16), -1024.0)) == 0.0
    assert slice_difference_noise_hu(np.full((16, 16, 16), -1024.0)) == 0.0


def _in_plane_correlated(shape_kji, sd, seed=2):
    """White noise smoothed within each slice (J, I) by a Gaussian of 0.7 voxels, SD ``sd``: a
    reconstruction kernel's correlation, slices independent."""
    from scipy import ndimage

    noise = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape_kji), (0.0, 0.7, 0.7))
    return (noise * (sd / noise.std())).astype(np.float32)


def test_noise_correlated_within_slices_is_read_at_its_whole_sd(sample):
    """The fine band reads about half the SD of in-plane correlated noise; across slices it is
    read whole, and the estimate takes that reading."""
    lr = simulate_lr(sample, (2, 2, 2), LRModel.parse("gauss:1"))
    own, _ = estimate_noise_hu(lr)
    noisy = lr.with_array(lr.array + _in_plane_correlated(lr.array.shape, 20.0))
    fine = np.sqrt(max(fine_band_noise_hu(noisy.array) ** 2 - fine_band_noise_hu(lr.array) ** 2, 0.0))
    found, how = estimate_noise_hu(noisy)
    whole = np.sqrt(max(found**2 - own**2, 0.0))
    assert fine < 0.6 * 20.0, fine
    assert abs(whole - 20.0) < 0.15 * 20.0 and how.startswith("estimated (across slices"), (whole, how)


def test_noise_is_not_read_across_slices_far_apart(sample):
    """Slices more than SLICE_SPACING_RATIO pixels apart: anatomy would read as noise across them."""
    from ctsr.lrestimate import SLICE_SPACING_RATIO

    lr = simulate_lr(sample, (1, 1, 4), LRModel.parse("gauss:1"))
    assert lr.spacing[2] > SLICE_SPACING_RATIO * lr.spacing[0]
    found, how = estimate_noise_hu(lr)
    assert found == fine_band_noise_hu(lr.array) and "too far apart" in how


def _crop(name, n=96):
    full = read_volume(require_shared_data() / "ct" / name)
    corner = [(s - n) // 2 for s in full.array.shape]
    return Volume(np.ascontiguousarray(full.array[tuple(slice(c, c + n) for c in corner)]), full.ijk_to_ras)


@pytest.mark.parametrize("name", ["chest_cta_1.5mm.nrrd", "head_1.5mm.nrrd", "abdomen_pelvis_3mm.nrrd"])
def test_blur_estimate_picks_the_family_member_that_made_the_lr(name):
    """x2 on real crops: the cross-scale estimate returns the sigma that made the LR, or, for
    the widest member, the next narrower one (a miss on the wide side counts TOO_WIDE_WEIGHT
    times); for the block mean, not a candidate, gauss:0.5 (both of SD 0.5 HR voxels at x2).
    Never a wider one."""
    hr = _crop(name)
    accepted = {"gauss:0.5": ("gauss:0.5",), "box": ("gauss:0.5",), "gauss:1": ("gauss:1",),
                "gauss:1.5": ("gauss:1.5", "gauss:1")}
    for made, allowed in accepted.items():
        lr = simulate_lr(hr, (2, 2, 2), LRModel.parse(made))
        found, how = estimate_profile(lr, (2, 2, 2), 0, fine_band_noise_hu(lr.array))
        assert found is not None and how.startswith("estimated")
        assert str(found) in allowed, (made, found)


def test_between_two_equal_misses_the_narrower_candidate_is_chosen():
    """The asymmetric choice itself, on a made-up sharpness: a candidate whose degraded volume
    looks blurrier than the input (too wide) loses to one that misses by the same log gap on
    the sharp side, and wins when its miss is under 1 / TOO_WIDE_WEIGHT of the other's."""
    from ctsr.lrestimate import CROSS_SCALE_CANDIDATES, TOO_WIDE_WEIGHT, _closest_candidate

    def sharpness_with(gaps):
        return lambda profile: float(np.exp(gaps.get(str(profile), 5.0)))

    def closest(gaps, weight=1.0):
        return _closest_candidate(1.0, sharpness_with(gaps), CROSS_SCALE_CANDIDATES, weight)

    found, gap = closest({"gauss:0.5": 0.3, "gauss:1": -0.3}, TOO_WIDE_WEIGHT)
    assert str(found) == "gauss:0.5" and gap == pytest.approx(0.3)
    slightly = 0.3 / TOO_WIDE_WEIGHT * 0.9
    found, gap = closest({"gauss:0.5": 0.3, "gauss:1": -slightly}, TOO_WIDE_WEIGHT)
    assert str(found) == "gauss:1" and gap == pytest.approx(-slightly)
    found, _ = closest({"gauss:0.5": 0.3, "gauss:1": -0.29})
    assert str(found) == "gauss:1"  # equal weights: the nearer miss, whichever side


@pytest.mark.parametrize("scale", [(1, 1, 4), (2, 2, 4)])
@pytest.mark.parametrize("name", ["chest_cta_1.5mm.nrrd", "head_1.5mm.nrrd", "abdomen_pelvis_3mm.nrrd"])
def test_through_plane_estimate_is_never_wider_than_the_truth(name, scale):
    """1x1x4 and 2x2x4 on real crops: the in-plane reference (at 2x2x4 itself at the LR's
    spacing and blur) gives a slice profile, and never one wider than the profile that made the
    LR (too wide makes halos)."""
    hr = _crop(name)
    for made in ("gauss:0.5", "gauss:1", "gauss:1.5", "box"):
        truth = Profile.parse(made)
        lr = simulate_lr(hr, scale, LRModel.parse(made))
        model = resolve_lr_model(lr, scale)
        assert model.source["z"].startswith("estimated (in-plane"), model.source
        z_hr_mm = float(lr.spacing[2]) / 4
        assert model.profiles[2].std_hr_voxels(4, z_hr_mm) <= truth.std_hr_voxels(4, z_hr_mm) + 1e-6, (made, model)


def test_through_plane_estimate_is_the_wider_of_the_in_plane_readings(sample):
    """1x1x4: x and y each read z's profile and the estimate is the wider reading, whichever axis
    gives it (the sample and the sample with x and y exchanged; on this crop they read
    differently). At 2x2x4 only x reads."""
    from ctsr.lrestimate import estimate_through_plane_profile, through_plane_reading

    z_hr_mm = float(sample.spacing[2])
    sd = lambda profile: profile.std_hr_voxels(4, z_hr_mm)
    readers = set()
    for hr in (sample, sample.with_axes_swapped(0, 1)):
        lr = simulate_lr(hr, (1, 1, 4), LRModel.parse("gauss:1.5"))
        noise = fine_band_noise_hu(lr.array)
        readings = [through_plane_reading(lr, 4, noise, axis)[0] for axis in (0, 1)]
        assert sd(readings[0]) != sd(readings[1])
        estimate, how = estimate_through_plane_profile(lr, (1, 1, 4), noise)
        assert sd(estimate) == max(sd(r) for r in readings) and "reads" in how
        readers.add(int(np.argmax([sd(r) for r in readings])))
    assert readers == {0, 1}
    lr = simulate_lr(sample, (2, 2, 4), LRModel.parse("gauss:1.5"))
    noise = fine_band_noise_hu(lr.array)
    estimate, how = estimate_through_plane_profile(lr, (2, 2, 4), noise)
    assert estimate == through_plane_reading(lr, 4, noise, 0)[0] and "reads" not in how


def test_too_few_slices_to_read_the_slice_profile_says_so(sample):
    """1x1x8 of the 64-slice sample leaves 8 slices: the slice profile is assumed (the internal
    prior then does not learn from it), and the source says why, not another estimator's limit."""
    from ctsr.lrmodel import ASSUMED, DEFAULT_PROFILE

    lr = simulate_lr(sample, (1, 1, 8), LRModel.parse("box"))
    model = resolve_lr_model(lr, (1, 1, 8))
    assert model.profiles[2] == DEFAULT_PROFILE and model.origin["z"] == ASSUMED
    assert "8 slices, 16 needed" in model.source["z"], model.source


def test_a_given_blur_much_wider_than_the_input_looks_is_flagged(sample):
    """x2, LR made by the block mean: a given gauss:2 (SD 4x the estimate) is flagged in the
    source, the block mean itself is not."""
    from ctsr.lrestimate import LOOKS_TOO_WIDE

    lr = simulate_lr(sample, (2, 2, 2), LRModel.parse("box,noise:10"), seed=1)
    wide = resolve_lr_model(lr, (2, 2, 2), "gauss:2")
    assert wide.profiles[0] == Profile("gauss", 2.0)  # still the user's model, only flagged
    assert all(LOOKS_TOO_WIDE in wide.source[axis] for axis in "xyz"), wide.source
    assert resolve_lr_model(lr, (2, 2, 2), "box").source["x"] == "given"


def test_one_level_down_keeps_physical_widths_and_estimates_the_rest(sample):
    """x4 -> x2: a given Gaussian's sigma halves (HR voxels twice as large), a box stays the
    block, DICOM's slab stays in mm; an estimated or default profile is estimated again at x2."""
    from ctsr.lrestimate import lr_model_one_level_down

    lr = simulate_lr(sample, (2, 2, 2), LRModel.parse("box,noise:0"))
    given = resolve_lr_model(lr, (4, 4, 4), "x=gauss:1.5,y=box,noise:7", slice_thickness_mm=6.0)
    down = lr_model_one_level_down(lr, (4, 4, 4), given)
    assert down.profiles == (Profile("gauss", 0.75), Profile("box"), Profile("slab", 6.0))
    assert down.noise_hu == 7.0 and down.source["x"].startswith("given") and "DICOM" in down.source["z"]
    estimated = resolve_lr_model(lr, (4, 4, 4))
    assert estimated.source["x"].startswith("default")  # the blur is estimated up to x2 only
    again = lr_model_one_level_down(lr, (4, 4, 4), estimated)
    assert again.source["x"].startswith("estimated") and again == resolve_lr_model(lr, (2, 2, 2), f"noise:{estimated.noise_hu}")


def test_one_level_down_carries_a_default_it_cannot_estimate_at_its_width_in_mm(sample):
    """A 24^3 LR at x4: the blur is estimated neither at x4 (not measured there) nor at x2
    (12 voxels after the extra degradation, 16 needed); x4's default gauss:0.5 is carried to x2
    as gauss:0.25 (HR voxels twice as large) and says so; an axis estimated at x2 is not."""
    from ctsr.lrestimate import CARRIED_DEFAULT, MIN_SAMPLES, lr_model_one_level_down

    small = Volume(np.ascontiguousarray(sample.array[:24, :24, :24]), sample.ijk_to_ras)
    assert 24 // 2 < MIN_SAMPLES
    model = resolve_lr_model(small, (4, 4, 4))
    assert model.profiles[0] == DEFAULT_PROFILE and model.source["x"].startswith("default")
    down = lr_model_one_level_down(small, (4, 4, 4), model)
    assert down.profiles == (Profile("gauss", DEFAULT_PROFILE.value / 2),) * 3
    assert all(down.source[axis].startswith(CARRIED_DEFAULT) for axis in "xyz")
    assert down.noise_hu == model.noise_hu
    large = simulate_lr(sample, (2, 2, 2), LRModel.parse("box,noise:0"))  # 32^3: estimated at x2
    again = lr_model_one_level_down(large, (4, 4, 4), resolve_lr_model(large, (4, 4, 4)))
    assert not any(again.source[axis].startswith(CARRIED_DEFAULT) for axis in "xyz")


def test_an_axis_too_short_to_estimate_borrows_the_narrowest_reading_of_its_peers(sample):
    """x2 on a 12-slice LR (6 slices after the extra degradation: too few to estimate z) with
    32 x 32 in-plane: z takes the in-plane estimate, read in z's HR voxels or carried at its
    width in mm, whichever is narrower (slices 1.5x coarser than pixels: the mm reading); an
    input too short along every axis gets the default."""
    from ctsr.lrestimate import BORROWED

    matrix = sample.ijk_to_ras.copy()
    matrix[:3, 2] *= 1.5  # slices 2.25 mm apart, pixels 1.5 mm
    short = Volume(np.ascontiguousarray(sample.array[:24]), matrix)
    lr = simulate_lr(short, (2, 2, 2), LRModel.parse("gauss:1,noise:0"))
    model = resolve_lr_model(lr, (2, 2, 2))
    assert model.source["x"].startswith("estimated (") and model.source["z"].startswith(BORROWED + " x"), model.source
    x_mm, z_mm = float(lr.spacing[0]) / 2, float(lr.spacing[2]) / 2
    in_mm = model.profiles[0].std_hr_voxels(2, x_mm) * x_mm / z_mm
    assert model.profiles[2].std_hr_voxels(2, z_mm) == pytest.approx(min(in_mm, model.profiles[0].std_hr_voxels(2, z_mm)),
                                                                     rel=1e-3)
    tiny = simulate_lr(Volume(np.ascontiguousarray(sample.array[:24, :24, :24]), sample.ijk_to_ras), (2, 2, 2),
                       LRModel.parse("gauss:1"))
    assert all(resolve_lr_model(tiny, (2, 2, 2)).source[a].startswith("default") for a in "xyz")


def test_point_sampled_lr_is_not_read_as_the_block_mean_and_fast_keeps_above_cubic():
    """x2 LR of the real head crop made outside ctsr's operator: SimpleITK's cubic B-spline
    interpolator onto the LR grid, no antialiasing (point sampling; the estimate cannot tell it
    from the block mean, whose response is zero at the HR Nyquist). The estimate stays a
    Gaussian, and ``fast`` under it is not below cubic."""
    import SimpleITK as sitk

    from ctsr.io import image_from_array, image_from_volume, volume_from_image
    from ctsr.metrics import evaluate
    from ctsr.upsampling import upsample

    hr = _crop("head_1.5mm.nrrd")
    matrix, shape = lr_grid(hr.ijk_to_ras, hr.shape_ijk, (2, 2, 2))
    reference = image_from_array(np.zeros(shape[::-1], np.float32), matrix)
    lr = volume_from_image(sitk.Resample(image_from_volume(hr), reference, sitk.Transform(), sitk.sitkBSpline,
                                         0.0, sitk.sitkFloat32), check=False)
    model = resolve_lr_model(lr, (2, 2, 2))
    assert all(p.kind == "gauss" for p in model.profiles), model
    cubic = evaluate(upsample(lr, (2, 2, 2), method="cubic").volume, hr)["psnr"]
    fast = evaluate(upsample(lr, (2, 2, 2), method="fast", device="cpu").volume, hr)["psnr"]
    assert fast >= cubic - 0.05, (fast, cubic, model)
