"""Where the extension's ``Resources`` folder (sample data, shipped models) is.

Searched in order: the ``CTSR_RESOURCES`` environment variable; a ``Resources`` folder beside
an ancestor of this package (the source tree, or the module folder of an installed Slicer
extension, which holds ``ctsr`` and ``Resources`` side by side).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError


def resources_dir() -> Path:
    env = os.environ.get("CTSR_RESOURCES")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        if (parent / "Resources" / "SampleData").is_dir():
            return parent / "Resources"
    raise UserError("the CTSuperResolution Resources folder was not found; set CTSR_RESOURCES to it.")


def sample_volume_path() -> Path:
    """The bundled real CT sample (64^3 chest crop, 1.5 mm)."""
    return resources_dir() / "SampleData" / "CTChestCrop.nrrd"
