"""AE-SSIM's one loss (Bergmann et al. 2018): the structural dissimilarity of a patch and its
reconstruction, ``L = 1 - mean SSIM(x, x_hat)`` over the SSIM windows of the patch."""

from __future__ import annotations

import torch

from texinspect.models.aessim.network import SSIM_WINDOW
from texinspect.scoring import ssim_map


def ssim_loss(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """``1 - mean SSIM``; the same SSIM window as the anomaly map, so training and scoring agree."""
    return 1.0 - ssim_map(images, reconstructions, window=SSIM_WINDOW).mean()
