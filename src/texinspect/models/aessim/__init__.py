"""AE-SSIM: the plain convolutional autoencoder baseline scored by SSIM (Bergmann et al. 2018).

The papers' comparison row "AE-SSIM": an autoencoder trained on defect-free patches with the SSIM
loss; the anomaly map is ``1 - SSIM(x, reconstruction)``. No synthetic defects, no second phase:
it is the yardstick that tells what RB-AE's and FMR-Net's extra machinery buys.

Family contract (docs/architecture.md): ``build(config) -> Detector`` and
``train(config, out_dir, resume=True) -> Path``. Its few hyper-parameters are constants in
:mod:`texinspect.models.aessim.network` and :mod:`texinspect.models.aessim.trainer` (the
published values), not config keys: the baseline is not meant to be tuned.

The imports inside ``build`` and ``train`` are deferred on purpose: the family registry imports
this package to read ``config.py`` on every config load, and the network and trainer (torch,
data, synthesis) should load only when a model is built or trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from texinspect.config import Config
    from texinspect.models.aessim.network import AESSIMNet

FAMILY = "aessim"


def build(config: Config) -> AESSIMNet:
    """The untrained network for ``config.data`` (image size and channels)."""
    from texinspect.models.aessim.network import AESSIMNet  # deferred: see the docstring

    return AESSIMNet(config.data.channels, config.data.image_size)


def train(config: Config, out_dir: str | Path, resume: bool = True) -> Path:
    """Train under ``train.max_minutes`` / step caps, calibrate, write ``out_dir/model``."""
    from texinspect.models.aessim.trainer import train as _train  # deferred: see the docstring

    return _train(config, out_dir, resume)


__all__ = ["FAMILY", "build", "train"]
