"""RB-AE: reference-based autoencoder (Luo, Yao, Yu, Wang), see ``README.md`` in this folder.

Family contract: ``build(config) -> Detector`` and ``train(config, out_dir, resume=True) -> Path``.

The imports inside ``build`` and ``train`` are deferred on purpose: the family registry imports
this package to read ``config.py`` on every config load, and the network and trainer (torch,
data, synthesis) should load only when a model is built or trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from texinspect.config import Config
    from texinspect.models.base import Detector
    from texinspect.training.loop import OnLog


def build(config: Config) -> Detector:
    """The untrained RB-AE network for ``config`` (weights and reference buffers load into it)."""
    from texinspect.models.rbae.trainer import build_network  # deferred: see the docstring

    return build_network(config)


def train(config: Config, out_dir: str | Path, resume: bool = True, on_log: OnLog | None = None) -> Path:
    """Both training phases, calibration and the model artifact; returns ``out_dir/model``."""
    from texinspect.models.rbae.trainer import train as _train  # deferred: see the docstring
    from texinspect.training.loop import training_hooks  # deferred: see the docstring

    with training_hooks(on_log=on_log):  # loss rows to MLflow / Optuna pruning
        return _train(config, out_dir, resume)


__all__ = ["build", "train"]
