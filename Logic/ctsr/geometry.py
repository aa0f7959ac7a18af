"""Cone-beam (and parallel-beam) scan geometry, in TIGRE's names and conventions.

**Scene units.** Everything here is in *scene units*: the volume is scaled so that its largest
physical side spans [-1, 1] (2 scene units), centred at ``offOrigin`` (the origin by default).
``ConeGeometry.mm_per_unit`` converts back to millimetres.

**Axes.** Scene axes (x, y, z) are the volume's index axes (I, J, K): the scan is done in index
space, the RAS direction of the volume does not matter. Per-axis tuples follow TIGRE's order:
``nVoxel``, ``dVoxel`` and ``offOrigin`` are **(z, y, x) = KJI** (as the array shape);
``nDetector`` and ``dDetector`` are **(v, u) = (rows, columns)**.

**Trajectory.** The source turns about the z axis: at angle ``theta`` it sits at
``DSO * (cos theta, sin theta, 0)``; the flat detector's centre is at
``-(DSD - DSO) * (cos theta, sin theta, 0)``; its column axis ``u`` is ``(-sin theta, cos theta, 0)``
and its row axis ``v`` is ``+z``. Pixel ``(row, col)`` has its centre at
``u = (col - (nu - 1) / 2) * du``, ``v = (row - (nv - 1) / 2) * dv`` on the detector.
In ``"parallel"`` mode every ray of a view has direction ``-(cos theta, sin theta, 0)`` and
passes through its pixel centre (the detector is then at the isocentre scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from .errors import UserError
from .grids import Scale
from .volume import Volume

#: Default source-to-origin and source-to-detector distances in scene units: the paper's
#: 1000 mm / 1500 mm for a 400 mm wide field of view (half-width 200 mm = 1 scene unit).
DEFAULT_DSO = 5.0
DEFAULT_DSD = 7.5
#: Detector sizes are rounded up to a multiple of this, so binning by 2, 4, 8 or 16 is exact.
DETECTOR_MULTIPLE = 16


def detector_binning(scale: Scale) -> tuple[int, int]:
    """The detector of a grid ``scale`` (IJK) times coarser is binned by (rows, columns) =
    (sz, sx): rows follow the rotation axis z, columns the in-plane axes (which must share one
    scale)."""
    sx, sy, sz = (int(s) for s in scale)
    if sx != sy:
        raise UserError(f"in-plane scales must be equal for the zero-shot method (got x{sx} and y{sy}).")
    return sz, sx


@dataclass(frozen=True)
class ConeGeometry:
    """A circular scan of a voxel volume; all lengths in scene units, angles in radians."""

    DSO: float
    DSD: float
    nDetector: tuple[int, int]
    dDetector: tuple[float, float]
    nVoxel: tuple[int, int, int]
    dVoxel: tuple[float, float, float]
    angles: tuple[float, ...]
    offOrigin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    mode: str = "cone"
    mm_per_unit: float = 1.0

    def __post_init__(self):
        if self.mode not in ("cone", "parallel"):
            raise ValueError(f"mode must be 'cone' or 'parallel', got {self.mode!r}")
        if self.mode == "cone" and not self.DSD > self.DSO > self.radius:
            raise ValueError("cone geometry needs DSD > DSO > the volume's radius")
        object.__setattr__(self, "nDetector", tuple(int(n) for n in self.nDetector))
        object.__setattr__(self, "dDetector", tuple(float(d) for d in self.dDetector))
        object.__setattr__(self, "nVoxel", tuple(int(n) for n in self.nVoxel))
        object.__setattr__(self, "dVoxel", tuple(float(d) for d in self.dVoxel))
        object.__setattr__(self, "offOrigin", tuple(float(o) for o in self.offOrigin))
        object.__setattr__(self, "angles", tuple(float(a) for a in self.angles))

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_volume(cls, volume: Volume, n_views: int = 100, detector_shape=None, mode: str = "cone",
                    arc: float = math.pi, DSO: float = DEFAULT_DSO, DSD: float = DEFAULT_DSD,
                    ) -> "ConeGeometry":
        """The scan of ``volume`` (its shape and spacing): ``n_views`` angles uniform over ``arc``
        (180 degrees by default, endpoint excluded), a detector that covers the magnified volume
        from every angle. By default the detector pixel is the smallest voxel side magnified to
        the detector (DSD / DSO in cone mode) and the pixel counts are rounded up to a multiple
        of :data:`DETECTOR_MULTIPLE`; ``detector_shape`` (rows, cols) fixes the counts instead
        (the pixel size then stretches to keep the coverage)."""
        shape_kji = volume.array.shape
        spacing_kji = np.asarray(volume.spacing[::-1], dtype=np.float64)
        extent = np.asarray(shape_kji) * spacing_kji
        mm_per_unit = float(extent.max() / 2.0)
        dvoxel = tuple(spacing_kji / mm_per_unit)
        angles = tuple(np.arange(n_views) * (arc / n_views))
        base = cls(DSO=DSO, DSD=DSD, nDetector=(1, 1), dDetector=(1.0, 1.0), nVoxel=shape_kji,
                   dVoxel=dvoxel, angles=angles, mode=mode, mm_per_unit=mm_per_unit)
        half_v, half_u = base.detector_half_extent()
        if detector_shape is None:
            pixel = min(dvoxel) * base.magnification
            n_v = _round_up(2 * half_v / pixel, DETECTOR_MULTIPLE)
            n_u = _round_up(2 * half_u / pixel, DETECTOR_MULTIPLE)
            return replace(base, nDetector=(n_v, n_u), dDetector=(pixel, pixel))
        n_v, n_u = (int(n) for n in detector_shape)
        return replace(base, nDetector=(n_v, n_u), dDetector=(2 * half_v / n_v, 2 * half_u / n_u))

    def with_detector_binned(self, factors) -> "ConeGeometry":
        """The same scan with a coarser detector: ``factors`` = (rows, cols) pixels per new pixel.
        The physical detector extent is unchanged (the LR detector of a scale-s scan)."""
        by, bx = (int(f) for f in factors)
        n_v, n_u = self.nDetector
        if by < 1 or bx < 1 or n_v % by or n_u % bx:
            raise ValueError(f"detector {self.nDetector} cannot be binned by {(by, bx)}")
        return replace(self, nDetector=(n_v // by, n_u // bx),
                       dDetector=(self.dDetector[0] * by, self.dDetector[1] * bx))

    def of_coarser_grid(self, volume: Volume, scale: Scale) -> "ConeGeometry":
        """This scan of ``volume``, the same extent sampled ``scale`` (IJK) times more coarsely
        (the LR input, or a level between it and this scan's grid): source path, angles and
        detector extent unchanged, the detector binned by :func:`detector_binning`, the voxels
        those of ``volume`` (as :meth:`from_volume` gives them)."""
        own = ConeGeometry.from_volume(volume, n_views=1)
        return replace(self.with_detector_binned(detector_binning(scale)), nVoxel=own.nVoxel, dVoxel=own.dVoxel)

    def with_angles(self, angles) -> "ConeGeometry":
        """The same scan at other view angles (radians)."""
        return replace(self, angles=tuple(float(a) for a in angles))

    # -- derived quantities --------------------------------------------------------------------
    @property
    def n_views(self) -> int:
        return len(self.angles)

    @property
    def magnification(self) -> float:
        """DSD / DSO at the isocentre (1 in parallel mode)."""
        return self.DSD / self.DSO if self.mode == "cone" else 1.0

    @property
    def half_extent(self) -> np.ndarray:
        """Half side of the volume box, (z, y, x) scene units."""
        return np.asarray(self.nVoxel) * np.asarray(self.dVoxel) / 2.0

    @property
    def radius(self) -> float:
        """Radius of the volume's footprint in the rotation (x, y) plane, about the z axis."""
        hz, hy, hx = self.half_extent
        oz, oy, ox = self.offOrigin
        return float(math.hypot(abs(hx) + abs(ox), abs(hy) + abs(oy)))

    def detector_half_extent(self) -> tuple[float, float]:
        """Half size (v, u) of a detector that sees the whole volume from every angle."""
        r = self.radius
        hz = self.half_extent[0] + abs(self.offOrigin[0])
        if self.mode == "parallel":
            return float(hz), float(r)
        half_u = self.DSD * r / math.sqrt(self.DSO**2 - r**2)
        half_v = self.DSD * hz / (self.DSO - r)
        return float(half_v), float(half_u)

    def voxel_centres(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """Scene (x, y, z) of every voxel centre, shape [K, J, I, 3]."""
        axes = [(torch.arange(n, device=device, dtype=dtype) - (n - 1) / 2) * d + o
                for n, d, o in zip(self.nVoxel, self.dVoxel, self.offOrigin)]
        z, y, x = torch.meshgrid(*axes, indexing="ij")
        return torch.stack([x, y, z], dim=-1)

    def view_frames(self, device=None, dtype=torch.float32):
        """Per view: source position (cone) or ray direction (parallel), detector centre and the
        unit u and v axes, each [V, 3] in scene (x, y, z)."""
        theta = torch.as_tensor(self.angles, device=device, dtype=torch.float64)
        c, s = torch.cos(theta), torch.sin(theta)
        zero, one = torch.zeros_like(c), torch.ones_like(c)
        toward_source = torch.stack([c, s, zero], -1)
        e_u = torch.stack([-s, c, zero], -1)
        e_v = torch.stack([zero, zero, one], -1)
        if self.mode == "cone":
            source = self.DSO * toward_source
            centre = -(self.DSD - self.DSO) * toward_source
        else:
            source = toward_source  # unused position; the direction is -toward_source
            centre = torch.zeros_like(toward_source)
        cast = lambda t: t.to(dtype)
        return cast(source), cast(centre), cast(e_u), cast(e_v), cast(toward_source)

    def detector_uv(self, device=None, dtype=torch.float32):
        """Detector coordinates (v of each row [nv], u of each column [nu]) in scene units."""
        (n_v, n_u), (d_v, d_u) = self.nDetector, self.dDetector
        v = (torch.arange(n_v, device=device, dtype=dtype) - (n_v - 1) / 2) * d_v
        u = (torch.arange(n_u, device=device, dtype=dtype) - (n_u - 1) / 2) * d_u
        return v, u

    def rays(self, views=None, device=None, dtype=torch.float32):
        """Ray origins and unit directions for every pixel of the chosen views (all by default):
        two tensors [V, nv, nu, 3] (scene x, y, z). Cone: the origin is the source. Parallel:
        the origin is the pixel centre moved back by ``DSO`` along the ray."""
        source, centre, e_u, e_v, toward = self.view_frames(device, torch.float64)
        if views is not None:
            idx = torch.as_tensor(views, device=device, dtype=torch.long)
            source, centre, e_u, e_v, toward = (t[idx] for t in (source, centre, e_u, e_v, toward))
        v, u = self.detector_uv(device, torch.float64)
        pixel = (centre[:, None, None, :] + u[None, None, :, None] * e_u[:, None, None, :]
                 + v[None, :, None, None] * e_v[:, None, None, :])
        if self.mode == "cone":
            origin = source[:, None, None, :].expand_as(pixel)
            direction = pixel - origin
            direction = direction / direction.norm(dim=-1, keepdim=True)
        else:
            direction = (-toward)[:, None, None, :].expand_as(pixel)
            origin = pixel + self.DSO * toward[:, None, None, :]
        return origin.to(dtype).contiguous(), direction.to(dtype).contiguous()


def scan_geometries(lr: Volume, hr: Volume, scale: Scale, n_views: int) -> tuple[ConeGeometry, ConeGeometry]:
    """The pipeline's scan: the HR scan of ``hr``'s grid (:meth:`ConeGeometry.from_volume`,
    ``n_views`` views) and the LR scan of ``lr``'s grid, ``scale`` (IJK) coarser
    (:meth:`ConeGeometry.of_coarser_grid`)."""
    geometry = ConeGeometry.from_volume(hr, n_views=n_views)
    return geometry, geometry.of_coarser_grid(lr, scale)


def _round_up(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple - 1e-9)) * multiple
