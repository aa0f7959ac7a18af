"""The model card (``README.md`` of a prior folder), rendered from its ``ctsr_prior.json``.

The benchmark (``benchmarks/prior_bench.py``) adds a ``quality`` entry to the metadata, a list
of table rows; the card is re-rendered after it, so the card never states a number that the
metadata does not hold.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import PRESETS
from .model import METADATA_FILE


def render_model_card(metadata: dict, name: str) -> str:
    t = metadata.get("training", {})
    d = metadata.get("data", {})
    lines = [
        f"# {name}: X-ray projection prior (unconditional DDPM)",
        "",
        "A diffusers `UNet2DModel` (one channel, images min-max normalized to [-1, 1] per image) that",
        "predicts the noise of a DDPM with T = 1000 and linear betas 1e-4 to 0.02. It is the",
        "paper's projection prior in the CTSuperResolution extension (DDNM with per-projection",
        "adaptive sampling, `ctsr.prior.upsample_projections`): it runs only when asked for",
        "(`ctsr upsample --method standard --prior shipped`, or a folder of another such model);",
        "by default the NAB-GS presets use the internal projection prior, which beats `P_up`",
        "where this model does not (`benchmarks/projection_prior.md`).",
        "",
        "## Model",
        f"- preset `{t.get('preset')}`, {metadata.get('parameters', 0) / 1e6:.2f} M parameters, "
        f"weights `diffusion_pytorch_model.safetensors` (EMA, decay {t.get('ema_decay')})",
        f"- trained on {t.get('crop')} x {t.get('crop')} crops; {_size_note(t.get('preset'))}",
        "",
        "## Data",
        f"- DRRs of {', '.join(d.get('ct_volumes', [])) or 'no CT'} ({d.get('drr_images', 0)} images: "
        f"{t.get('n_views')} cone-beam views over 180 degrees per volume, detector binned 1 and 2, "
        "CT clipped to [-1024, 3071] HU and scaled to [0, 1] before projection)",
        f"- radiographs: {', '.join(d.get('radiographs', [])) or 'none'} ({d.get('radiograph_images', 0)} "
        f"images, MONOCHROME1 inverted; {t.get('xray_fraction')} of each batch)",
        f"- held out for evaluation: {', '.join(d.get('held_out', [])) or 'none'}",
        f"- sources and licences: {d.get('sources') or 'not recorded'}",
        "",
        "## Training",
        f"- {metadata.get('train_steps')} steps of batch {t.get('batch_size')}, AdamW lr "
        f"{t.get('learning_rate')} (warm-up {t.get('warmup')}), seed {t.get('seed')}",
        f"- {metadata.get('train_hours')} hours of training loop on {metadata.get('devices')} (DRR "
        f"generation not counted); loss (mean of the last 50 steps) {metadata.get('final_loss')}",
        f"- reproduce: `{metadata.get('command', 'ctsr prior train ...')}`",
        "",
        "## Measured quality",
    ]
    quality = metadata.get("quality")
    if quality:
        lines += [quality.get("description", ""), "", quality.get("table", ""), "",
                  f"Command: `{quality.get('command', '')}`"]
    else:
        lines.append("Not measured yet: run `python benchmarks/prior_bench.py`.")
    lines += ["", "## Limits",
              "- Trained on a handful of scans on CPU: a small prior; see the measured table for where it",
              "  helps and where it does not. Not a medical device.",
              "- Evaluated on one held-out scan only, not leave-one-scan-out: with five CT volumes",
              "  here, each fold would train on four, and this model already does not beat `P_up` on",
              "  the one it never saw."]
    return "\n".join(lines) + "\n"


def write_model_card(model_dir: Path) -> Path:
    """(Re)write ``README.md`` of ``model_dir`` from its metadata; returns its path."""
    model_dir = Path(model_dir)
    metadata = json.loads((model_dir / METADATA_FILE).read_text())
    path = model_dir / "README.md"
    path.write_text(render_model_card(metadata, model_dir.name))
    return path


def _size_note(preset: str | None) -> str:
    """What detector sizes a network of ``preset`` (:data:`ctsr.prior.config.PRESETS`) runs at."""
    blocks = PRESETS.get(preset, {})
    multiple = 2 ** (len(blocks.get("block_out_channels", (0, 0, 0))) - 1)
    attention = any("Attn" in block for block in blocks.get("down_block_types", ()))
    kind = "with self-attention, it still runs" if attention else "fully convolutional, so it runs"
    return f"{kind} at other detector sizes (multiples of {multiple}; the sampler pads)"
