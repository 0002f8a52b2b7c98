"""The RB-AE network (paper Fig. 1) as a :class:`Detector`.

Encoder (5 down blocks) -> RBAMs on layers 3-5 using the fixed reference image's features ->
decoder with skips at the RBAM layers -> the input and the reconstruction re-enter the encoder ->
MSFDM on layers 1-3 -> one anomaly map (eq. 11). Everything inference needs is in the state dict:
the reference image and its encoder features are buffers, filled once after phase 1 by
:meth:`RBAENet.set_reference` with the frozen encoder, so ``load_detector`` restores the whole
model from ``weights.pt`` and inference never re-encodes the reference.

Resolution: the network runs at ``size`` (``rbae.train_size``, default ``data.image_size``), the
resolution it was trained at and at which the reference features were taken. Inputs of another
size are resized to it (bilinear, antialiased) and the map is resized back, so a model trained at
128 px answers for 256 px images with a 256 px map.
"""

from __future__ import annotations

import torch
from torch import nn

from texinspect.errors import ConfigError, ModelError
from texinspect.models.base import Detector, resize_images, resize_maps
from texinspect.models.blocks import Encoder
from texinspect.models.rbae.config import RBAEConfig
from texinspect.models.rbae.decoder import Decoder
from texinspect.models.rbae.msfdm import MSFDM, msfr_map, pixel_gap_map
from texinspect.models.rbae.rbam import RBAM
from texinspect.models.segmenter import PixelSegmenter
from texinspect.scoring import ssim_map

N_LAYERS = 5
RBAM_LAYERS = (3, 4, 5)  # 1-based: the three deepest encoder layers (paper III-C4)
SKIP_LAYERS = (3, 4)  # decoder skips (layer 5 is the bottleneck input)
MSFDM_LAYERS = 3  # layers 1-3 feed the MSFDM


