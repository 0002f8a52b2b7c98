"""Model registry: family name -> module (timm-style; configs are data in params.yaml).

Each family module exposes ``build(config) -> Detector`` (an untrained network with the
family's inference path) and ``train(config, out_dir, resume=True) -> Path`` (writes a model
artifact, see :mod:`texinspect.models.artifact`). Imports are lazy so that ``texinspect --help``
and config loading do not pay for every model.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from texinspect.errors import ModelError

FAMILIES: dict[str, str] = {
    "rbae": "texinspect.models.rbae",
    "fmrnet": "texinspect.models.fmrnet",
    "aessim": "texinspect.models.aessim",  # baseline: plain AE scored by 1 - SSIM (Bergmann 2018)
}


def family_module(name: str) -> ModuleType:
    if name not in FAMILIES:
        raise ModelError(f"unknown model family '{name}' (known: {', '.join(sorted(FAMILIES))})")
    return importlib.import_module(FAMILIES[name])


def register(name: str, module: str) -> None:
    """Add a family (used by benchmarks for baselines, and by plugins)."""
    FAMILIES[name] = module
