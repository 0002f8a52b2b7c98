"""A tiny model family for tracking tests: a fixed 3x3 conv whose |output| is the anomaly map.

Registered as family "fake" by the tracking conftest, so the tests exercise the real artifact,
registry and pyfunc code without paying for training a real network.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from texinspect.config import Config
from texinspect.models.base import Detector


class FakeDetector(Detector):
    family = "fake"

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 3, padding=1)

    def anomaly_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(images).abs()[:, 0]


def build(config: Config) -> Detector:
    return FakeDetector(config.data.channels)


def train(config: Config, out_dir: str | Path, resume: bool = True) -> Path:  # pragma: no cover - unused
    raise NotImplementedError("the fake family is built by the tests directly")
