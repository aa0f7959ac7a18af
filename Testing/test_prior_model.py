"""Saving and offline loading of priors, with one clear error for a bad folder; the shipped one."""

import json
import shutil

import pytest
import torch

from ctsr.errors import UserError
from ctsr.prior import load_prior, make_unet, save_prior
from ctsr.prior.card import write_model_card
from ctsr.prior.model import WEIGHTS_FILE


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prior") / "m"
    torch.manual_seed(0)
    unet = make_unet("tiny", 32)
    save_prior(unet, folder, {"format": "ctsr-prior/1", "train_steps": 7, "training": {"preset": "tiny"}})
    return folder, unet


def test_round_trip_gives_the_same_network(saved):
    folder, unet = saved
    prior = load_prior(folder)
    x, t = torch.randn(2, 1, 32, 32), torch.tensor([10, 500])
    with torch.no_grad():
        assert torch.allclose(prior.unet(x, t).sample, unet.eval()(x, t).sample, atol=1e-6)
    assert prior.metadata["train_steps"] == 7
    assert prior.alphas_cumprod.shape == (1000,)
    assert abs(float(prior.alphas_cumprod[0]) - (1 - 1e-4)) < 1e-9  # linear betas from 1e-4
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in folder.iterdir())  # safetensors only


def test_card_states_the_metadata(saved):
    folder, _ = saved
    text = write_model_card(folder).read_text()
    assert "7 steps" in text and "Not measured yet" in text


@pytest.mark.parametrize("damage", ["missing", "no_weights", "corrupt_weights", "bad_config", "two_channels"])
def test_bad_folder_is_one_user_error(saved, tmp_path, damage):
    folder = tmp_path / "m"
    if damage != "missing":
        shutil.copytree(saved[0], folder)
    if damage == "no_weights":
        (folder / WEIGHTS_FILE).unlink()
    elif damage == "corrupt_weights":
        (folder / WEIGHTS_FILE).write_bytes(b"\x00" * 100)
    elif damage == "bad_config":
        (folder / "config.json").write_text("{not json")
    elif damage == "two_channels":
        config = json.loads((folder / "config.json").read_text())
        config["in_channels"] = 2
        (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError) as error:
        load_prior(folder)
    assert str(folder) in str(error.value) and "\n" not in str(error.value)

