"""anomalib's DRAEM as a texinspect model family, for the peer virtual environment only.

Registered by ``draem_peer.py`` as family ``draem`` so that texinspect's own artifact format,
threshold calibration and ``predict`` serve it: the peer's maps then reach ``evaluate`` in
exactly the files (and with the same image-score rule) every texinspect family writes.
The network is anomalib's ``DraemModel`` unchanged (reconstructive + discriminative
sub-networks, no SSPCAB); its anomaly map is the softmax probability of the anomaly class.
"""

from __future__ import annotations

from typing import Any

import torch
from anomalib.models.image.draem.torch_model import DraemModel

from texinspect.models.base import Detector

FAMILY = "draem"
DRAEM_CHANNELS = 3  # DRAEM's networks take RGB; grayscale inputs are repeated to 3 channels


class DraemDetector(Detector):
    """``anomaly_map(images (B,C,H,W) in [0,1]) -> (B,H,W)``: anomalib's DRAEM inference output."""

    family = FAMILY

    def __init__(self) -> None:
        super().__init__()
        self.model = DraemModel(sspcab=False)

    @staticmethod
    def rgb(images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == DRAEM_CHANNELS:
            return images
        if images.shape[1] == 1:
            return images.expand(-1, DRAEM_CHANNELS, -1, -1)
        raise ValueError(f"DRAEM takes 1- or 3-channel images, got {tuple(images.shape)}")

    def anomaly_map(self, images: torch.Tensor) -> torch.Tensor:
        if self.model.training:  # DraemModel returns (reconstruction, logits) in training mode
            raise RuntimeError("DraemDetector.anomaly_map needs eval mode (call .eval() first)")
        return self.model(self.rgb(images)).anomaly_map


def build(config: Any) -> DraemDetector:
    """texinspect family contract: the untrained network (weights are loaded into it)."""
    del config
    return DraemDetector()
