"""Losses more than one model family uses; each family's own losses live in its folder
(``models/rbae/losses.py``, ``models/fmrnet/losses.py``).

- :func:`focal_loss`: sigmoid focal loss (Lin et al.): RB-AE's segmentation loss (eq. 10), and
  the loss of every ``pixel_unet`` segmenter (RB-AE, FMR-Net).
- :func:`resize_mask`: a defect mask at a feature map's resolution (share of each cell that is defect).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- segmentation


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Sigmoid focal loss ``-alpha_t (1 - p_t)^gamma log(p_t)`` over every element.

    ``logits`` and ``target`` (in [0, 1]; soft targets allowed) have the same shape. ``alpha < 0``
    switches the class weighting off; ``gamma = 0`` with ``alpha < 0`` is plain BCE.
    """
    if logits.shape != target.shape:
        raise ValueError(f"focal_loss: logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    target = target.to(logits.dtype)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t).pow(gamma)
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"focal_loss: unknown reduction '{reduction}' (mean, sum, none)")


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Mask (B,1,H,W) -> (B,1,h,w) by area averaging (the share of each cell that is defect)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return F.adaptive_avg_pool2d(mask.float(), size)
