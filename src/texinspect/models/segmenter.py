"""A trained pixel segmenter on raw image + reconstruction: an extension, not in either paper.

Why it exists (issue 17's diagnosis, ``models/rbae/README.md``): on magnetic tile both papers'
segmentation stages lose to a small discriminative U-Net that sees the *pixels* of the image and
its reconstruction at full resolution. RB-AE's MSFDM sees features of a reconstruction-trained,
frozen encoder at half resolution and coarser; FMR-Net has no trained segmenter at all (its map is
a fixed product of GMS, SSIM and residual). A segmenter on the pixels learns which differences
between an image and its restoration are defects and which are reconstruction error: the
discriminative half of DRAEM (Zavrtanik et al., ICCV 2021), whose idea this follows.

Design: a plain U-Net, ``len(widths)`` levels, two 3x3 conv + BN + ReLU per level, max-pool down,
bilinear up + concatenated skip; a 1x1 conv to one logit whose bias starts at the focal-loss prior
(every pixel starts as "normal with probability 0.99", Lin et al. 2017, section 4.1). Inputs of any
side divisible by ``2 ** (len(widths) - 1)`` work; the output has the input's side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from texinspect.errors import ConfigError


def conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


def double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(in_ch, out_ch), conv_bn_relu(out_ch, out_ch))


class PixelSegmenter(nn.Module):
    """U-Net: (B, in_channels, H, W) -> defect logits (B, 1, H, W)."""

    def __init__(self, in_channels: int, widths: Sequence[int] = (16, 32, 64, 128), prior: float = 0.01) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2 or any(w <= 0 for w in widths):
            raise ConfigError(f"segmenter widths: expected at least two positive integers, got {widths}")
        self.in_channels = int(in_channels)
        self.widths = widths
        chans = [self.in_channels, *widths]
        self.down = nn.ModuleList(double_conv(a, b) for a, b in zip(chans[:-1], chans[1:], strict=True))
        self.up = nn.ModuleList(double_conv(widths[i] + widths[i - 1], widths[i - 1]) for i in range(len(widths) - 1, 0, -1))
        self.head = nn.Conv2d(widths[0], 1, 1)
        nn.init.constant_(self.head.bias, -math.log((1 - prior) / prior))

    @property
    def stride(self) -> int:
        """Input sides must be multiples of this."""
        return 2 ** (len(self.widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            raise ValueError(f"segmenter expects {self.in_channels} input channels, got {x.shape[1]}")
        skips: list[torch.Tensor] = []
        for i, block in enumerate(self.down):
            x = block(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)
