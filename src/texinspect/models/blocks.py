"""Convolution blocks shared by RB-AE and FMR-Net.

Both papers describe a 5-layer encoder of 4x4 stride-2 convolutions with BatchNorm and
LeakyReLU(0.2) (FMR-Net states it; RB-AE's figure shows the same shape); the decoders mirror it
with 4x4 stride-2 transposed convolutions. Keeping the blocks here means the two families differ
only in what the papers make them differ in.

Signatures are a contract with the other model family: ``DownBlock(in_ch, out_ch)``,
``UpBlock(in_ch, out_ch)``, ``Encoder(in_channels, widths)`` whose ``forward`` returns the list of
the 5 feature maps (shallowest first), each half the size of the previous one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from texinspect.errors import ConfigError


class DownBlock(nn.Sequential):
    """4x4 conv, stride 2 (halves H and W) + BatchNorm + LeakyReLU(0.2)."""

    def __init__(self, in_ch: int, out_ch: int, *, slope: float = 0.2) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.LeakyReLU(slope, inplace=True),
        )
        self.in_ch = in_ch
        self.out_ch = out_ch


class UpBlock(nn.Sequential):
    """Mirror of :class:`DownBlock`: 4x4 transposed conv, stride 2 (doubles H and W) + BN + LeakyReLU."""

    def __init__(self, in_ch: int, out_ch: int, *, slope: float = 0.2) -> None:
        super().__init__(
            nn.ConvTranspose2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.LeakyReLU(slope, inplace=True),
        )
        self.in_ch = in_ch
        self.out_ch = out_ch


class Encoder(nn.Module):
    """Stack of :class:`DownBlock` s; returns every layer's feature map (the skip connections).

    With ``widths`` of length 5 and an input of ``H x W``, layer ``l`` (1-based) has shape
    ``(B, widths[l-1], H / 2**l, W / 2**l)``; H and W must be divisible by 32.
    """

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or any(w <= 0 for w in widths):
            raise ConfigError(f"encoder widths must be positive integers, got {list(widths)}")
        self.in_channels = int(in_channels)
        self.widths = widths
        chans = [self.in_channels, *widths]
        self.blocks = nn.ModuleList(DownBlock(a, b) for a, b in zip(chans[:-1], chans[1:], strict=True))

    @property
    def stride(self) -> int:
        """Total down-sampling factor: input sides must be multiples of it."""
        return 2 ** len(self.blocks)

    def forward(self, x: torch.Tensor, depth: int | None = None) -> list[torch.Tensor]:
        """Feature maps of layers 1..``depth`` (default: all), shallowest first."""
        feats: list[torch.Tensor] = []
        for block in self.blocks[: depth if depth is not None else len(self.blocks)]:
            x = block(x)
            feats.append(x)
        return feats
