"""A markups ROI node -> the engine's ``"ras:R1,A1,S1,R2,A2,S2"`` box (:mod:`ctsr.roi`).

The engine crops the input volume to an axis-aligned box given in the input node's own RAS
frame (mm): the frame of its IJK-to-RAS matrix, i.e. *under* its parent transform. A markups ROI
may be rotated and may sit under a different parent transform, so the box handed to the engine
is the axis-aligned bounding box, in the input's frame, of the ROI's 8 corners. For linear
transforms that box contains the ROI exactly; a non-linear transform is applied to the corners
only (an approximation of its bounding box).
"""

from __future__ import annotations

import itertools

import numpy as np
import vtk

from ctsr.errors import UserError
from ctsr.roi import Roi


def roi_from_bounds(bounds) -> str:
    """``(xmin, xmax, ymin, ymax, zmin, zmax)`` (VTK's bounds order, RAS mm) -> the engine's
    ``"ras:xmin,ymin,zmin,xmax,ymax,zmax"`` (two opposite corners)."""
    b = [float(v) for v in bounds]
    if len(b) != 6 or not np.all(np.isfinite(b)):
        raise UserError(f"the ROI bounds {bounds} are not six finite numbers.")
    return "ras:" + ",".join(repr(v) for v in (b[0], b[2], b[4], b[1], b[3], b[5]))


def bounds_of_points(points) -> tuple:
    """The axis-aligned bounds ``(xmin, xmax, ymin, ymax, zmin, zmax)`` of N x 3 points."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    low, high = points.min(axis=0), points.max(axis=0)
    return (low[0], high[0], low[1], high[1], low[2], high[2])


def roi_corners(roiNode) -> np.ndarray:
    """The 8 corners (8 x 3, mm) of a markups ROI in its node coordinates (under its parent
    transform): its box of ``GetSize()`` around the origin, placed by ``GetObjectToNodeMatrix()``
    (its centre and orientation)."""
    size = np.array(roiNode.GetSize(), dtype=np.float64)
    if not np.all(size > 0):
        raise UserError(f"the ROI {roiNode.GetName()} has no extent yet; place it in the views first.")
    objectToNode = np.array([[roiNode.GetObjectToNodeMatrix().GetElement(r, c) for c in range(4)]
                             for r in range(4)])
    half = size / 2.0
    corners = np.array([[sx * half[0], sy * half[1], sz * half[2], 1.0]
                        for sx, sy, sz in itertools.product((-1, 1), repeat=3)])
    return (objectToNode @ corners.T)[:3].T


def roi_for_volume(roiNode, volumeNode) -> str:
    """The engine's ROI string for ``volumeNode``: the ROI's corners moved from the ROI's frame
    into the volume's (through both parent transforms), then their axis-aligned bounds."""
    import slicer

    if not roiNode.IsA("vtkMRMLMarkupsROINode"):
        raise UserError(f"{roiNode.GetName()} is not a markups ROI.")
    toVolume = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(
        roiNode.GetParentTransformNode(), volumeNode.GetParentTransformNode(), toVolume)
    corners = [toVolume.TransformPoint(*corner) for corner in roi_corners(roiNode)]
    return roi_from_bounds(bounds_of_points(corners))


def as_engine_roi(roi, volumeNode) -> str | None:
    """``None``, an ROI string (``"ras:..."`` / ``"ijk:..."``, checked here) or a markups ROI
    node -> the ``roi`` option of the worker's job."""
    if roi is None:
        return None
    if isinstance(roi, str):
        Roi.parse(roi)  # a malformed box is a user error now, before any work
        return roi
    if hasattr(roi, "IsA"):
        return roi_for_volume(roi, volumeNode)
    raise UserError(f"the ROI must be a markups ROI node or a 'ras:...' string, not {type(roi).__name__}.")
