"""RB-AE decoder: mirrors the encoder with :class:`UpBlock` s; skip connections at the RBAM layers.

The paper's Fig. 1 feeds the repaired deepest features to the decoder and concatenates the other
repaired maps into the matching decoder layers. Skips are used only where an RBAM sits (layers 3
and 4 by default, layer 5 being the bottleneck input): an unrepaired shallow skip (layers 1-2)
would copy defects straight into the reconstruction, the very residual RBAM exists to suppress.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from texinspect.models.blocks import UpBlock


class Decoder(nn.Module):
    """Features of the 5 encoder layers (only ``skip_layers`` and the last are read) -> image in [0, 1]."""

    def __init__(self, widths: Sequence[int], out_channels: int, skip_layers: Sequence[int] = (3, 4)) -> None:
        super().__init__()
        self.widths = [int(w) for w in widths]
        n = len(self.widths)
        self.skip_layers = sorted({int(s) for s in skip_layers})
        if any(not 1 <= s < n for s in self.skip_layers):
            raise ValueError(f"decoder skip layers must be in 1..{n - 1}, got {list(skip_layers)}")
        # ups[i] maps layer (n - i) to the size of layer (n - i - 1); layer 0 is the image.
        self.ups = nn.ModuleList()
        for layer in range(n, 1, -1):
            in_ch = self.widths[layer - 1] * (2 if layer in self.skip_layers else 1)
            self.ups.append(UpBlock(in_ch, self.widths[layer - 2]))
        in_last = self.widths[0] * (2 if 1 in self.skip_layers else 1)
        self.head = nn.Sequential(
            nn.ConvTranspose2d(in_last, out_channels, kernel_size=4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        n = len(self.widths)
        x = feats[n - 1]
        for i, up in enumerate(self.ups):
            layer = n - i
            if layer != n and layer in self.skip_layers:
                x = torch.cat([x, feats[layer - 1]], dim=1)
            x = up(x)
        if 1 in self.skip_layers:
            x = torch.cat([x, feats[0]], dim=1)
        return self.head(x)
