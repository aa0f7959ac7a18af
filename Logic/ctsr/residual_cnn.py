"""The small residual CNN that every learned prior of ``ctsr`` shares: the network
(:class:`ResidualCNN`), its training on one (source, target) pair (:func:`fit_residual_network`)
and its inference in tiles with a halo (:func:`apply_in_tiles`).

Arrays are KJI; the network sees them in network units (HU / :data:`HU_SCALE` for volumes,
the projection priors' own units for projections). Training is a fixed number of Adam steps on
random patches (bounded time, whatever the input size); inference runs in tiles whose halo is
the network's receptive field (memory bounded, no seams, time linear in the output size). On
CUDA the convolutions run in full float32 with cuDNN's deterministic algorithms
(:func:`exact_convolutions`): a seed gives the same result on a GPU to 0.01 HU, and what the
CPU gives to rounding. The priors that use it: :mod:`ctsr.internal_prior` (the scan teaching
itself in the volume), :mod:`ctsr.external_prior` (pretrained on other scans),
:mod:`ctsr.internal_projection_prior` and :mod:`ctsr.external_projection_prior`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .progress import Progress

#: HU per network unit (the network's inputs and outputs are HU / HU_SCALE).
HU_SCALE = 1000.0
#: Voxels per inference tile, its halo included (bounds the activations: about 70 bytes each).
TILE_VOXELS = 2_000_000


@dataclass(frozen=True)
class TrainingSettings:
    """steps: Adam steps; patch: edge of the training patches (voxels of the pair); batch:
    patches per step; channels, layers: the CNN's width and depth; learning_rate: Adam's,
    cosine-decayed to a tenth."""

    steps: int = 300
    patch: int = 24
    batch: int = 4
    channels: int = 16
    layers: int = 6
    learning_rate: float = 1e-3


class ResidualCNN(nn.Module):
    """``layers`` convolutions (``kernel`` per KJI axis, replicate padding) with leaky ReLUs;
    maps an (N, inputs, K, J, I) tensor to the (N, 1, K, J, I) residual to add to its first
    channel (the others, if any, condition it). The last layer starts at zero, so the untrained
    network changes nothing."""

    def __init__(self, channels: int = 16, layers: int = 6, kernel=(3, 3, 3), inputs: int = 1):
        super().__init__()
        widths = [inputs] + [channels] * (layers - 1) + [1]
        padding = tuple(k // 2 for k in kernel)
        convolutions = [nn.Conv3d(a, b, kernel, padding=padding, padding_mode="replicate")
                        for a, b in zip(widths, widths[1:])]
        nn.init.zeros_(convolutions[-1].weight)
        nn.init.zeros_(convolutions[-1].bias)
        body = []
        for convolution in convolutions[:-1]:
            body += [convolution, nn.LeakyReLU(0.1)]
        self.body = nn.Sequential(*body, convolutions[-1])
        #: Voxels of context along K, J, I that one output voxel depends on, each side.
        self.halo = tuple(layers * p for p in padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def exact_convolutions():
    """A context in which cuDNN convolutions run in float32 (no TF32) with its deterministic
    algorithms and no autotuning; it changes nothing on the CPU."""
    return torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False)


def fit_residual_network(source: np.ndarray, target: np.ndarray, kernel: tuple[int, int, int],
                         settings: TrainingSettings, seed: int, device: str | torch.device,
                         progress: Progress, stage: str, loss_unit: float = 1.0,
                         initial: ResidualCNN | None = None,
                         activity: str = "learning from the scan itself",
                         permute_axes: bool = False) -> ResidualCNN:
    """A :class:`ResidualCNN` with ``kernel`` (KJI) trained so that ``source + f(source)``
    matches ``target`` (same KJI shape, network units; ``source`` may also be (C, K, J, I):
    channel 0 is the image the residual adds to, the others condition the network, and the
    residual is ``target - source[0]``): ``settings.steps`` Adam steps on random
    patches with flips, cosine learning rate. With a 2D kernel (``(1, 3, 3)``) the patches are
    single planes of the first axis (more, thinner patches). Progress events under ``stage``
    report the loss times ``loss_unit`` and ``activity``. With ``initial`` (a network of the same settings and
    kernel) training starts from a copy of its weights (fine-tuning; ``initial`` is left as it
    is; ``benchmarks/external_init_bench.py``). With ``permute_axes`` (3D kernel, cubic patches)
    each batch also sees its three axes in one of the six orders, drawn at random (pretraining
    on other scans: the network then learns no axis-specific anatomy). Returns the network in
    eval mode on ``device``."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    source = source if source.ndim == 4 else source[None]
    inputs = source.shape[0]
    source_t = torch.from_numpy(np.ascontiguousarray(source, dtype=np.float32)).to(device)
    residual_t = torch.from_numpy(np.ascontiguousarray(target - source[0], dtype=np.float32)).to(device)[None]
    network = ResidualCNN(settings.channels, settings.layers, kernel, inputs).to(device)
    if initial is not None:
        network.load_state_dict(initial.state_dict())
    optimizer = torch.optim.Adam(network.parameters(), lr=settings.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.steps, settings.learning_rate / 10)
    edges = [1 if (k == 1) else min(settings.patch, n) for k, n in zip(kernel, source.shape[1:])]
    batch = settings.batch * (settings.patch if kernel[0] == 1 else 1)
    permute = permute_axes and kernel[0] != 1 and len(set(edges)) == 1
    every = max(1, settings.steps // 50)
    with exact_convolutions():
        for step in range(settings.steps):
            corners = [torch.randint(0, n - e + 1, (batch,), generator=generator).tolist()
                       for n, e in zip(source.shape[1:], edges)]
            pieces = [(a[:, k:k + edges[0], j:j + edges[1], i:i + edges[2]])
                      for k, j, i in zip(*corners) for a in (source_t, residual_t)]
            pair = torch.cat(pieces).view(batch, inputs + 1, *edges)
            for axis in (3, 4) if kernel[0] == 1 else (2, 3, 4):
                if torch.rand((), generator=generator) < 0.5:
                    pair = pair.flip(axis)
            if permute:
                pair = pair.permute(0, 1, *(torch.randperm(3, generator=generator) + 2).tolist())
            loss = torch.mean((network(pair[:, :inputs]) - pair[:, inputs:]) ** 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            if step % every == 0 or step == settings.steps - 1:
                progress.update(stage, (step + 1) / settings.steps,
                                f"{activity}: step {step + 1}/{settings.steps}",
                                iteration=step + 1, loss=round(loss.item() * loss_unit, 3))
    return network.eval()


def computed_extent(n: int, edge: int, halo: int) -> int:
    """Voxels along an axis of ``n`` that tiles of ``edge`` compute with their ``halo`` (the
    outer tiles have it on their inner side only)."""
    return sum(min(n, start + edge + halo) - max(0, start - halo) for start in range(0, n, edge))


def tile_shape(shape: tuple[int, int, int], halo: tuple[int, int, int], budget: int | None = None
               ) -> tuple[int, int, int]:
    """The edges (KJI) of the tiles :func:`apply_in_tiles` cuts a volume of ``shape`` into: with
    its ``halo`` (per axis, each side) a tile holds at most ``budget`` voxels
    (:data:`TILE_VOXELS`; fewer is impossible once every edge is 1). From the whole volume, the
    edge halved at each step is the one whose halving computes the fewest voxels over all tiles
    (a halo costs each tile twice its width along its axis, so axes without one are cut first):
    a 96 x 1024 x 1024 volume (x2 of a 512 x 512 CT) under a 3D network of halo 6 is cut into
    tiles of 96 x 128 x 128, which compute 1.17 times its voxels (:func:`computed_extent`), where
    slabs of whole planes (one slice each, with 6 on either side) computed 12.6 times them."""
    budget = TILE_VOXELS if budget is None else budget
    padded = lambda t: math.prod(min(n, e + 2 * h) for n, e, h in zip(shape, t, halo))
    computed = lambda t: math.prod(computed_extent(n, e, h) for n, e, h in zip(shape, t, halo))
    tile = tuple(shape)
    while padded(tile) > budget and max(tile) > 1:
        halvings = [tile[:a] + (math.ceil(tile[a] / 2),) + tile[a + 1:] for a in range(3) if tile[a] > 1]
        tile = min(halvings, key=lambda t: (computed(t), padded(t)))
    return tile


@torch.no_grad()
def apply_in_tiles(network: ResidualCNN, array: np.ndarray, device: torch.device, progress: Progress,
                   unit: float = HU_SCALE, stage: str = "internal prior") -> np.ndarray:
    """``array + unit * network(array / unit)`` (KJI; HU with the default ``unit``), tile by
    tile (:func:`tile_shape`), each computed with a halo of the network's receptive field (the
    tiles join without seams: the same numbers as one pass over the whole array). A (C, K, J, I)
    ``array`` is the conditioned form of :func:`fit_residual_network`: the residual adds to
    channel 0, and the result is (K, J, I)."""
    array = array if array.ndim == 4 else array[None]
    shape = array.shape[1:]
    out = np.empty(shape, dtype=np.float32)
    tile = tile_shape(shape, network.halo)
    corners = list(itertools.product(*(range(0, n, e) for n, e in zip(shape, tile))))
    for done, corner in enumerate(corners, start=1):
        kept = tuple(slice(c, min(n, c + e)) for c, n, e in zip(corner, shape, tile))
        grown = tuple(slice(max(0, s.start - h), min(n, s.stop + h)) for s, n, h in zip(kept, shape, network.halo))
        x = torch.from_numpy(np.ascontiguousarray(array[(slice(None),) + grown], dtype=np.float32) / unit).to(device)
        with exact_convolutions():
            y = network(x[None])[0, 0].cpu().numpy() * unit
        inner = tuple(slice(k.start - g.start, k.stop - g.start) for k, g in zip(kept, grown))
        out[kept] = array[(0,) + kept] + y[inner]
        progress.update(stage, done / len(corners), f"applying the learned prior: tile {done}/{len(corners)}")
    return out