class RBAENet(Detector):
    family = "rbae"

    def __init__(self, cfg: RBAEConfig, channels: int, size: int) -> None:
        super().__init__()
        widths = [int(w) for w in cfg.widths]
        if len(widths) != N_LAYERS:
            raise ConfigError(
                f"rbae.widths: RB-AE has {N_LAYERS} encoder layers, got {len(widths)} widths {widths}"
            )
        if size % 2**N_LAYERS:
            raise ConfigError(f"rbae.train_size / data.image_size: {size} is not a multiple of {2**N_LAYERS}")
        self.size = int(size)
        self.channels = int(channels)
        self.segmentation = cfg.segmentation
        self.use_rbam = bool(cfg.use_rbam)
        self.encoder = Encoder(channels, widths)
        self.rbams = nn.ModuleDict()
        if self.use_rbam:
            for layer in RBAM_LAYERS:
                self.rbams[str(layer)] = RBAM(
                    widths[layer - 1],
                    cfg.patch_sizes,
                    cfg.attention_temperature,
                    cfg.ffm_kernel,
                    cfg.ffm_channels,
                )
        self.decoder = Decoder(widths, channels, SKIP_LAYERS)
        self.msfdm = (
            MSFDM(widths[:MSFDM_LAYERS], cfg.msfdm_hidden, cfg.msfdm_lambdas)
            if cfg.segmentation == "msfdm"
            else None
        )
        # Extension (rbae.segmentation=pixel_unet): segmenter on the pixels of image + reconstruction
        self.segmenter = PixelSegmenter(2 * channels, cfg.segmenter_widths) if cfg.segmentation == "pixel_unet" else None
        self.register_buffer("reference_image", torch.zeros(1, channels, size, size))
        for layer in RBAM_LAYERS:
            side = size // 2**layer
            self.register_buffer(f"reference_feat{layer}", torch.zeros(1, widths[layer - 1], side, side))
        self.register_buffer("reference_ready", torch.zeros((), dtype=torch.bool))
        self.encoder_frozen = False

    # ------------------------------------------------------------------ training helpers

    def freeze_encoder(self) -> None:
        """Phase 2: no gradients into the encoder and its BatchNorm statistics stay fixed."""
        self.encoder_frozen = True
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.encoder.eval()

    def train(self, mode: bool = True) -> RBAENet:
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self

    @torch.no_grad()
    def set_reference(self, image: torch.Tensor) -> None:
        """Store the fixed reference image (1, C, size, size) and its frozen-encoder features."""
        if image.dim() == 3:
            image = image[None]
        if image.shape[1:] != self.reference_image.shape[1:]:
            raise ModelError(
                f"reference image has shape {tuple(image.shape[1:])}, the network expects {tuple(self.reference_image.shape[1:])}"
            )
        was_training = self.encoder.training
        self.encoder.eval()
        image = image.to(self.reference_image.device, self.reference_image.dtype)
        feats = self.encoder(image)
        self.encoder.train(was_training and not self.encoder_frozen)
        self.reference_image.copy_(image)
        for layer in RBAM_LAYERS:
            getattr(self, f"reference_feat{layer}").copy_(feats[layer - 1])
        self.reference_ready.fill_(True)

    def reference_features(self, layer: int) -> torch.Tensor:
        return getattr(self, f"reference_feat{layer}")

    # ------------------------------------------------------------------ forward pieces

    def repair(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Apply the RBAMs to layers 3-5 (identity without RBAM: Table V column B)."""
        if not self.use_rbam:
            return list(feats)
        if not bool(self.reference_ready):
            raise ModelError(
                "RB-AE has no reference features yet: call set_reference() (done after training phase 1)"
            )
        out = list(feats)
        for layer in RBAM_LAYERS:
            out[layer - 1] = self.rbams[str(layer)](feats[layer - 1], self.reference_features(layer))
        return out

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """(reconstruction, encoder features, repaired features) of images at ``size``."""
        feats = self.encoder(x)
        repaired = self.repair(feats)
        return self.decoder(repaired), feats, repaired

    def segment_logits(self, feats_in: list[torch.Tensor], recon: torch.Tensor) -> list[torch.Tensor]:
        """MSFDM logits per scale from the input's layer 1-3 features and the reconstruction."""
        if self.msfdm is None:
            raise ModelError(f"rbae.segmentation={self.segmentation}: this network has no MSFDM")
        feats_rec = self.encoder(recon, depth=MSFDM_LAYERS)
        return self.msfdm(feats_in[:MSFDM_LAYERS], feats_rec)

    def pixel_logits(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """Extension: the pixel segmenter's logits (B, 1, H, W) on concat(image, reconstruction)."""
        if self.segmenter is None:
            raise ModelError(f"rbae.segmentation={self.segmentation}: this network has no pixel segmenter")
        return self.segmenter(torch.cat([x, recon], dim=1))

    def map_at_size(self, x: torch.Tensor) -> torch.Tensor:
        """Anomaly map (B, size, size) of images already at the network's size."""
        recon, feats, _ = self.reconstruct(x)
        size = (x.shape[-2], x.shape[-1])
        if self.segmentation == "msfdm":
            assert self.msfdm is not None
            return self.msfdm.fuse(self.segment_logits(feats, recon), size)
        if self.segmentation == "pixel_unet":
            return torch.sigmoid(self.pixel_logits(x, recon))[:, 0]
        if self.segmentation == "pixel_gap":
            return pixel_gap_map(x, recon)
        if self.segmentation == "msfr":
            feats_rec = self.encoder(recon, depth=MSFDM_LAYERS)
            return msfr_map(feats[:MSFDM_LAYERS], feats_rec, size)
        if self.segmentation == "ssim":
            return 1.0 - ssim_map(x, recon)
        raise ModelError(f"unknown rbae.segmentation '{self.segmentation}'")

    def anomaly_map(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != self.channels:
            raise ValueError(f"RB-AE expects images (B, {self.channels}, H, W), got {tuple(images.shape)}")
        return resize_maps(self.map_at_size(resize_images(images, self.size)), *images.shape[-2:])
