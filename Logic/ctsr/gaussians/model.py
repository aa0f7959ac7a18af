"""The signed 3D Gaussian model of a residual volume.

Each Gaussian ``i`` has a mean ``m_i`` (scene x, y, z; see :mod:`ctsr.geometry`), log standard
deviations along its principal axes (scene units), a unit quaternion (w, x, y, z) rotating
those axes, and a raw density ``z_i``. Its density is ``rho_i = unit * PReLU(z_i)``:
``z`` if ``z >= 0`` else ``gamma * z``, with ``gamma = softplus(gamma_raw) > 0`` shared and
learnable; ``unit`` (:data:`DENSITY_UNIT`, normalized intensity per unit of ``z``) keeps ``z``
of order one. The Gaussian's value at ``x`` is ``rho_i * exp(-(x - m_i)^T P_i (x - m_i) / 2)``
with precision ``P_i = R_i diag(1 / s_i^2) R_i^T``, in normalized intensity (HU window -> [0, 1]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: Normalized intensity of one unit of raw density (0.01 is ~41 HU in the default window).
DENSITY_UNIT = 0.01


@dataclass
class SignedGaussians:
    """Parameters as leaf tensors (``requires_grad`` set by the fit)."""

    means: torch.Tensor        # [N, 3] scene x, y, z
    log_scales: torch.Tensor   # [N, 3] log of the standard deviations (scene units)
    quats: torch.Tensor        # [N, 4] (w, x, y, z), normalized on use
    raw_density: torch.Tensor  # [N]
    gamma_raw: torch.Tensor    # [] softplus(gamma_raw) = negative slope

    @classmethod
    def isotropic(cls, means, sigma, density, gamma: float = 0.1) -> "SignedGaussians":
        """Gaussians of standard deviation ``sigma`` (scene units, scalar or [N]) and density
        ``density`` ([N], normalized intensity, signed)."""
        means = torch.as_tensor(means)
        n, dtype, device = means.shape[0], means.dtype, means.device
        sigma = torch.as_tensor(sigma, dtype=dtype, device=device).expand(n)
        quats = torch.zeros(n, 4, dtype=dtype, device=device)
        quats[:, 0] = 1
        gamma_raw = torch.tensor(math.log(math.expm1(gamma)), dtype=dtype, device=device)
        raw = raw_from_density(torch.as_tensor(density, dtype=dtype, device=device), gamma)
        return cls(means.clone(), sigma.log()[:, None].repeat(1, 3), quats, raw, gamma_raw)

    def __len__(self) -> int:
        return self.means.shape[0]

    def parameters(self) -> list[torch.Tensor]:
        return [self.means, self.log_scales, self.quats, self.raw_density, self.gamma_raw]

    @property
    def gamma(self) -> torch.Tensor:
        return F.softplus(self.gamma_raw)

    def density(self) -> torch.Tensor:
        """Signed density ``rho`` [N] (normalized intensity)."""
        z = self.raw_density
        return DENSITY_UNIT * torch.where(z >= 0, z, self.gamma * z)

    def scales(self) -> torch.Tensor:
        return self.log_scales.exp()

    def rotations(self) -> torch.Tensor:
        """[N, 3, 3] rotation matrices from the normalized quaternions."""
        w, x, y, z = F.normalize(self.quats, dim=-1).unbind(-1)
        return torch.stack([
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ], -1).reshape(-1, 3, 3)

    def precisions(self) -> torch.Tensor:
        """[N, 3, 3] inverse covariances ``R diag(1 / s^2) R^T`` (1 / scene units^2)."""
        rot = self.rotations()
        return (rot * self.log_scales.mul(-2).exp()[:, None, :]) @ rot.transpose(1, 2)

    def detached(self) -> "SignedGaussians":
        return SignedGaussians(*(p.detach().clone() for p in self.parameters()))

    def select(self, keep: torch.Tensor) -> "SignedGaussians":
        """The Gaussians where ``keep`` (bool [N] or indices) holds, detached."""
        return SignedGaussians(self.means.detach()[keep], self.log_scales.detach()[keep],
                               self.quats.detach()[keep], self.raw_density.detach()[keep],
                               self.gamma_raw.detach().clone())


def raw_from_density(density: torch.Tensor, gamma: float) -> torch.Tensor:
    """Invert ``density = DENSITY_UNIT * PReLU(raw)`` for a given slope ``gamma``."""
    z = density / DENSITY_UNIT
    return torch.where(z >= 0, z, z / gamma)
