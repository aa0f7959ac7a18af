"""The external projection prior: its pairs are the pipeline's own scan of an LR made by the LR
model's operator, its input is what it is documented to be, its folder round-trips
through safetensors and anything else is one sentence, and an untrained network gives ``P_up`` back."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from ctsr import external_projection_prior as xp
from ctsr.baselines import upsample_interpolate
from ctsr.errors import UserError
from ctsr.geometry import ConeGeometry
from ctsr.residual_cnn import ResidualCNN, TrainingSettings
from ctsr.lrmodel import LRModel, simulate_lr
from ctsr.network_folder import CONFIG_FILE, WEIGHTS_FILE, PretrainedNetwork
from ctsr.projector import project_hu
from ctsr.volume import Volume

SCALE = (4, 4, 4)
TINY = xp.ProjectionPretrainSettings(crops_per_scan=1, crop=32, models_per_crop=2, views=3,
                                     network=TrainingSettings(steps=3, patch=8, batch=1, channels=4, layers=2))


@pytest.fixture(scope="module")
def hr(sample):
    return Volume(sample.array[:32, :32, :32], sample.ijk_to_ras)


@pytest.fixture(scope="module")
def tiny_folder(hr, tmp_path_factory):
    network = xp.pretrain([hr], TINY, seed=0)
    folder = xp.save_external_projection_prior(network, tmp_path_factory.mktemp("xp") / "tiny", TINY,
                                               {"name": "tiny", "scans": ["sample"]})
    return folder, network


def test_a_pair_is_the_pipelines_scan_of_the_lr_models_lr_and_of_the_truth(hr):
    """Built again by hand: LR by ``simulate_lr`` (the LR model's operator) with the same seed,
    ``V_up`` by cubic, the scan of ``V_up``'s grid at the offset angles; the target is the
    truth's projections in the same unit as ``P_up``."""
    model = LRModel.parse("box,noise:5")
    inputs, unit, target, truth = xp.scan_pairs(hr, model, SCALE, n_views=3, angle_offset=0.4, seed=7)
    v_up = upsample_interpolate(simulate_lr(hr, SCALE, model, seed=7), SCALE, "cubic")
    geometry = ConeGeometry.from_volume(v_up, n_views=3)
    geometry = geometry.with_angles(np.asarray(geometry.angles) + 0.4)
    p_up = project_hu(v_up.array, geometry)
    np.testing.assert_allclose(inputs[0] * unit[:, None, None], p_up.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(target * unit[:, None, None], project_hu(hr.array, geometry).numpy(), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(unit, p_up.flatten(1).amax(1).numpy(), rtol=1e-6)
    assert torch.equal(truth, project_hu(hr.array, geometry))


def test_the_conditioning_is_p_up_and_bicubic_y_in_the_unit_of_each_projection():
    from ctsr.prior.operators import bicubic

    p_up = torch.rand(2, 16, 12) + 0.5
    y = torch.rand(2, 4, 3)
    inputs, unit = xp.conditioning(p_up, y, SCALE)
    assert inputs.shape == (xp.INPUTS, 2, 16, 12)
    np.testing.assert_allclose(inputs[0].max(axis=(1, 2)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(inputs[1] * unit[:, None, None], bicubic(y[:, None], (4, 4))[:, 0].numpy(), rtol=1e-5)


def test_pretraining_pairs_stack_every_crop_and_model_and_repeat_for_a_seed(hr):
    source, target = xp.pretraining_pairs([hr, hr], TINY, seed=2)
    assert source.shape[:2] == (xp.INPUTS, 2 * 2 * 3) and target.shape == source.shape[1:]
    again, _ = xp.pretraining_pairs([hr, hr], TINY, seed=2)
    np.testing.assert_array_equal(source, again)
    assert not np.allclose(source[0, :3], source[0, 3:6])  # two LR models of one crop differ


def test_an_untrained_network_gives_p_up_back_and_a_trained_one_adds_to_it(tiny_folder):
    p_up, y = torch.rand(2, 16, 16) + 0.5, torch.rand(2, 4, 4)
    zero = PretrainedNetwork(ResidualCNN(4, 2, xp.KERNEL, xp.INPUTS).eval(), SCALE, "zero", {})
    torch.testing.assert_close(xp.upsample_projections_externally(zero, p_up, y, SCALE), p_up)
    trained = xp.load_external_projection_prior(tiny_folder[0])
    out = xp.upsample_projections_externally(trained, p_up, y, SCALE)
    assert out.shape == p_up.shape and (out - p_up).abs().max() > 1e-4


def test_a_saved_folder_loads_back_the_same_network(tiny_folder):
    folder, network = tiny_folder
    loaded = xp.load_external_projection_prior(folder)
    for a, b in zip(loaded.network.parameters(), network.parameters()):
        assert torch.equal(a, b)
    assert loaded.scale == SCALE and loaded.config["scans"] == ["sample"]
    assert "Data" in (folder / "README.md").read_text()


@pytest.mark.parametrize("how", ["missing folder", "volume prior", "no inputs", "pickle", "truncated weights"])
def test_a_folder_that_is_not_a_projection_prior_is_one_sentence(tiny_folder, tmp_path, how):
    folder = tmp_path / "copy"
    shutil.copytree(tiny_folder[0], folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    if how == "missing folder":
        shutil.rmtree(folder)
    elif how == "volume prior":
        (folder / CONFIG_FILE).write_text(json.dumps({**config, "format": "ctsr-external-volume-prior"}))
    elif how == "no inputs":
        del config["inputs"]
        (folder / CONFIG_FILE).write_text(json.dumps(config))
    elif how == "pickle":
        torch.save({"x": torch.zeros(1)}, folder / WEIGHTS_FILE)
    else:
        data = (folder / WEIGHTS_FILE).read_bytes()
        (folder / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as error:
        xp.load_external_projection_prior(folder)
    assert "\n" not in str(error.value) and str(folder) in str(error.value)


def test_settings_are_recorded_in_the_config(tiny_folder):
    config = json.loads((tiny_folder[0] / CONFIG_FILE).read_text())
    assert config["pretraining"]["network"] == dataclasses.asdict(TINY.network)
    assert config["pretraining"]["scale"] == list(SCALE) and config["inputs"] == xp.INPUTS


def test_the_cli_pretrains_a_projection_prior_folder(sample, tmp_path):
    import subprocess
    import sys

    from ctsr.io import write_volume

    scan = write_volume(Volume(sample.array[:32, :48, :48], sample.ijk_to_ras), tmp_path / "hr.nrrd")
    run = subprocess.run([sys.executable, "-m", "ctsr.cli", "pretrain", "--projections", str(scan), "--out",
                          str(tmp_path / "mine"), "--steps", "2", "--models-per-scan", "1", "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    loaded = xp.load_external_projection_prior(tmp_path / "mine")
    assert loaded.config["command"].startswith("ctsr pretrain --projections")
    assert "- sources and licences: not recorded (ctsr pretrain --sources)\n" in (tmp_path / "mine" / "README.md").read_text()
    assert loaded.config["pretraining"]["network"]["steps"] == 2 and loaded.config["pretraining"]["models_per_crop"] == 1
    # --prior takes it, at its scale only: an x2 job is one sentence and exit 2, and writes nothing.
    out = tmp_path / "out.nrrd"
    run = subprocess.run([sys.executable, "-m", "ctsr.cli", "upsample", str(scan), str(out), "--method", "standard",
                          "--scale", "2", "--prior", str(tmp_path / "mine"), "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "was pretrained for x4; this job is x2." in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1 and not out.exists()


def test_the_self_check_of_a_network_that_adds_nothing_is_zero_and_declines(hr):
    """Zero dB for an untrained network (``Y2 = P_up2``), so the pipeline keeps ``P_up``; a
    network that adds something moves it off zero."""
    from ctsr.geometry import scan_geometries

    lr = simulate_lr(Volume(hr.array, hr.ijk_to_ras), SCALE, LRModel.parse("box"), seed=0)
    v_up = upsample_interpolate(lr, SCALE, "cubic")
    _, lr_geometry = scan_geometries(lr, v_up, SCALE, 4)
    y = project_hu(lr.array, lr_geometry)
    model = LRModel.parse("box,noise:10")
    network = ResidualCNN(4, 2, xp.KERNEL, xp.INPUTS).eval()
    zero = PretrainedNetwork(network, SCALE, "zero", {})
    assert abs(xp.self_check(zero, lr, SCALE, model, y, lr_geometry)) < 1e-4
    torch.nn.init.normal_(network.body[-1].weight, std=1e-2)
    assert abs(xp.self_check(zero, lr, SCALE, model, y, lr_geometry)) > 1e-3


def test_the_shipped_network_loads_offline_is_small_and_its_card_is_its_config():
    folder = xp.shipped_dir()
    shipped = xp.load_external_projection_prior()
    assert shipped.name == xp.SHIPPED_NAME and shipped.scale == SCALE
    assert sum(p.stat().st_size for p in folder.iterdir()) < 1e6
    assert (folder / "README.md").read_text() == xp.model_card(shipped.config)
    assert sorted(shipped.config["scans"]) == ["abdomen_pelvis_3mm.nrrd", "chest_cta_1.5mm.nrrd", "head_1.5mm.nrrd"]


def test_upsample_takes_a_projection_prior_folder_instead_of_the_shipped_one_at_its_scale_only(
        tiny_folder, hr, monkeypatch):
    """``prior=`` a folder of ``ctsr pretrain --projections`` (``--prior DIR``) is the external
    projection prior of ``standard``; for a job at another scale it is one sentence, before any work."""
    from ctsr.upsampling import upsample

    folder = str(tiny_folder[0])
    monkeypatch.setattr(xp, "self_check", lambda *a, **k: -1.0)  # declined: Y = P_up, nothing for NAB-GS to fit
    result = upsample(simulate_lr(hr, SCALE), SCALE, "standard", device="cpu", prior=folder)
    assert result.provenance["projection_prior"].startswith(f"external declined: {folder} made")
    assert result.provenance["gaussians"] == 0
    with pytest.raises(UserError, match=r"pretrained for x4; this job is x2\.$"):
        upsample(simulate_lr(hr, (2, 2, 2)), 2, "standard", device="cpu", prior=folder)
