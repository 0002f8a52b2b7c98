"""Multi-scale feature discrimination module (RB-AE section III-D) and the Table V alternatives.

MSFDM: the input and its reconstruction go through the (frozen) encoder again; the features of
layers 1-3 of both are concatenated per layer and one small head per layer (FDM1-3) predicts a
defect-probability map at that layer's resolution. The final map is eq. (11):
``0.2 AM1 + 0.2 g(AM2) + 0.6 g(AM3)`` with ``g`` bilinear up-sampling to the input size (AM1 sits
at half the input size with 4x4/stride-2 encoder layers, so it is up-sampled too).

Head design (the paper shows boxes only): 3x3 conv -> BN -> ReLU -> 3x3 conv -> BN -> ReLU ->
1x1 conv to one logit channel. Two 3x3 convs give each head a little spatial context of its own.

Alternatives for the ablation (``rbae.segmentation``): ``pixel_gap`` (mean absolute difference
over channels), ``msfr`` (multi-scale feature residual, as in the CMA-AE paper the ablation cites: channel-mean
squared encoder-feature difference of layers 1-3, up-sampled and averaged) and ``ssim``
(1 - local SSIM, :func:`texinspect.scoring.ssim_map`). Without MSFDM no segmentation loss is
trained; the decoder and RBAMs still are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class FDMHead(nn.Module):
    """One FDM: concatenated features (B, 2C, h, w) -> defect logits (B, 1, h, w).

    The last bias starts at ``-log((1 - prior) / prior)`` (focal loss paper, Lin et al. 2017,
    section 4.1): every pixel starts as "normal with probability 1 - prior", so the many easy
    background pixels do not swamp the first updates.
    """

    def __init__(self, in_ch: int, hidden: int, prior: float = 0.01) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 1, 1),
        )
        nn.init.constant_(self.net[-1].bias, -math.log((1 - prior) / prior))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MSFDM(nn.Module):
    """Three FDM heads over layers 1..len(widths) and the eq. (11) fusion."""

    def __init__(
        self, widths: Sequence[int], hidden: int = 64, lambdas: Sequence[float] = (0.2, 0.2, 0.6)
    ) -> None:
        super().__init__()
        if len(widths) != len(lambdas):
            raise ValueError(
                f"MSFDM: {len(widths)} layers but {len(lambdas)} fusion weights (rbae.msfdm_lambdas)"
            )
        self.heads = nn.ModuleList(FDMHead(2 * int(w), hidden) for w in widths)
        self.lambdas = [float(v) for v in lambdas]

    def forward(
        self, feats_in: Sequence[torch.Tensor], feats_rec: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Logits per scale [(B,1,H/2,W/2), (B,1,H/4,W/4), (B,1,H/8,W/8)]."""
        return [
            head(torch.cat([a, b], dim=1))
            for head, a, b in zip(self.heads, feats_in, feats_rec, strict=False)
        ]

    def fuse(self, logits: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Eq. (11) on probabilities: (B, H, W) at ``size``."""
        out = None
        for lam, lg in zip(self.lambdas, logits, strict=True):
            am = F.interpolate(torch.sigmoid(lg), size=size, mode="bilinear", align_corners=False)
            out = lam * am if out is None else out + lam * am
        assert out is not None
        return out[:, 0]


def pixel_gap_map(images: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Table V column D: mean absolute difference over channels, (B, H, W)."""
    return (images - recon).abs().mean(dim=1)


def msfr_map(
    feats_in: Sequence[torch.Tensor], feats_rec: Sequence[torch.Tensor], size: tuple[int, int]
) -> torch.Tensor:
    """Table V column E, multi-scale feature residual: for each of layers 1-3 the channel-mean
    squared difference of the encoder features, up-sampled to ``size``; the layers are averaged."""
    out = None
    for a, b in zip(feats_in, feats_rec, strict=True):
        r = F.interpolate(
            (a - b).pow(2).mean(dim=1, keepdim=True), size=size, mode="bilinear", align_corners=False
        )
        out = r if out is None else out + r
    assert out is not None
    return out[:, 0] / len(feats_in)
