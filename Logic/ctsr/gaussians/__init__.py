"""Signed 3D Gaussians (NAB-GS): model, exact line-integral renderer, voxelizer, the fit."""

from .footprint import FOOTPRINT_SIGMAS
from .model import DENSITY_UNIT, SignedGaussians
from .render import line_integrals, render
from .voxelize import voxelize

__all__ = ["DENSITY_UNIT", "FOOTPRINT_SIGMAS", "SignedGaussians", "line_integrals", "render", "voxelize"]
