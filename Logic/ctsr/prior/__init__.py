"""The diffusion projection prior (DESIGN.md section 2, step 4).

* :func:`load_prior` (``None``: the shipped default in ``Resources/Models``), :class:`Prior`;
* :func:`upsample_projections`: DDNM / DDNM+ with per-projection adaptive sampling, returning a
  :class:`ProjectionSR` (``.images [N, 1, H, W]``, ``.steps``, ``.start_t``, ``.std``);
* :func:`consistent_init`: ``A_pinv(y) + P_up - A_pinv(A(P_up))``;
* training (:mod:`ctsr.prior.train`, ``ctsr prior train``) on DRRs and radiographs
  (:mod:`ctsr.prior.data`).

The names are imported on first use, so that importing the package (the ``ctsr`` parser does)
does not import torch or diffusers.
"""

from importlib import import_module

_EXPORTS = {"PRESETS": "config", "TrainConfig": "config", "Prior": "model", "default_model_dir": "model",
            "load_prior": "model", "make_unet": "model", "save_prior": "model", "ProjectionSR": "sampling",
            "consistent_init": "sampling", "upsample_projections": "sampling"}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
