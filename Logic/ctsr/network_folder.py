"""A folder that holds one pretrained network: ``config.json`` (what the network is and how it
was made), ``model.safetensors`` (its weights) and a model card ``README.md``.

One room for how the pretrained priors (:mod:`ctsr.external_prior`,
:mod:`ctsr.external_projection_prior`) are stored: written whole or not at all (into a
sibling ``.partial`` folder, which then replaces the target), never over a folder that holds
something else, and read offline from safetensors only (never unpickled). Every way a folder
can be wrong is one :class:`ctsr.errors.UserError` sentence that names the folder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import UserError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"


@dataclass(frozen=True)
class PretrainedNetwork:
    """A network loaded from such a folder (in eval mode), the IJK scale it was pretrained for,
    its name (the folder's path, or the shipped one's name) and its config."""

    network: torch.nn.Module
    scale: tuple[int, int, int]
    name: str
    config: dict


def folder_format(folder: Path) -> str | None:
    """The format that ``folder``'s ``config.json`` says it holds, or None where it has no
    readable one."""
    try:
        fmt = json.loads((Path(folder) / CONFIG_FILE).read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        return None
    return fmt if isinstance(fmt, str) else None


def holds_network(folder: Path, fmt: str) -> bool:
    """``folder`` is empty or was written by :func:`write_network_folder` with format ``fmt``."""
    if folder.is_dir() and not any(folder.iterdir()):
        return True
    return folder_format(folder) == fmt


def write_network_folder(network: torch.nn.Module, folder, config: dict, card: str, what: str) -> Path:
    """Write ``network``'s weights, ``config`` (which must say its ``format``) and ``card`` to
    ``folder``, whole or not at all; refused when ``folder`` exists and holds something else
    than a ``what`` of the same format."""
    from safetensors.torch import save_file

    folder = Path(folder)
    if folder.exists() and not holds_network(folder, config["format"]):
        raise UserError(f"{folder} exists and is not a {what} folder; give a new folder.")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()},
                  partial / WEIGHTS_FILE)
        (partial / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        (partial / CARD_FILE).write_text(card)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def read_network_config(folder: Path, fmt: str, what: str) -> dict:
    """The ``config.json`` of ``folder``, checked to be of format ``fmt`` and to sit beside its
    weights."""
    if not folder.is_dir():
        raise UserError(f"the {what} folder {folder} does not exist.")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise UserError(f"the {what} folder {folder} has no {name}.")
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except ValueError:
        raise UserError(f"{folder / CONFIG_FILE} is not valid JSON.") from None
    if not isinstance(config, dict) or config.get("format") != fmt:
        raise UserError(f"{folder} does not hold a {what} ({CONFIG_FILE} is not a config of format {fmt}).")
    return config


def load_network_weights(network: torch.nn.Module, folder: Path, what: str) -> None:
    """Load ``folder``'s safetensors weights into ``network`` (exactly its parameters)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        network.load_state_dict(load_file(folder / WEIGHTS_FILE))
    except (SafetensorError, RuntimeError, OSError) as error:
        reason = str(error).splitlines()[0][:120] if str(error) else "corrupt file"
        raise UserError(f"the weights in {folder / WEIGHTS_FILE} are not those of a {what} "
                        f"({type(error).__name__}: {reason}).") from None
