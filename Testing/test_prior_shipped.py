"""The shipped default prior: present, small, offline-loadable, trained without the held-out scan."""

from ctsr.prior import load_prior
from ctsr.prior.model import default_model_dir


def test_shipped_default_loads_offline_and_is_small(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = default_model_dir()
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < 20e6
    prior = load_prior(None)
    assert prior.unet.config.in_channels == 1
    assert prior.metadata["data"]["held_out"] == ["chest_cta_1.5mm"]
    assert "chest_cta_1.5mm.nrrd" not in prior.metadata["data"]["ct_volumes"]
    assert (folder / "README.md").read_text().count("Measured quality") == 1
