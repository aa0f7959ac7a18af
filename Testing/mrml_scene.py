"""Helpers of the headless Slicer tests (slicer-core's real MRML): adding a volume node, listing
volume nodes, reading a node back as a :class:`Volume` and its provenance attributes (the
``scene`` fixture is in conftest.py). Import only from modules that already
skipped when slicer-core is absent."""

from __future__ import annotations

import sys
from pathlib import Path

import slicer

from ctsr.volume import Volume

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "CTSuperResolution"))

from CTSuperResolutionLib import nodes  # noqa: E402


def add_node(scene, volume: Volume, name="CT"):
    """A scalar volume node holding ``volume``, with display nodes."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    nodes.update_node_from_volume(node, volume)
    node.CreateDefaultDisplayNodes()
    return node


def volume_nodes(scene) -> list:
    return [scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]


def volume_from_node(node) -> Volume:
    """The node's voxels (float32, KJI) and IJK-to-RAS geometry (mm) as a :class:`Volume`."""
    return Volume(slicer.util.arrayFromVolume(node).astype("float32"), nodes.ijk_to_ras(node))


def provenance(node) -> dict:
    """The ``CTSuperResolution.*`` attributes of ``node`` (strings), without the prefix."""
    prefix = nodes.ATTRIBUTE_PREFIX
    return {name[len(prefix):]: node.GetAttribute(name)
            for name in node.GetAttributeNames() or () if name.startswith(prefix)}
