"""AE-SSIM registers as a family with no config keys: its few settings are the published values,
constants in ``network.py`` and ``trainer.py``, because the baseline is not meant to be tuned."""

from __future__ import annotations

from texinspect.models.registry import register

FAMILY = register("aessim", "texinspect.models.aessim")
