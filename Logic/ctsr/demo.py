"""``ctsr demo``: super-resolve the bundled real CT sample at x2 and draw a montage.

The sample is a 64^3 crop of a real chest CT angiogram as scanned (1.5 mm voxels, no
simulated degradation), so the LR model of the run is estimated from it (``result["lr_model"]``)."""

from __future__ import annotations

from pathlib import Path

from .errors import UserError
from .io import read_volume, write_volume
from .montage import write_montage
from .progress import Progress
from .resources import sample_volume_path

#: Display window of the montage (HU): a lung-and-soft-tissue window.
MONTAGE_WINDOW = (-1000.0, 500.0)


def run_demo(out_dir, method: str, progress: Progress) -> dict:
    """Upsample the sample x2 with ``method``; write ``<out>/sample_SRx2.nrrd`` and
    ``<out>/montage.png`` (columns input | output; rows axial, coronal, sagittal)."""
    from .upsampling import upsample

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file; the demo writes into a folder (--out).")
    out_dir.mkdir(parents=True, exist_ok=True)
    lr = read_volume(sample_volume_path())
    result = upsample(lr, 2, method, progress)
    output = write_volume(result.volume, out_dir / "sample_SRx2.nrrd")
    montage = out_dir / "montage.png"
    write_montage(montage, [lr, result.volume], MONTAGE_WINDOW,
                  labels=["input: real scan, 1.5 mm", f"{method} x2, 0.75 mm"])
    return {"output": output, "montage": montage, "lr_model": result.provenance["lr_model"]["model"]}
