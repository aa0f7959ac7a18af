"""Shared fixtures: the real CT data of ../shared/data (skipped with a reason when absent) and
the bundled sample."""

import tempfile
from pathlib import Path

import numpy as np
import pytest

from ctsr.resources import sample_volume_path
from ctsr.volume import Volume

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_CT = sorted((SHARED_DATA / "ct").glob("*.nrrd")) if (SHARED_DATA / "ct").is_dir() else []


def require_shared_data() -> Path:
    """The shared real-data folder, or skip: it is not part of the repository (CI has it)."""
    if not SHARED_CT:
        pytest.skip(f"real CT data not found at {SHARED_DATA} (it lives beside the repository, not in it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample() -> Volume:
    """The bundled real CT sample: 64^3 chest crop, 1.5 mm, HU."""
    from ctsr.io import read_volume  # here, not at the top: the GPU-only tests run without SimpleITK

    return read_volume(sample_volume_path())


@pytest.fixture(scope="session")
def oblique_sample(sample) -> Volume:
    """The sample with an oblique direction, anisotropic spacing and a non-zero origin."""
    angle = np.deg2rad(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0],
                         [np.sin(angle), np.cos(angle), 0.0],
                         [0.0, 0.0, 1.0]])
    tilt = np.deg2rad(10.0)
    rotation = rotation @ np.array([[1.0, 0.0, 0.0],
                                    [0.0, np.cos(tilt), -np.sin(tilt)],
                                    [0.0, np.sin(tilt), np.cos(tilt)]])
    return Volume.from_spacing(sample.array, (0.8, 1.1, 2.5), (-31.5, 12.25, 80.0), rotation)


@pytest.fixture()
def scene(monkeypatch, tmp_path):
    """A fresh slicer-core MRML scene as ``slicer.mrmlScene``, and a private temporary folder so
    that a test can see every temporary file the Slicer logic makes."""
    slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")
    scene = slicer.vtkMRMLScene()
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    yield scene
    scene.Clear(1)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one torch thread is fastest and immune to other processes on the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
