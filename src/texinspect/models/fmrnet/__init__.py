"""FMR-Net (Yao, Yu, Wang): feature memory rearrangement network for textured-surface defects.

Family module contract (docs/architecture.md): ``build(config) -> Detector`` and
``train(config, out_dir, resume=True) -> Path``; the pipeline's separate steps are
``train_phase1``, ``memory_bank.build_memory_bank`` and ``train_phase2``.

The imports inside ``build`` and ``train`` are deferred on purpose: the family registry imports
this package to read ``config.py`` on every config load, and the network and trainer (torch,
data, synthesis) should load only when a model is built or trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from texinspect.models.fmrnet.network import Discriminator, FMRNet, MultilevelResult

if TYPE_CHECKING:
    from texinspect.config import Config
    from texinspect.training.loop import OnLog

__all__ = [
    "FMRNet",
    "Discriminator",
    "MultilevelResult",
    "build",
    "train",
    "train_phase1",
    "train_phase2",
    "build_memory_bank",
]


def build(config: Config) -> FMRNet:
    """The inference network of ``config`` (untrained; memory bank empty until loaded)."""
    return FMRNet(config.fmrnet, channels=config.data.channels)


def train(config: Config, out_dir: str | Path, resume: bool = True, on_log: OnLog | None = None) -> Path:
    from texinspect.models.fmrnet.training import train as _train  # deferred: see the docstring
    from texinspect.training.loop import training_hooks  # deferred: see the docstring

    with training_hooks(on_log=on_log):  # loss rows to MLflow / Optuna pruning
        return _train(config, out_dir, resume=resume)


def train_phase1(config: Config, out_dir: str | Path, resume: bool = True):  # -> PhaseResult
    from texinspect.models.fmrnet.training import train_phase1 as _p1  # deferred: see the docstring

    return _p1(config, out_dir, resume=resume)


def train_phase2(config: Config, out_dir: str | Path, resume: bool = True):  # -> PhaseResult
    from texinspect.models.fmrnet.training import train_phase2 as _p2  # deferred: see the docstring

    return _p2(config, out_dir, resume=resume)


def build_memory_bank(config: Config, checkpoint_or_model_dir: str | Path, out_path: str | Path) -> Path:
    from texinspect.models.fmrnet.memory_bank import build_memory_bank as _bank  # deferred: see the docstring

    return _bank(config, checkpoint_or_model_dir, out_path)
