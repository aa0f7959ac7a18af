"""Training: a few real optimizer steps on DRRs of a small synthetic CT plus a PNG radiograph;
an interrupted run resumed from its checkpoint ends with exactly the weights of an
uninterrupted one; the exported folder loads and the CLI reports bad input in one sentence."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from safetensors.torch import load_file

from ctsr.cli import main
from ctsr.io import write_volume
from ctsr.prior import TrainConfig, load_prior
from ctsr.prior.train import train
from ctsr.volume import Volume


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "ct").mkdir()
    (root / "xray").mkdir()
    k, j, i = np.mgrid[:20, :20, :20] - 9.5
    hu = np.where(k**2 + j**2 + (i / 1.5) ** 2 < 7**2, 400.0, -1000.0).astype(np.float32)
    hu[8:12, 8:12, :] = 1500.0
    write_volume(Volume.from_spacing(hu, spacing=(2.0, 2.0, 2.0)), root / "ct" / "phantom.nrrd")
    write_volume(Volume.from_spacing(hu, spacing=(2.0, 2.0, 2.0)), root / "ct" / "heldout.nrrd")
    xray = (np.random.default_rng(0).random((300, 280)) * 200).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(xray), str(root / "xray" / "film.png"))
    return root


def _config(data, steps):
    return TrainConfig(ct_dir=str(data / "ct"), xray_dir=str(data / "xray"), steps=steps, batch_size=2,
                       crop=16, n_views=3, holdout=["heldout"], checkpoint_every=2, warmup=2)


def test_resumed_run_equals_uninterrupted_run(data, tmp_path):
    straight = train(_config(data, 3), tmp_path / "a")
    train(_config(data, 2), tmp_path / "b", tmp_path / "b_ckpt")
    resumed = train(_config(data, 3), tmp_path / "b", tmp_path / "b_ckpt")
    assert straight["train_steps"] == resumed["train_steps"] == 3
    assert straight["data"]["ct_volumes"] == ["phantom.nrrd"] and straight["data"]["radiographs"] == ["film.png"]
    a = load_file(tmp_path / "a" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "b" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    fresh = load_file(tmp_path / "a" / "checkpoint" / "unet.safetensors")
    assert any(not torch.equal(fresh[key], a[key]) for key in a)  # exported EMA != raw weights
    assert load_prior(tmp_path / "a").metadata["train_steps"] == 3


def test_cli_train_rejects_a_missing_folder(tmp_path, capsys):
    code = main(["prior", "train", "--ct", str(tmp_path / "nope"), "--out", str(tmp_path / "m"), "--quiet"])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_card_needs_metadata(tmp_path, capsys):
    assert main(["prior", "card", str(tmp_path)]) == 2


def test_a_checkpoint_of_the_pickling_version_is_refused_in_one_sentence(tmp_path):
    """Checkpoints once kept the optimizer state with torch.save (a pickle); resuming one is a
    clear refusal, never an unpickling."""
    import json

    from ctsr.errors import UserError
    from ctsr.prior.train import CHECKPOINT_STATE, _load_checkpoint

    (tmp_path / CHECKPOINT_STATE).write_text(json.dumps({"step": 2, "ema_step": 2}))
    (tmp_path / "optimizer.pt").write_bytes(b"\x80\x04")  # never read
    with pytest.raises(UserError, match="older version") as error:
        _load_checkpoint(tmp_path, None, None, None)
    assert "\n" not in str(error.value)
