"""Writing a volume as a real DICOM series (SimpleITK's GDCM writer), for the tests that read
DICOM folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ctsr.io import image_from_volume
from ctsr.volume import Volume


def write_dicom_series(folder: Path, volume: Volume, skip=(), sideways_mm: float = 0.0, decimals: int = 6,
                       slice_thickness_mm: float | None = None):
    """``volume`` (HU, rounded to int16) as a DICOM CT series, one file per slice, in ``folder``;
    ``skip``: slices left out; ``sideways_mm``: each slice's position moved that far along J
    more than the one before (gantry tilt); ``decimals``: how the positions are rounded (as some
    scanners write them); ``slice_thickness_mm``: the SliceThickness tag (0018,0050), if any."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.Cast(image_from_volume(volume), sitk.sitkInt16)  # the values are integer HU
    direction = image.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = "1.2.826.0.1.3680043.2.1125.1.42"
    for k in range(image.GetDepth()):
        if k in skip:
            continue
        s = image[:, :, k]
        position = np.array(image.TransformIndexToPhysicalPoint((0, 0, k))) + k * sideways_mm * np.array(direction[1::3])
        for tag, value in {
            "0008|0060": "CT", "0020|000e": series, "0020|000d": series + ".1",
            "0008|0018": f"{series}.{k + 1}", "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{x:.{decimals}f}" for x in position),
            "0020|0037": "\\".join(f"{x:.6f}" for x in direction[0::3] + direction[1::3]),
            "0028|0030": f"{image.GetSpacing()[1]:.6f}\\{image.GetSpacing()[0]:.6f}",
            **({"0018|0050": f"{slice_thickness_mm:g}"} if slice_thickness_mm else {}),
        }.items():
            s.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(s)
    return folder
