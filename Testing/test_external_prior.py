"""The external start of the internal prior: its pairs are ``fast`` of the LR model's simulated
LR against the HR scan, its folder round-trips through safetensors, anything else is refused
in one sentence, and ``balanced`` fine-tunes from it only where its pair is at that network's scale."""

import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from ctsr import external_prior as ep
from ctsr import internal_prior as ip
from ctsr import residual_cnn as rc
from ctsr.errors import UserError
from ctsr.fidelity import enforce_lr_consistency
from ctsr.io import write_volume
from ctsr.lrestimate import resolve_lr_model
from ctsr.lrmodel import LRModel, simulate_lr
from ctsr.network_folder import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE
from ctsr.resources import resources_dir
from ctsr.upsampling import upsample
from ctsr.volume import Volume

TINY = ip.InternalPriorSettings(steps=4, patch=8, batch=2, channels=4, layers=3)
FEW = ep.PretrainSettings(steps=4, models_per_scan=1)


def _parameters(network):
    return torch.cat([p.detach().flatten() for p in network.parameters()])


@pytest.fixture(scope="module")
def tiny_folder(sample, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrained") / "tiny"
    network = ep.pretrain([sample], FEW, TINY, seed=0)
    return ep.save_external_prior(network, folder, FEW, {"name": "tiny", "scans": ["sample"]}), network


def test_pairs_are_fast_of_the_simulated_lr_against_the_hr_stacked_along_k(sample):
    """Two volumes of different in-plane shapes, two random LR models each: K adds up, J and I
    are the smallest, and the first block is ``fast`` under the estimated model of the first
    random LR (the same random draws), in HU / HU_SCALE."""
    other = Volume(sample.array[:40, :56, :48], sample.ijk_to_ras)
    settings = ep.PretrainSettings(models_per_scan=2)
    source, target = ep.pretraining_pairs([sample, other], settings, seed=3)
    assert source.shape == target.shape == (2 * 64 + 2 * 40, 56, 48)
    rng = np.random.default_rng(3)
    lr = simulate_lr(sample, (2, 2, 2), ep.random_lr_model(rng, settings), seed=int(rng.integers(1 << 30)))
    fast = ip.consistent_upsample(lr, (2, 2, 2), resolve_lr_model(lr, (2, 2, 2))).array
    np.testing.assert_allclose(source[:64], fast[:, :56, :48] / rc.HU_SCALE, atol=1e-6)
    np.testing.assert_allclose(target[:64], sample.array[:, :56, :48] / rc.HU_SCALE, atol=1e-6)
    assert not np.allclose(source[:64], source[64:128])  # another LR model


def test_random_lr_models_cover_the_stated_distribution():
    rng = np.random.default_rng(0)
    models = [ep.random_lr_model(rng) for _ in range(400)]
    kinds = [m.profiles[0].kind for m in models]
    sigmas = [m.profiles[0].value for m in models if m.profiles[0].kind == "gauss"]
    assert 0.15 < kinds.count("box") / len(models) < 0.35
    assert 0.4 <= min(sigmas) and max(sigmas) <= 1.6
    assert all(0 <= m.noise_hu <= 30 for m in models)


def test_a_saved_folder_loads_back_the_same_network(tiny_folder):
    folder, network = tiny_folder
    loaded = ep.load_external_prior(folder, TINY)
    assert torch.equal(_parameters(loaded.network), _parameters(network))
    assert loaded.scale == (2, 2, 2) and loaded.name == str(folder)
    assert loaded.config["scans"] == ["sample"] and loaded.config["pretraining"]["steps"] == FEW.steps
    assert "Data" in (folder / CARD_FILE).read_text()


def _corrupt(folder, how):
    if how == "missing folder":
        shutil.rmtree(folder)
    elif how == "no weights":
        (folder / WEIGHTS_FILE).unlink()
    elif how == "config not JSON":
        (folder / CONFIG_FILE).write_text("{not json")
    elif how == "another format":
        (folder / CONFIG_FILE).write_text(json.dumps({"format": "diffusers"}))
    elif how == "config without its scale":
        config = json.loads((folder / CONFIG_FILE).read_text())
        del config["pretraining"]
        (folder / CONFIG_FILE).write_text(json.dumps(config))
    elif how == "other units":  # same shapes, so the weights alone would load
        config = json.loads((folder / CONFIG_FILE).read_text())
        config["hu_scale"] = 100.0
        (folder / CONFIG_FILE).write_text(json.dumps(config))
    elif how == "diffusion weights":
        # the shipped diffusion prior's weights (by path: importing diffusers here would import
        # Triton outside its interpreter before the kernel tests)
        shutil.copy(resources_dir() / "Models" / "xray-ddpm-tiny" / "diffusion_pytorch_model.safetensors",
                    folder / WEIGHTS_FILE)
    elif how == "truncated weights":
        data = (folder / WEIGHTS_FILE).read_bytes()
        (folder / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    elif how == "pickle":
        torch.save({"x": torch.zeros(1)}, folder / WEIGHTS_FILE)


@pytest.mark.parametrize("how", ["missing folder", "no weights", "config not JSON", "another format",
                                 "config without its scale", "other units",
                                 "diffusion weights", "truncated weights", "pickle"])
def test_a_folder_that_is_not_a_pretrained_prior_is_one_sentence(tiny_folder, tmp_path, how):
    folder = tmp_path / "copy"
    shutil.copytree(tiny_folder[0], folder)
    _corrupt(folder, how)
    with pytest.raises(UserError) as error:
        ep.load_external_prior(folder, TINY)
    assert "\n" not in str(error.value) and str(folder) in str(error.value)


def test_a_network_of_another_width_is_refused(tiny_folder):
    with pytest.raises(UserError, match="channels"):
        ep.load_external_prior(tiny_folder[0], ip.InternalPriorSettings())


def test_saving_replaces_a_pretrained_folder_but_never_a_foreign_one(tiny_folder, tmp_path):
    folder, network = tiny_folder
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a pretrained volume prior folder"):
        ep.save_external_prior(network, foreign, FEW, {})
    assert (foreign / "notes.txt").read_text() == "keep me" and not (tmp_path / "mine.partial").exists()
    again = tmp_path / "again"
    shutil.copytree(folder, again)
    ep.save_external_prior(rc.ResidualCNN(4, 3), again, FEW, {"name": "zero"})
    assert json.loads((again / CONFIG_FILE).read_text())["name"] == "zero"
    # A write that fails half-way (a config that cannot be JSON, after the weights) leaves the
    # folder as it was and no partial folder behind.
    with pytest.raises(TypeError):
        ep.save_external_prior(rc.ResidualCNN(4, 3), again, FEW, {"name": object()})
    assert json.loads((again / CONFIG_FILE).read_text())["name"] == "zero"
    assert not (tmp_path / "again.partial").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "mine"]


def test_the_shipped_network_loads_offline_and_is_small():
    folder = ep.shipped_dir()
    assert sum(p.stat().st_size for p in folder.iterdir()) < 1e6
    shipped = ep.load_external_prior()
    assert shipped.name == ep.SHIPPED_NAME and shipped.scale == (2, 2, 2)
    assert len(shipped.config["scans"]) >= 2
    assert (folder / CARD_FILE).read_text() == ep.model_card(shipped.config)
    # trained: its last layer (zero when untrained) is not zero
    assert _parameters(shipped.network.body[-1]).abs().max() > 0


def _frozen(settings):
    return dataclasses.replace(settings, learning_rate=0.0)


def test_balanced_fine_tunes_from_it_at_its_scale(sample, tiny_folder):
    """With a zero learning rate the fine-tuned network is the pretrained one: the output is
    ``fast`` plus that network, made consistent; without it, the untrained network adds nothing."""
    external = ep.load_external_prior(tiny_folder[0], TINY)
    model = LRModel.parse("gauss:1,noise:10")
    lr = simulate_lr(sample, (2, 2, 2), model, seed=1)
    out, info = ip.upsample_with_internal_prior(lr, (2, 2, 2), model, _frozen(TINY), external=external)
    assert info["internal_prior"] == f"volume, averaged over 8 flips, {TINY.steps} steps from {external.name}"
    assert info["pretrained"] == external.name
    the_plan = ip.plan(lr, (2, 2, 2), model)
    fast = ip.consistent_upsample(lr, (2, 2, 2), model)
    expected, _ = enforce_lr_consistency(ip.apply(external.network, the_plan, fast), lr, (2, 2, 2), model)
    np.testing.assert_allclose(out.array, expected.array, atol=1e-3)
    zero, info = ip.upsample_with_internal_prior(lr, (2, 2, 2), model, _frozen(TINY))
    assert info["internal_prior"].endswith("from zero")
    assert np.abs(out.array - zero.array).max() > 1.0


def test_at_x4_the_first_of_two_levels_starts_from_it(sample, tiny_folder):
    """A 24^3 LR at x4: the pair is a volume pair at x2, the network's scale."""
    external = ep.load_external_prior(tiny_folder[0], TINY)
    lr = Volume(sample.array[:24, :24, :24], sample.ijk_to_ras)
    model = LRModel.parse("box,noise:10")
    _, info = ip.upsample_with_internal_prior(lr, (4, 4, 4), model, TINY, external=external)
    assert info["internal_prior"].startswith("two levels") and info["internal_prior"].endswith(f"from {external.name}")
    assert info["pretrained"] == external.name


@pytest.mark.parametrize("scale, kind", [((1, 1, 4), "through-plane"), ((4, 4, 1), "two levels")])
def test_elsewhere_it_learns_from_zero(sample, tiny_folder, scale, kind):
    """Through-plane, and in-plane x4 (its pair is 2x2x1, not the network's 2x2x2)."""
    external = ep.load_external_prior(tiny_folder[0], TINY)
    model = LRModel.parse("gauss:1.5,noise:0")
    lr = simulate_lr(sample, scale, model, seed=1) if kind == "through-plane" else \
        Volume(sample.array[:8, :48, :48], sample.ijk_to_ras)
    _, info = ip.upsample_with_internal_prior(lr, scale, model, TINY, external=external)
    assert info["internal_prior"].startswith(kind) and info["internal_prior"].endswith("from zero")
    assert "pretrained" not in info


def test_upsample_starts_from_the_shipped_network_unless_told(sample):
    lr = simulate_lr(sample, (2, 2, 2), LRModel.parse("box,noise:0"), seed=1)
    shipped = upsample(lr, 2, "balanced", device="cpu")
    assert shipped.provenance["pretrained"] == ep.SHIPPED_NAME
    assert shipped.provenance["internal_prior"].endswith(f"from {ep.SHIPPED_NAME}")
    scratch = upsample(lr, 2, "balanced", device="cpu", pretrained="none")
    assert "pretrained" not in scratch.provenance and scratch.provenance["internal_prior"].endswith("from zero")
    assert "pretrained" not in upsample(lr, 2, "fast", device="cpu").provenance
    with pytest.raises(UserError, match="balanced's internal prior; fast has none"):
        upsample(lr, 2, "fast", pretrained="none")


def _ctsr(*args):
    return subprocess.run([sys.executable, "-m", "ctsr.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_the_cli_pretrains_a_folder_that_upsample_uses(sample, tmp_path):
    scan = write_volume(Volume(sample.array[:40], sample.ijk_to_ras), tmp_path / "hr.nrrd")
    run = _ctsr("pretrain", scan, "--out", tmp_path / "mine", "--steps", 3, "--models-per-scan", 1, "--quiet",
                "--sources", "a crop of the bundled sample (its licence)")
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "mine" / CONFIG_FILE).read_text())["command"].startswith("ctsr pretrain")
    assert "- sources and licences: a crop of the bundled sample (its licence)\n" in (
        tmp_path / "mine" / "README.md").read_text()
    lr = write_volume(simulate_lr(sample, (2, 2, 2), LRModel.parse("box,noise:0")), tmp_path / "lr.nrrd")
    run = _ctsr("upsample", lr, tmp_path / "up.nrrd", "--pretrained", tmp_path / "mine", "--json-progress")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["provenance"]["pretrained"] == str(tmp_path / "mine")


def test_the_cli_refuses_a_folder_that_is_not_one(sample, tmp_path):
    lr = write_volume(simulate_lr(sample, (2, 2, 2), LRModel.parse("box,noise:0")), tmp_path / "lr.nrrd")
    run = _ctsr("upsample", lr, tmp_path / "up.nrrd", "--pretrained", tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "has no config.json" in run.stderr and not (tmp_path / "up.nrrd").exists()
