"""The Slicer side of ROI, uncertainty and the LR residual, on slicer-core's real MRML with the
real worker subprocess: a (rotated, transformed) markups ROI crops the input in place, the
uncertainty volume comes back as a second coloured node, and the residual is a node attribute."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")
vtk = pytest.importorskip("vtk")

from ctsr.baselines import upsample_interpolate  # noqa: E402
from ctsr.errors import UserError  # noqa: E402
from ctsr.grids import hr_grid  # noqa: E402
from ctsr.io import read_volume, write_volume  # noqa: E402
from ctsr.roi import Roi, crop_to_roi  # noqa: E402
from ctsr.upsampling import upsample  # noqa: E402
from ctsr.volume import Volume  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "CTSuperResolution"))

from CTSuperResolutionLib import nodes, roi as roi_lib  # noqa: E402
from CTSuperResolutionLib.logic import FAILED, CTSuperResolutionLogicBase  # noqa: E402
from mrml_scene import add_node, provenance, volume_from_node, volume_nodes  # noqa: E402


@pytest.fixture(scope="module")
def crop(oblique_sample) -> Volume:
    """20 x 24 x 16 voxels of the real sample on an oblique, anisotropic, offset grid."""
    return Volume(oblique_sample.array[24:40, 20:44, 22:42], oblique_sample.ijk_to_ras)


def rotation(axis: int, degrees: float) -> np.ndarray:
    """4x4 rotation about RAS axis ``axis``."""
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    i, j = [a for a in range(3) if a != axis]
    matrix = np.eye(4)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


def add_transform(scene, matrix: np.ndarray, name: str):
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    node.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(matrix))
    return node


def add_roi(scene, centre, size, object_to_node: np.ndarray | None = None, name="box"):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", name)
    if object_to_node is not None:
        node.GetObjectToNodeMatrix().DeepCopy(slicer.util.vtkMatrixFromArray(object_to_node))
    node.SetCenter(*centre)
    node.SetSize(*size)
    return node


def expected_roi_in_volume_frame(centre, size, object_rotation, roi_to_world, volume_to_world) -> Roi:
    """The ROI's 8 corners, computed with plain numpy, moved into the volume's frame; their box."""
    half = np.asarray(size) / 2.0
    corners = np.array([[x, y, z, 1.0] for x in (-half[0], half[0]) for y in (-half[1], half[1])
                        for z in (-half[2], half[2])]).T
    placed = object_rotation.copy()
    placed[:3, 3] = centre
    in_volume = np.linalg.inv(volume_to_world) @ roi_to_world @ placed @ corners
    return Roi("ras", tuple(in_volume[:3].min(axis=1)), tuple(in_volume[:3].max(axis=1)))


def test_roi_string_from_plain_bounds():
    text = roi_lib.roi_from_bounds((1.0, 3.0, -2.0, 5.0, 0.5, 7.25))
    assert text == "ras:1.0,-2.0,0.5,3.0,5.0,7.25"
    parsed = Roi.parse(text)
    assert parsed.low == (1.0, -2.0, 0.5) and parsed.high == (3.0, 5.0, 7.25)
    # full float precision survives the string (sub-micrometre corners stay where they were)
    assert Roi.parse(roi_lib.roi_from_bounds((0.1 + 0.2, 1, 0, 1, 0, 1))).low[0] == 0.1 + 0.2
    assert roi_lib.bounds_of_points([[1, 5, -1], [-2, 0, 3], [0, 9, 0]]) == (-2, 1, 0, 9, -1, 3)
    with pytest.raises(UserError, match="six finite numbers"):
        roi_lib.roi_from_bounds((0, 1, 0, 1, 0, float("nan")))


def test_rotated_roi_under_transforms_becomes_its_box_in_the_volumes_frame(scene, crop):
    volume_to_world = rotation(2, 25.0) @ rotation(0, -10.0)
    volume_to_world[:3, 3] = (4.0, -6.0, 9.0)
    roi_to_world = rotation(1, 15.0)
    roi_to_world[:3, 3] = (-3.0, 2.0, 1.0)
    object_rotation = rotation(2, 30.0)
    centre, size = (-20.0, 25.0, 95.0), (10.0, 6.0, 14.0)
    node = add_node(scene, crop)
    node.SetAndObserveTransformNodeID(add_transform(scene, volume_to_world, "volume placement").GetID())
    box = add_roi(scene, centre, size, object_rotation)
    box.SetAndObserveTransformNodeID(add_transform(scene, roi_to_world, "roi placement").GetID())

    got = Roi.parse(roi_lib.roi_for_volume(box, node))

    expected = expected_roi_in_volume_frame(centre, size, object_rotation, roi_to_world, volume_to_world)
    np.testing.assert_allclose(got.low, expected.low, atol=1e-9)
    np.testing.assert_allclose(got.high, expected.high, atol=1e-9)
    # a rotated ROI's box is larger than the ROI along some axis
    assert np.any(np.subtract(got.high, got.low) > np.array(size) + 1.0)


def test_an_roi_without_extent_or_of_the_wrong_kind_is_one_sentence(scene, crop):
    node = add_node(scene, crop)
    empty = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "unplaced")
    with pytest.raises(UserError, match="unplaced has no extent"):
        roi_lib.as_engine_roi(empty, node)
    with pytest.raises(UserError, match="not of the form"):
        roi_lib.as_engine_roi("ras:1,2,3", node)
    with pytest.raises(UserError, match="markups ROI node"):
        roi_lib.as_engine_roi(42, node)


def test_process_with_an_roi_node_covers_that_box_in_place(scene, crop):
    """The output's grid is the engine's crop_to_roi + hr_grid of the input, computed here from
    the ROI independently of the module's conversion; values as the engine's trilinear."""
    volume_to_world = rotation(2, 20.0)
    volume_to_world[:3, 3] = (1.0, 2.0, -3.0)
    node = add_node(scene, crop)
    placement = add_transform(scene, volume_to_world, "placement")
    node.SetAndObserveTransformNodeID(placement.GetID())
    # an ROI in world coordinates, around the centre of the crop as the viewers show it
    centre_world = (volume_to_world @ crop.ijk_to_ras @ [10, 12, 8, 1.0])[:3]
    object_rotation = rotation(0, 20.0)
    size = (9.0, 8.0, 12.0)
    box = add_roi(scene, centre_world, size, object_rotation)

    out = CTSuperResolutionLogicBase().process(node, scale=2, method="trilinear", roi=box)

    roi = expected_roi_in_volume_frame(centre_world, size, object_rotation, np.eye(4), volume_to_world)
    cropped = crop_to_roi(crop, roi)
    assert cropped.shape_ijk != crop.shape_ijk  # the ROI really cuts the input
    matrix, shape = hr_grid(cropped.ijk_to_ras, cropped.shape_ijk, (2, 2, 2))
    got = volume_from_node(out)
    assert got.shape_ijk == shape
    np.testing.assert_allclose(got.ijk_to_ras, matrix, atol=1e-5)
    np.testing.assert_allclose(got.array, upsample_interpolate(cropped, (2, 2, 2), "trilinear").array, atol=1e-3)
    assert out.GetTransformNodeID() == placement.GetID()  # shown in the same place as the input
    assert Roi.parse(provenance(out)["roi"]).space == "ras"
    assert list(Path(tempfile.tempdir).iterdir()) == []


def test_process_with_an_roi_string(scene, crop):
    node = add_node(scene, crop)
    out = CTSuperResolutionLogicBase().process(node, scale="1x1x2", method="cubic", roi="ijk:2,3,4,12,15,10")
    cropped = Volume(crop.array[4:10, 3:15, 2:12], crop.ijk_to_ras.copy())
    cropped.ijk_to_ras[:3, 3] = (crop.ijk_to_ras @ [2, 3, 4, 1.0])[:3]
    matrix, shape = hr_grid(cropped.ijk_to_ras, cropped.shape_ijk, (1, 1, 2))
    got = volume_from_node(out)
    assert got.shape_ijk == shape == (10, 12, 12)
    np.testing.assert_allclose(got.ijk_to_ras, matrix, atol=1e-5)


def test_uncertainty_comes_back_as_a_second_coloured_node_with_the_residual(scene, crop):
    colors = slicer.vtkMRMLColorLogic()  # Slicer's default colour nodes, while it lives
    colors.SetMRMLScene(scene)
    node = add_node(scene, crop)
    placement = add_transform(scene, rotation(1, 12.0), "placement")
    node.SetAndObserveTransformNodeID(placement.GetID())
    roi = "ijk:3,4,2,15,18,12"

    job = CTSuperResolutionLogicBase().process(node, scale=2, method="balanced", roi=roi, uncertainty=2,
                                               wait=False)
    job.wait(timeout=300)
    assert job.state == "succeeded", job.errorMessage

    out, spread = job.outputVolume, job.uncertaintyVolume
    assert spread.GetName() == out.GetName() + "_uncertainty" == "CT_SRx2_uncertainty"
    assert out.GetNodeReference(nodes.UNCERTAINTY_REFERENCE_ROLE) is spread
    engine = upsample(crop, 2, "balanced", roi=roi, uncertainty=2, device="cpu")
    got = volume_from_node(out)
    # read without the usability check: on so small a box balanced is fast, its spread is 0
    got_spread = Volume(slicer.util.arrayFromVolume(spread), nodes.ijk_to_ras(spread))
    assert got_spread.same_grid(got, tol=1e-6) and got.same_grid(engine.volume, tol=1e-5)
    np.testing.assert_allclose(got_spread.array, engine.uncertainty.array, atol=1e-3)
    assert np.all(got_spread.array >= 0)
    # shown with a colour map, in the same place as the input
    assert spread.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeRainbow"
    assert spread.GetTransformNodeID() == placement.GetID()
    assert provenance(spread)["uncertaintyOf"] == out.GetName()
    # the LR residual: node attributes and the log line of the panel
    residual = job.provenance["lr_residual"]
    assert float(out.GetAttribute("CTSuperResolution.lrResidualHU")) == residual["rms_hu"]
    assert float(out.GetAttribute("CTSuperResolution.lrResidualRelative")) == residual["relative"]
    assert job.residualText.startswith(f"LR residual {residual['rms_hu']:.2f} HU RMS")
    assert f"at noise {residual['noise_hu']:.2f} HU, LR model {job.provenance['lr_model']['model']}" in job.residualText
    assert job.log[-1] == job.residualText
    assert provenance(out)["uncertainty_runs"] == "2"
    assert list(Path(tempfile.tempdir).iterdir()) == []
    # a re-run into the same output refills its uncertainty node instead of adding another
    count = len(volume_nodes(scene))
    again = CTSuperResolutionLogicBase().process(node, out, scale=2, method="balanced", roi="ijk:3,4,2,11,12,10",
                                                 uncertainty=2, wait=False).wait(timeout=300)
    assert again.uncertaintyVolume is spread and len(volume_nodes(scene)) == count
    assert spread.GetImageData().GetDimensions() == out.GetImageData().GetDimensions() == (16, 16, 16)
    # ... and one without uncertainty drops the reference: the old map does not describe it
    CTSuperResolutionLogicBase().process(node, out, scale=2, method="cubic", roi="ijk:3,4,2,11,12,10")
    assert out.GetNodeReference(nodes.UNCERTAINTY_REFERENCE_ROLE) is None


def test_a_failed_uncertainty_load_leaves_a_chosen_output_as_it_was(scene, crop, monkeypatch):
    node = add_node(scene, crop)
    chosen = add_node(scene, Volume(crop.array[:4, :4, :4] * 0 + 7, crop.ijk_to_ras), "mine")
    monkeypatch.setattr(nodes, "show_as_uncertainty", lambda target: 1 / 0)
    job = CTSuperResolutionLogicBase().process(node, chosen, scale=2, method="balanced", roi="ijk:0,0,0,8,8,8",
                                               uncertainty=2, wait=False).wait(timeout=300)
    assert job.state == FAILED
    assert np.all(slicer.util.arrayFromVolume(chosen) == 7) and provenance(chosen) == {}


def test_a_failure_while_loading_removes_both_new_nodes(scene, crop, monkeypatch):
    node = add_node(scene, crop)

    def broken(target):
        raise RuntimeError("display failed")

    monkeypatch.setattr(nodes, "show_as_uncertainty", broken)
    job = CTSuperResolutionLogicBase().process(node, scale=2, method="balanced", roi="ijk:0,0,0,8,8,8",
                                               uncertainty=2, wait=False)
    job.wait(timeout=300)
    assert job.state == FAILED and "display failed" in job.errorMessage
    assert volume_nodes(scene) == [node]
    assert job.outputVolume is None and job.uncertaintyVolume is None
    assert list(Path(tempfile.tempdir).iterdir()) == []


@pytest.mark.parametrize("method, runs, phrase", [
    ("cubic", 3, "cubic is deterministic"),
    ("fast", 2, "fast is deterministic"),
    ("balanced", 1, "at least 2 runs"),
    ("balanced", "many", "whole number"),
])
def test_bad_uncertainty_requests_fail_before_any_work(scene, crop, method, runs, phrase):
    node = add_node(scene, crop)
    with pytest.raises(UserError, match=phrase):
        CTSuperResolutionLogicBase().process(node, method=method, uncertainty=runs)
    assert list(Path(tempfile.tempdir).iterdir()) == []


def test_uncertainty_colour_degrades_to_grey_without_colour_nodes(scene, crop):
    spread = add_node(scene, crop, "spread")
    assert nodes.show_as_uncertainty(spread) is None
    assert spread.GetDisplayNode().GetAutoWindowLevel()
    colors = slicer.vtkMRMLColorLogic()
    colors.SetMRMLScene(scene)
    assert nodes.show_as_uncertainty(spread) == "vtkMRMLColorTableNodeRainbow"


def test_provenance_attributes_flatten_the_residual_and_replace_an_earlier_run(scene, crop):
    node = add_node(scene, crop)
    nodes.set_provenance(node, {"method": "fast", "lr_residual": {"rms_hu": 5.25, "relative": 0.0171}})
    assert provenance(node) == {"method": "fast", "lrResidualHU": "5.25", "lrResidualRelative": "0.0171"}
    nodes.set_provenance(node, {"method": "fast", "lr_residual": {"rms_hu": 5.25, "relative": 0.0171, "noise_hu": 5.1},
                                "lr_model": {"model": "box,noise:5.1", "source": {"x": "given", "noise": "estimated"}}})
    assert provenance(node) == {"method": "fast", "lrResidualHU": "5.25", "lrResidualRelative": "0.0171",
                                      "lrNoiseHU": "5.1", "lrModel": "box,noise:5.1",
                                      "lrModelSource": "x: given; noise: estimated"}
    nodes.set_provenance(node, {"method": "cubic"})
    assert provenance(node) == {"method": "cubic"}


def test_worker_writes_the_uncertainty_where_the_job_says(tmp_path, crop):
    import subprocess

    source = write_volume(Volume(crop.array[:8, :10, :10], crop.ijk_to_ras), tmp_path / "lr.nrrd")
    job = {"input": str(source), "output": str(tmp_path / "hr.nrrd"), "method": "balanced", "device": "cpu",
           "uncertainty_output": str(tmp_path / "spread.nii.gz"), "options": {"uncertainty": 2}}
    (tmp_path / "job.json").write_text(json.dumps(job))
    done = subprocess.run([sys.executable, "-m", "ctsr.worker", str(tmp_path / "job.json")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["event"] == "result" and result["uncertainty"] == job["uncertainty_output"]
    spread = read_volume(job["uncertainty_output"], check=False)  # balanced falls back to fast here: 0
    assert spread.same_grid(read_volume(job["output"]), tol=1e-5)
    assert "rms_hu" in result["provenance"]["lr_residual"]


@pytest.mark.parametrize("method", ["cubic", "fast", "balanced", "standard"])
def test_a_constant_volume_is_valid_and_gives_the_same_constant(tmp_path, crop, method):
    """Every method, the uncertainty map of those that take one (zero), the grid of the scale."""
    from ctsr.upsampling import DETERMINISTIC_METHODS, upsample

    path = write_volume(crop.with_array(np.full_like(crop.array, -1024.0)), tmp_path / "air.nrrd")
    runs = 0 if method in DETERMINISTIC_METHODS else 2
    result = upsample(read_volume(path), "1x1x4", method, uncertainty=runs, device="cpu")
    assert result.volume.shape_ijk == tuple(n * s for n, s in zip(crop.shape_ijk, (1, 1, 4)))
    np.testing.assert_allclose(result.volume.array, -1024.0, atol=1e-3)
    assert result.provenance["lr_residual"]["rms_hu"] < 1e-3
    if runs:
        assert "constant_input" in result.provenance and not result.uncertainty.array.any()
