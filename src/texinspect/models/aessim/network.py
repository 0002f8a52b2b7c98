"""The AE-SSIM network: Bergmann et al.'s patch autoencoder, run over whole images without loops.

Architecture (Bergmann, Löwe, Fauser, Sattlegger, Steger 2018, Table 1), for a ``P x P`` patch:
conv 32 4x4/2, 32 4x4/2, 32 3x3/1, 64 4x4/2, 64 3x3/1, 128 4x4/2, 64 3x3/1, 32 3x3/1, then a
``P/16 x P/16`` valid convolution to a ``LATENT_DIM`` vector (P = 128: the paper's 8x8 -> 100);
the decoder mirrors it with transposed convolutions. LeakyReLU(0.2) everywhere except the latent
(linear) and the output (sigmoid, so reconstructions lie in [0, 1] like the inputs).

One change from the paper, measured: BatchNorm after every hidden convolution (as in the shared
encoder blocks of RB-AE and FMR-Net). Without it the SSIM loss sits on its starting plateau for
hundreds of steps (the paper trains for hours on a GPU): on a fixed batch of four smooth 64 px
images, 60 steps gave 1 - SSIM = 0.736 (paper recipe, Adam 2e-4), 0.610 (no BN, 1e-3), 0.530
(BN, 2e-4) and 0.076 (BN, 1e-3, the choice here; see ``trainer.LR``). A baseline that cannot
leave its plateau within the shared wall-clock budget would flatter the other rows.

Whole images: overlapping ``P x P`` windows (stride ``INFER_STRIDE``; the paper uses 30 px, 32
tiles a 256 px image exactly) are cut with ``unfold``, reconstructed as one batch, and averaged
back with ``fold``; the anomaly map is ``1 - SSIM(image, reconstruction)`` with an 11x11 Gaussian
window (the paper's window), averaged over channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from texinspect.errors import ConfigError
from texinspect.models.base import Detector
from texinspect.scoring import ssim_map

PATCH = 128  # training / inference window (smaller images use the whole image)
LATENT_DIM = 100
INFER_STRIDE_DIVISOR = 4  # window stride = patch / 4 (32 px for 128 px windows)
SSIM_WINDOW = 11
INFER_CHUNK = 128  # windows per forward pass at inference (bounds memory, not a per-patch loop)

# (out channels, kernel, stride) of encoder layers 1-8; the latent layer is added in __init__.
_ENCODER = [(32, 4, 2), (32, 4, 2), (32, 3, 1), (64, 4, 2), (64, 3, 1), (128, 4, 2), (64, 3, 1), (32, 3, 1)]


def patch_size_for(image_size: int) -> int:
    """Window side for ``image_size``: ``PATCH``, or the whole image when it is smaller."""
    p = min(PATCH, int(image_size))
    if p < 16 or p % 16:
        raise ConfigError(f"data.image_size: AE-SSIM needs a multiple of 16 (>= 16), got {image_size}")
    return p


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class PatchAutoencoder(nn.Module):
    """``(N, C, P, P) -> (N, C, P, P)`` through a ``LATENT_DIM`` bottleneck vector."""

    def __init__(self, channels: int, patch: int, latent_dim: int = LATENT_DIM) -> None:
        super().__init__()
        enc: list[nn.Module] = []
        chans = channels
        for out, k, s in _ENCODER:
            enc += [nn.Conv2d(chans, out, k, s, padding=1, bias=False), nn.BatchNorm2d(out), _act()]
            chans = out
        enc.append(nn.Conv2d(chans, latent_dim, patch // 16))  # valid: (P/16)^2 -> 1x1 latent
        # decoder: the encoder read backwards; stride-2 layers become transposed convolutions
        dec: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, chans, patch // 16, bias=False), nn.BatchNorm2d(chans), _act()]
        targets = [c for c, _, _ in _ENCODER[:-1]][::-1] + [channels]
        for i, ((_, k, s), out) in enumerate(zip(_ENCODER[::-1], targets, strict=True)):
            conv = nn.ConvTranspose2d if s == 2 else nn.Conv2d
            if i == len(targets) - 1:
                dec += [conv(chans, out, k, s, padding=1), nn.Sigmoid()]
            else:
                dec += [conv(chans, out, k, s, padding=1, bias=False), nn.BatchNorm2d(out), _act()]
            chans = out
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class AESSIMNet(Detector):
    """Detector: reconstruct overlapping windows, average them, map = 1 - SSIM."""

    family = "aessim"

    def __init__(self, channels: int, image_size: int) -> None:
        super().__init__()
        self.channels = int(channels)
        self.image_size = int(image_size)
        self.patch = patch_size_for(image_size)
        self.stride = max(1, self.patch // INFER_STRIDE_DIVISOR)
        self.ae = PatchAutoencoder(self.channels, self.patch)

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Whole-image reconstruction ``(B, C, H, W)``: windows cut, reconstructed, averaged."""
        if images.dim() != 4 or images.shape[1] != self.channels:
            raise ValueError(f"AE-SSIM expects (B, {self.channels}, H, W) images, got {tuple(images.shape)}")
        b, c, h, w = images.shape
        p, s = self.patch, self.stride
        if h < p or w < p:
            raise ValueError(f"AE-SSIM: images of {h}x{w} px are smaller than its {p} px window")
        # pad (edge values) so that the windows tile the image exactly; cropped again below
        ph = (math.ceil((h - p) / s) * s + p) - h
        pw = (math.ceil((w - p) / s) * s + p) - w
        x = F.pad(images, (0, pw, 0, ph), mode="replicate") if ph or pw else images
        hh, ww = h + ph, w + pw
        cols = F.unfold(x, p, stride=s)  # (B, C*p*p, L)
        n_win = cols.shape[-1]
        windows = cols.transpose(1, 2).reshape(b * n_win, c, p, p)
        if images.is_contiguous(memory_format=torch.channels_last):
            windows = windows.contiguous(memory_format=torch.channels_last)
        rec = torch.cat([self.ae(chunk) for chunk in windows.split(INFER_CHUNK)])
        rec_cols = rec.reshape(b, n_win, c * p * p).transpose(1, 2)
        summed = F.fold(rec_cols, (hh, ww), p, stride=s)
        counts = F.fold(torch.ones_like(rec_cols[:1]), (hh, ww), p, stride=s)
        return (summed / counts)[..., :h, :w]

    def anomaly_map(self, images: torch.Tensor) -> torch.Tensor:
        rec = self.reconstruct(images)
        return 1.0 - ssim_map(images.float(), rec.float(), window=SSIM_WINDOW)
