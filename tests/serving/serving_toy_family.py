"""A tiny model family for the serving tests: deterministic, instant, with a patch-level path.

Registered as family ``servetoy`` (``texinspect.models.register``; the server gets
``--family servetoy=serving_toy_family``), so the server, protocols and bad-input handling are
tested without waiting for a trained RB-AE or FMR-Net.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from texinspect.config import Config
from texinspect.models.artifact import ModelCard, save_detector
from texinspect.models.base import Detector

FAMILY = "servetoy"
MODULE = "serving_toy_family"
PATCH = 8


class ToyDetector(Detector):
    """Anomaly map = |3x3 conv of the image|; patch scores = its 8x8 block means."""

    family = FAMILY

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, kernel_size=3, padding=1)
        self.register_buffer("patch_threshold", torch.tensor(float("nan")))

    def anomaly_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images).abs().squeeze(1)

    def patch_scores(self, images: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.anomaly_map(images).unsqueeze(1), PATCH).squeeze(1)


def build(config: Config) -> ToyDetector:
    return ToyDetector(config.data.channels)


def write_model(out_dir: Path, size: int = 32, channels: int = 3, seed: int = 0, **card: Any) -> Path:
    """A toy artifact with seeded weights; ``card`` sets thresholds (and ``patch_threshold``)."""
    torch.manual_seed(seed)
    config = Config().with_overrides({"data.image_size": size, "data.channels": channels})
    det = build(config)
    patch_threshold = card.pop("patch_threshold", None)
    if patch_threshold is not None:
        det.patch_threshold.fill_(patch_threshold)
    model_card = ModelCard(family=FAMILY, config=config.to_dict(), image_size=size, channels=channels, **card)
    return save_detector(det, model_card, out_dir)
