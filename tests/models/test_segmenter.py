"""The shared pixel segmenter (issue 17's extension for both families): shapes, the focal prior,
bad input, and that it learns to segment a defect it was never told the shape of."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from texinspect.errors import ConfigError
from texinspect.losses import focal_loss
from texinspect.models.segmenter import PixelSegmenter


def test_output_has_the_input_side_and_starts_at_the_prior() -> None:
    net = PixelSegmenter(2, (8, 16, 32)).eval()
    with torch.no_grad():
        out = net(torch.rand(3, 2, 48, 40))
    assert out.shape == (3, 1, 48, 40)
    # the last bias starts at the focal prior, so every pixel begins as "normal" with p ~ 0.01
    assert float(torch.sigmoid(net.head.bias.detach())) == pytest.approx(0.01, rel=1e-4)
    assert net.stride == 4


def test_bad_widths_and_channels_are_refused() -> None:
    with pytest.raises(ConfigError, match="segmenter widths"):
        PixelSegmenter(2, (16,))
    with pytest.raises(ValueError, match="2 input channels, got 3"):
        PixelSegmenter(2, (4, 8))(torch.rand(1, 3, 16, 16))


def _toy_batch(g: torch.Generator, n: int = 8, side: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Image + 'reconstruction': the reconstruction lacks a random bright blob the image has."""
    image = torch.rand(n, 1, side, side, generator=g) * 0.3
    mask = torch.zeros(n, 1, side, side)
    for i in range(n):
        y, x = torch.randint(0, side - 8, (2,), generator=g).tolist()
        h, w = torch.randint(3, 8, (2,), generator=g).tolist()
        mask[i, :, y : y + h, x : x + w] = 1
    recon = image.clone()
    image = image + 0.5 * mask
    return torch.cat([image, recon], dim=1), mask


def test_it_learns_to_segment_what_the_reconstruction_lacks() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    net = PixelSegmenter(2, (8, 16))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    losses = []
    for _ in range(60):
        x, mask = _toy_batch(g)
        loss = focal_loss(net(x), mask, 0.25, 2.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    net.eval()
    x, mask = _toy_batch(torch.Generator().manual_seed(1))
    with torch.no_grad():
        prob = torch.sigmoid(net(x))
    assert roc_auc_score(mask.flatten().numpy() > 0.5, prob.flatten().numpy()) > 0.95
