"""The contract every model family's inference network honours.

A detector maps a batch of images to anomaly maps of the same height and width. Everything
downstream (image scores, thresholds, ``predict``, serving, evaluation) only uses this, so any
family, or an outside tool writing the same files, is measured by the same code.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from texinspect.scoring import image_scores


def resize_images(images: torch.Tensor, side: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, side, side), bilinear and antialiased (unchanged when already so):
    how a family that runs at its own side (``rbae.train_size``, ``fmrnet.train_size``) takes its input."""
    if tuple(images.shape[-2:]) == (side, side):
        return images
    return F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False, antialias=True)


def resize_maps(maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, h, w) maps -> (B, height, width), bilinear (unchanged when the sizes match): the map of
    such a family back at the input's size."""
    if tuple(maps.shape[-2:]) == (height, width):
        return maps
    return F.interpolate(maps[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0]


MAP_SCORE_RULE = "max_of_gaussian_smoothed_map"


class Detector(nn.Module):
    """Base class: subclasses implement :meth:`anomaly_map`.

    Input: float tensor ``(B, C, H, W)`` in ``[0, 1]`` with the artifact's channels and size.
    Output: float tensor ``(B, H, W)``, larger = more anomalous, finite.
    """

    family: ClassVar[str] = ""

    def anomaly_map(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.anomaly_map(images)

    @property
    def image_score_rule(self) -> str:
        """Name of the rule :meth:`image_score` applies (written to the model card)."""
        return MAP_SCORE_RULE

    def image_score(self, images: torch.Tensor, maps: torch.Tensor, smoothing: float) -> torch.Tensor:
        """Image score (B,), larger = more anomalous: by default the max of the Gaussian-smoothed map.

        Every consumer (calibration, predict, serving, validation) scores through this method, so
        a family whose paper scores images otherwise (FMR-Net: patch-level memory distance)
        overrides it once and thresholds stay consistent.
        """
        return image_scores(maps, smoothing)

    def score(self, images: torch.Tensor, smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(anomaly maps (B, H, W) float, image scores (B,)): what predict and calibration need.

        A family whose image score reuses work of its map (FMR-Net's window codes) overrides this
        so that the work is done once.
        """
        maps = self.anomaly_map(images).float()
        return maps, self.image_score(images, maps, smoothing)
