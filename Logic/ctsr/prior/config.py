"""Model size presets and the training configuration: plain data, no heavy imports (the
``ctsr`` command line builds its parser from them)."""

from __future__ import annotations

from dataclasses import dataclass, field

# Size presets. No attention blocks in the CPU presets, so the network is fully convolutional
# and runs at any detector size divisible by 2 ** (levels - 1) (the sampler pads to that).
PRESETS = {
    # ~1.1 M parameters, 4 MB: trains on 2 CPU cores in hours; the shipped default.
    "tiny": dict(block_out_channels=(32, 64, 64), layers_per_block=1,
                 down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3,
                 norm_num_groups=8),
    # ~3.6 M parameters: a CPU with more cores, or a small GPU.
    "small": dict(block_out_channels=(32, 64, 128), layers_per_block=2,
                  down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3,
                  norm_num_groups=8),
    # ~27 M parameters with self-attention at the two coarsest levels: for GPUs.
    "base": dict(block_out_channels=(64, 128, 256, 256), layers_per_block=2,
                 down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                 up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
                 norm_num_groups=32),
}


@dataclass
class TrainConfig:
    """Everything that defines a training run (recorded in the model's ``ctsr_prior.json``)."""

    ct_dir: str
    xray_dir: str | None
    preset: str = "tiny"
    steps: int = 4000
    batch_size: int = 16
    crop: int = 64
    learning_rate: float = 5e-4
    warmup: int = 200
    ema_decay: float = 0.999
    holdout: list = field(default_factory=lambda: ["chest_cta_1.5mm"])
    n_views: int = 40
    xray_fraction: float = 0.25
    seed: int = 0
    checkpoint_every: int = 250
