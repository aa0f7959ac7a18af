"""Scalar volume node <-> :class:`ctsr.volume.Volume`, and the output node's trimmings.

A node's voxels (``slicer.util.arrayFromVolume``, KJI order) and its IJK-to-RAS matrix (mm)
are exactly a :class:`Volume`, so files are written and read by ``ctsr.io`` (the one place that
converts RAS <-> LPS). The node's parent transform is not baked in: the output node is put
under the same parent transform, so both stay aligned in the viewers.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from ctsr.errors import UserError
from ctsr.volume import Volume, check_voxels

#: Prefix of the provenance attributes set on output nodes (``CTSuperResolution.method`` ...).
ATTRIBUTE_PREFIX = "CTSuperResolution."


def check_input_node(node) -> None:
    """Raise :class:`UserError` unless ``node`` is a scalar (not label map) volume with voxels."""
    if node is None:
        raise UserError("no input volume is selected.")
    if not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise UserError(f"{node.GetName()} is not a scalar volume; pick a CT volume.")
    image = node.GetImageData()
    if image is None or image.GetNumberOfPoints() == 0:
        raise UserError(f"{node.GetName()} has no voxels.")
    if image.GetNumberOfScalarComponents() != 1:
        raise UserError(f"{node.GetName()} has {image.GetNumberOfScalarComponents()} values per "
                        "voxel; a scalar volume is needed.")


def ijk_to_ras(node) -> np.ndarray:
    """The node's 4x4 IJK-to-RAS matrix (mm) as a numpy array."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def write_node(node, path) -> None:
    """Write the node's voxels in their own type (an int16 CT stays int16: half the bytes of
    float32 and no float copy on the GUI thread) with its geometry, uncompressed, after the
    checks of :func:`ctsr.volume.check_voxels`."""
    from ctsr.io import image_from_array, write_image

    check_input_node(node)
    voxels = slicer.util.arrayFromVolume(node)  # a view, no copy
    matrix = ijk_to_ras(node)
    check_voxels(voxels, matrix, node.GetName())
    write_image(image_from_array(voxels, matrix), path, compress=False)


def temporary_folder():
    """Slicer's temporary folder (its application settings) when running in Slicer, else None
    (the system's)."""
    app = getattr(slicer, "app", None)
    return getattr(app, "temporaryPath", None) if app is not None else None


def update_node_from_volume(node, volume: Volume) -> None:
    """Give ``node`` the voxels and the geometry of ``volume`` (both copied)."""
    slicer.util.updateVolumeFromArray(node, volume.array)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(volume.ijk_to_ras))


def add_volume_node(scene, name: str):
    """A new, empty scalar volume node with a unique ``name`` in ``scene``."""
    return scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(name))


def match_display(source, target) -> None:
    """Show ``target`` like ``source``: same window/level and colour table, same parent
    transform. Creates the target's display node if it has none."""
    target.SetAndObserveTransformNodeID(source.GetTransformNodeID())
    if target.GetDisplayNode() is None:
        target.CreateDefaultDisplayNodes()
    shown, shown_as = source.GetDisplayNode(), target.GetDisplayNode()
    if shown is None or shown_as is None:
        return
    shown_as.SetAutoWindowLevel(shown.GetAutoWindowLevel())
    if not shown.GetAutoWindowLevel():
        shown_as.SetWindowLevel(shown.GetWindow(), shown.GetLevel())
    if shown.GetColorNodeID():
        shown_as.SetAndObserveColorNodeID(shown.GetColorNodeID())


def set_provenance(node, provenance: dict) -> None:
    """Record how the node was made as attributes ``CTSuperResolution.<key>`` (strings),
    replacing those of an earlier run. The LR residual (``{"rms_hu", "relative", "noise_hu"}``)
    becomes ``CTSuperResolution.lrResidualHU``, ``.lrResidualRelative`` and ``.lrNoiseHU``;
    the LR model (``{"model", "source"}``) ``.lrModel`` and ``.lrModelSource``."""
    for name in list(node.GetAttributeNames() or ()):
        if name.startswith(ATTRIBUTE_PREFIX):
            node.RemoveAttribute(name)
    for key, value in provenance.items():
        if key == "lr_residual" and isinstance(value, dict):
            node.SetAttribute(ATTRIBUTE_PREFIX + "lrResidualHU", str(value.get("rms_hu")))
            node.SetAttribute(ATTRIBUTE_PREFIX + "lrResidualRelative", str(value.get("relative")))
            if value.get("noise_hu") is not None:
                node.SetAttribute(ATTRIBUTE_PREFIX + "lrNoiseHU", str(value["noise_hu"]))
        elif key == "lr_model" and isinstance(value, dict):
            node.SetAttribute(ATTRIBUTE_PREFIX + "lrModel", str(value.get("model")))
            node.SetAttribute(ATTRIBUTE_PREFIX + "lrModelSource",
                              "; ".join(f"{k}: {v}" for k, v in (value.get("source") or {}).items()))
        else:
            node.SetAttribute(ATTRIBUTE_PREFIX + key, str(value))


def dicom_slice_thickness(node, database=None) -> float | None:
    """SliceThickness (0018,0050, mm) of the DICOM series ``node`` was loaded from (its
    ``DICOM.instanceUIDs`` attribute, looked up in ``database``, by default Slicer's DICOM
    database); None when the node did not come from DICOM or the tag is missing or not a
    number (whether it is usable is :func:`ctsr.lrmodel.slab_from_dicom`'s to say)."""
    uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split()
    if database is None:
        database = getattr(slicer, "dicomDatabase", None)
    if not uids or database is None:
        return None
    try:
        value = database.fileValue(database.fileForInstance(uids[0]), "0018,0050")
        return float(value) if value else None
    except (ValueError, TypeError):
        return None


#: Colour maps for the uncertainty volume, best first: node IDs of Slicer's default colour
#: nodes (the first two are read from Slicer's colour files; slicer-core has only the third).
UNCERTAINTY_COLOR_NODE_IDS = ("vtkMRMLColorTableNodeFileInferno.txt",
                              "vtkMRMLColorTableNodeFileColdToHotRainbow.txt",
                              "vtkMRMLColorTableNodeRainbow")

#: Node reference role from an output node to its uncertainty volume.
UNCERTAINTY_REFERENCE_ROLE = ATTRIBUTE_PREFIX + "uncertaintyVolume"


def show_as_uncertainty(node) -> str | None:
    """Display ``node`` (a standard deviation in HU, >= 0) with the first colour map of
    :data:`UNCERTAINTY_COLOR_NODE_IDS` present in its scene and an automatic window. Returns
    the colour node ID used, or ``None`` where the scene has none of them (grey stays)."""
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetAutoWindowLevel(True)
    scene = node.GetScene()
    for colorNodeID in UNCERTAINTY_COLOR_NODE_IDS:
        if scene is not None and scene.GetNodeByID(colorNodeID) is not None:
            display.SetAndObserveColorNodeID(colorNodeID)
            return colorNodeID
    return None
