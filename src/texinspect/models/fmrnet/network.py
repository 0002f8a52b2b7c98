"""FMR-Net generator and inference paths (Fig. 2 and Fig. 8 of the paper).

Patch network (a P x P patch, P a multiple of 32, widths w1..w5)::

    E1..E5   five DownBlocks (4x4 conv, stride 2, BN, LeakyReLU)         P/2 .. P/32
    z        flatten(E5) -> Linear -> latent_dim, projected on the unit sphere
    CMFM     phase 2 / inference: Q = A_N(z), z_hat = Q M (convex mix of memory entries)
    decoder  Linear(z_hat) -> BN -> LeakyReLU -> E5-shaped map
             up5 -> F4 ; G4 = GFRM(E4, F4) ; up4(cat(F4, G4)) -> F3 ; G3 = GFRM(E3, F3)
             up3(cat(F3, G3)) -> up2 -> 4x4 transposed conv -> sigmoid

F4 and F3 are the "memory-generated feature maps hierarchically upsampled from the CMFM"
(the decoder's own maps at the scale of the two deepest skips); the shallow skips E1/E2 are not
used, as the paper states. Choices are explained in ``README.md``.

Image paths (any size): images are cut into sliding-window patches (``patches.py``), all patches
go through the network as one batch (chunked only to bound memory), reconstructions are stitched
by averaging overlaps, and the multimodal map is computed on the stitched full-size image.

Resolution (extension, ``fmrnet.train_size`` > 0): the public image paths resize their input to
that side first (bilinear, antialiased) and resize maps back, as RB-AE's ``train_size`` does, so
a network trained at 128 px answers for 256 px images with 256 px maps. Window grids
(:meth:`FMRNet.patch_scores`) are those of the resized image.
"""

from __future__ import annotations

import math
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from texinspect.errors import ConfigError, ModelError
from texinspect.models.base import MAP_SCORE_RULE, Detector, resize_images, resize_maps
from texinspect.models.blocks import Encoder, UpBlock
from texinspect.models.fmrnet.cmfm import AddressingNetwork, nearest_entry_distance, read_memory
from texinspect.models.fmrnet.config import FMRNetConfig
from texinspect.models.fmrnet.gfrm import GFRM
from texinspect.models.fmrnet.inspection import check_modalities, multimodal_map
from texinspect.models.fmrnet.patches import (
    check_patching,
    extract_patches,
    make_grid,
    patch_grid_values,
    stitch,
    stitch_values,
)
from texinspect.models.segmenter import PixelSegmenter
from texinspect.scoring import gaussian_blur


def skip_levels(cfg: FMRNetConfig) -> tuple[int, ...]:
    """Encoder layers (1-based) whose maps reach the decoder through a GFRM; the paper: EL3, EL4."""
    levels = tuple(sorted({int(v) for v in cfg.gfrm_levels}))
    if any(not 1 <= v <= 4 for v in levels):
        raise ConfigError(f"fmrnet.gfrm_levels must name encoder layers 1-4, got {cfg.gfrm_levels}")
    return levels


PATCH_SCORE_RULE = "max_patch_memory_distance"


def work_size(cfg: FMRNetConfig, image_size: int) -> int:
    """Side the network trains and runs at: ``fmrnet.train_size``, or the images' own (0)."""
    return int(cfg.train_size or image_size)


class MultilevelResult(NamedTuple):
    """Multilevel detection: patch-level scores and flags, and the pixel map of flagged patches only."""

    maps: torch.Tensor  # (B, H, W); 0 where no flagged patch covers a pixel
    patch_scores: torch.Tensor  # (B, n_h, n_w)
    flagged: torch.Tensor  # (B, n_h, n_w) bool: patch score >= threshold


def _check_config(cfg: FMRNetConfig) -> None:
    """Refuse, in one line naming the key, a config the network cannot be built from."""
    check_patching(cfg.patch_size, cfg.patch_stride)
    check_modalities(cfg.modalities)
    if cfg.train_size and cfg.train_size < cfg.patch_size:
        raise ConfigError(
            f"fmrnet.train_size={cfg.train_size} is smaller than one window (fmrnet.patch_size={cfg.patch_size}); "
            "use 0 (the input's own size) or at least the window side"
        )
    if cfg.segmenter_training == "images" and cfg.segmentation != "pixel_unet":
        raise ConfigError(
            "fmrnet.segmenter_training=images trains the pixel segmenter: it needs fmrnet.segmentation=pixel_unet"
        )
    for key in ("patch_weight_power", "map_smoothing"):
        if not getattr(cfg, key) >= 0:
            raise ConfigError(f"fmrnet.{key} must be >= 0 (0 disables it), got {getattr(cfg, key)}")
    if len(cfg.widths) != 5:
        raise ConfigError(f"fmrnet.widths must list 5 encoder widths, got {cfg.widths}")
    for level in skip_levels(cfg):
        side = cfg.patch_size // 2**level
        if cfg.texton_size < 1 or side % cfg.texton_size:
            raise ConfigError(
                f"fmrnet.texton_size={cfg.texton_size} must divide the skip map of encoder layer {level} ({side} px)"
            )


def _check_segmenter(cfg: FMRNetConfig, stride: int) -> None:
    """The extension's segmenter halves its input ``len(widths)`` times: the scaled patch must allow it."""
    if not 0.0 < cfg.segmenter_scale <= 1.0:
        raise ConfigError(f"fmrnet.segmenter_scale: expected a fraction in (0, 1], got {cfg.segmenter_scale}")
    side = cfg.patch_size * cfg.segmenter_scale
    if side != int(side) or int(side) % stride:
        raise ConfigError(
            f"fmrnet.segmenter_widths / segmenter_scale: {len(cfg.segmenter_widths)} levels need patch sides "
            f"divisible by {stride}; fmrnet.patch_size {cfg.patch_size} x scale "
            f"{cfg.segmenter_scale} is {side:g}"
        )


class FMRNet(Detector):
    family: ClassVar[str] = "fmrnet"

    def __init__(self, cfg: FMRNetConfig, channels: int = 3) -> None:
        super().__init__()
        _check_config(cfg)
        self.cfg = cfg
        self.channels = int(channels)
        w1, w2, w3, w4, w5 = (int(w) for w in cfg.widths)
        self.latent_side = cfg.patch_size // 32
        flat = w5 * self.latent_side**2

        self.encoder = Encoder(self.channels, cfg.widths)
        self.to_latent = nn.Linear(flat, cfg.latent_dim)
        self.addressing = AddressingNetwork(cfg.latent_dim, cfg.memory_size) if cfg.use_cmfm else None
        self.from_latent = nn.Sequential(
            nn.Linear(cfg.latent_dim, flat), nn.Unflatten(1, (w5, self.latent_side, self.latent_side))
        )
        self.latent_act = nn.Sequential(nn.BatchNorm2d(w5), nn.LeakyReLU(0.2, inplace=True))
        levels = skip_levels(cfg)
        widths = [w1, w2, w3, w4, w5]

        def width_in(level: int) -> int:  # decoder input at encoder level ``level`` (1-based)
            return widths[level - 1] * (2 if level in levels else 1)

        self.up5 = UpBlock(w5, w4)
        self.up4 = UpBlock(width_in(4), w3)
        self.up3 = UpBlock(width_in(3), w2)
        self.up2 = UpBlock(width_in(2), w1)
        # choice: nearest upsampling + 3x3 conv for the last step (no checkerboard in the output image)
        self.out = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width_in(1), self.channels, 3, padding=1)
        )
        # Table II column D (use_gfrm=false): plain skip connections on the same paths
        self.gfrms = nn.ModuleDict(
            {str(lv): GFRM(cfg.texton_size, cfg.gfrm_temperature, cfg.gfrm_kernel) for lv in levels}
            if cfg.use_gfrm
            else {}
        )
        self.skip_levels = levels
        # extension (fmrnet.segmentation=pixel_unet): a trained segmenter instead of eq. (23)
        self.segmenter = (
            PixelSegmenter(2 * self.channels, cfg.segmenter_widths) if cfg.segmentation == "pixel_unet" else None
        )
        if self.segmenter is not None:
            _check_segmenter(cfg, self.segmenter.stride)
        self.register_buffer("memory", torch.zeros(cfg.memory_size, cfg.latent_dim))
        self.register_buffer("memory_ready", torch.zeros((), dtype=torch.bool))
        self.register_buffer("patch_threshold", torch.full((), math.nan))
        self.encoder_frozen = False

    # ------------------------------------------------------------------ parts

    def encoder_modules(self) -> list[nn.Module]:
        """What phase 2 freezes: everything that maps a patch to its latent code z."""
        return [self.encoder, self.to_latent]

    def decoder_modules(self) -> list[nn.Module]:
        return [self.from_latent, self.latent_act, self.up5, self.up4, self.up3, self.up2, self.out]

    def gfrm_modules(self) -> list[nn.Module]:
        return list(self.gfrms.values())

    def segmenter_modules(self) -> list[nn.Module]:
        """The extension's pixel segmenter (trained in phase 2), or nothing."""
        return [self.segmenter] if self.segmenter is not None else []

    def segment_logits(self, images: torch.Tensor, recs: torch.Tensor) -> torch.Tensor:
        """Extension: defect logits (B, 1, H, W) of the pixel segmenter on concat(image, reconstruction)."""
        if self.segmenter is None:
            raise ModelError("fmrnet.segmentation=multimodal: this network has no pixel segmenter")
        x = torch.cat([images, recs], dim=1)
        scale = self.cfg.segmenter_scale
        if scale == 1.0:
            return self.segmenter(x)
        size = x.shape[-2:]
        small = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False, antialias=True)
        return F.interpolate(self.segmenter(small), size=size, mode="bilinear", align_corners=False)

    def freeze_encoder(self) -> None:
        """Lock E (weights and BatchNorm statistics) so that it keeps matching the memory bank."""
        self.encoder_frozen = True
        for m in self.encoder_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> FMRNet:
        super().train(mode)
        if self.encoder_frozen:
            for m in self.encoder_modules():
                m.eval()
        return self

    def set_memory(self, memory: torch.Tensor) -> None:
        expected = tuple(self.memory.shape)
        if tuple(memory.shape) != expected:
            raise ModelError(f"memory bank has shape {tuple(memory.shape)}, the network expects {expected}")
        self.memory.copy_(memory.to(self.memory))
        self.memory_ready.fill_(True)

    @property
    def uses_memory(self) -> bool:
        """Whether the decoder reads the memory (CMFM on and a bank loaded)."""
        return self.addressing is not None and bool(self.memory_ready)

    # ------------------------------------------------------------------ resolution

    def to_work_size(self, images: torch.Tensor) -> torch.Tensor:
        """Images at the side the network runs at (``fmrnet.train_size``; unchanged when 0 or equal)."""
        side = int(self.cfg.train_size)
        return resize_images(images, side) if side else images

    # ------------------------------------------------------------------ image score

    @property
    def image_score_rule(self) -> str:
        if self.cfg.image_score == "patch" and bool(self.memory_ready):
            return PATCH_SCORE_RULE
        return MAP_SCORE_RULE

    def image_score(self, images: torch.Tensor, maps: torch.Tensor, smoothing: float) -> torch.Tensor:
        """``fmrnet.image_score=patch`` (default): the largest window score of :meth:`patch_scores`.

        The paper decides per patch from the memory distance and localises with the pixel map
        (multilevel detection). Measured on synthetic defects on held-out magnetic-tile normals
        (5-minute CPU model): image AUROC 0.83 with this rule vs 0.62 for the max of the smoothed
        multimodal map, whose maxima on normal images sit at the image border (one window only
        covers a corner, and its reconstruction is worst there). Without a memory bank (before
        ``memory-bank`` ran) the map rule is used.
        """
        if self.image_score_rule == PATCH_SCORE_RULE:
            return self.patch_scores(images).flatten(1).amax(dim=1)
        return super().image_score(images, maps, smoothing)

    @torch.no_grad()
    def score(self, images: torch.Tensor, smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Map and image score from one encoder pass (the patch rule reuses the window codes)."""
        if self.image_score_rule != PATCH_SCORE_RULE:
            return super().score(images, smoothing)
        x = self.to_work_size(images)
        recs, grid_scores = self._reconstruct(x, distances=True)
        assert grid_scores is not None
        maps = resize_maps(self.pixel_map(x, recs, grid_scores).float(), *images.shape[-2:])
        return maps, grid_scores.flatten(1).amax(dim=1)

    # ------------------------------------------------------------------ pixel map

    @property
    def weights_by_windows(self) -> bool:
        """Whether the pixel map is weighted by the window memory distances (needs the bank)."""
        return self.cfg.patch_weight_power > 0 and bool(self.memory_ready)

    def pixel_map(
        self, images: torch.Tensor, recs: torch.Tensor, window_scores: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Eq. (23) on the stitched reconstruction, then the soft multilevel weighting and smoothing.

        Soft multilevel detection (a choice, ``README.md``): every pixel's map value is multiplied by
        the mean memory distance of the windows covering it to the power ``patch_weight_power``, a
        graded form of the paper's hard patch gate; on synthetic defects the restoration alone
        outlines defects it reproduces, and the code distance says which windows are off-memory.
        ``window_scores`` (B, n_h, n_w) are :meth:`patch_scores` of ``images``.
        """
        if self.segmenter is not None:
            maps = torch.sigmoid(self.segment_logits(images, recs))[:, 0]
        else:
            maps = multimodal_map(images, recs, self.cfg.modalities, self.cfg.median_filter)
        if self.weights_by_windows:
            if window_scores is None:
                raise ModelError("fmrnet.patch_weight_power > 0: the pixel map needs the window scores")
            weights = self.stitch_window_scores(window_scores.to(maps), maps.shape[-2], maps.shape[-1])
            maps = maps * weights.pow(self.cfg.patch_weight_power)
        return gaussian_blur(maps, self.cfg.map_smoothing)

    def stitch_window_scores(self, window_scores: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, n_h, n_w) window scores -> (B, H, W): each pixel gets the mean over its windows.

        ``height`` x ``width`` is the image's size; the windows are those of its work size."""
        side = int(self.cfg.train_size)
        h, w = (side, side) if side else (height, width)
        grid = make_grid(window_scores.shape[0], h, w, self.cfg.patch_size, self.cfg.patch_stride)
        return resize_maps(stitch_values(window_scores.flatten(), grid), height, width)

    # ------------------------------------------------------------------ patch network

    def encode(self, patches: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Patches -> (the five encoder maps, latent code z on the unit sphere)."""
        feats = self.encoder(patches)
        z = F.normalize(self.to_latent(feats[-1].flatten(1)), dim=1)
        return feats, z

    def address(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eqs. (4)-(5): (query Q, restored code z_hat)."""
        if self.addressing is None:
            raise ModelError("this FMR-Net was built without the CMFM (fmrnet.use_cmfm=false)")
        q = self.addressing(z)
        return q, read_memory(q, self.memory)

    def decode(self, feats: list[torch.Tensor], code: torch.Tensor) -> torch.Tensor:
        """Code (restored or not) + the skip maps -> reconstructed patches in [0, 1].

        At each skip level the decoder's own map F (memory-generated) and G = GFRM(F_D, F) are
        concatenated (G = F_D with ``use_gfrm=false``).
        """
        x = self.latent_act(self.from_latent(code))
        for level, up in ((4, self.up5), (3, self.up4), (2, self.up3), (1, self.up2)):
            f = up(x)
            if level in self.skip_levels:
                key = str(level)
                g = self.gfrms[key](feats[level - 1], f) if key in self.gfrms else feats[level - 1]
                x = torch.cat([f, g], dim=1)
            else:
                x = f
        return torch.sigmoid(self.out(x))

    def generate(self, patches: torch.Tensor, use_memory: bool) -> dict[str, torch.Tensor]:
        """Training forward: reconstruction, code z, and (with memory) the query Q."""
        feats, z = self.encode(patches)
        out = {"z": z}
        code = z
        if use_memory:
            q, code = self.address(z)
            out["query"] = q
        out["rec"] = self.decode(feats, code)
        return out

    def reconstruct_patches(self, patches: torch.Tensor) -> torch.Tensor:
        feats, z = self.encode(patches)
        code = self.address(z)[1] if self.uses_memory else z
        return self.decode(feats, code)

    # ------------------------------------------------------------------ image paths

    #: Every window in one pass instead of ``inference_chunk``-sized chunks. The ONNX exporter sets
    #: it: the chunk loop branches on the batch size, which would fix the exported graph's batch
    #: (ONNX Runtime plans its own memory, so the chunks' memory bound is not needed there).
    single_pass: bool = False

    def _chunks(self, patches: torch.Tensor) -> list[torch.Tensor]:
        n = max(1, int(self.cfg.inference_chunk))
        if self.single_pass or patches.shape[0] <= n:
            return [patches]
        return list(patches.split(n))

    def _check_images(self, images: torch.Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != self.channels:
            raise ValueError(f"FMR-Net expects images (B, {self.channels}, H, W), got {tuple(images.shape)}")

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Reconstruction at the work size (the input's size unless ``fmrnet.train_size``): every
        patch through the network, overlaps averaged."""
        return self._reconstruct(self.to_work_size(images), distances=False)[0]

    def _reconstruct(self, images: torch.Tensor, distances: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Reconstruction and, with ``distances``, the window scores of :meth:`patch_scores` from
        the same encoder pass."""
        self._check_images(images)
        patches, grid = extract_patches(images, self.cfg.patch_size, self.cfg.patch_stride)
        recs, dists = [], []
        for chunk in self._chunks(patches):
            feats, z = self.encode(chunk)
            code = self.address(z)[1] if self.uses_memory else z
            recs.append(self.decode(feats, code))
            if distances:
                dists.append(nearest_entry_distance(z, self.memory))
        full = stitch(torch.cat(recs), grid)[0]
        return full, patch_grid_values(torch.cat(dists), grid) if distances else None

    @torch.no_grad()
    def anomaly_map(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> multimodal anomaly map (B, H, W) at input resolution."""
        x = self.to_work_size(images)
        recs, grid_scores = self._reconstruct(x, distances=self.weights_by_windows)
        return resize_maps(self.pixel_map(x, recs, grid_scores), *images.shape[-2:])

    @torch.no_grad()
    def patch_scores(self, images: torch.Tensor) -> torch.Tensor:
        """Early exit: (B, n_h, n_w) distance of each window's code to its nearest memory entry.

        Runs the encoder only (no decoder, no GFRM); windows as in :meth:`reconstruct`.
        """
        self._check_images(images)
        images = self.to_work_size(images)
        if not bool(self.memory_ready):
            raise ModelError(
                "patch scores need the memory bank: run `texinspect memory-bank` (or train) first"
            )
        patches, grid = extract_patches(images, self.cfg.patch_size, self.cfg.patch_stride)
        dists = torch.cat(
            [nearest_entry_distance(self.encode(c)[1], self.memory) for c in self._chunks(patches)]
        )
        return patch_grid_values(dists, grid)

    @torch.no_grad()
    def multilevel_map(self, images: torch.Tensor, patch_threshold: float | None = None) -> MultilevelResult:
        """Patch scores for every window; the pixel path only for windows scoring >= the threshold.

        ``patch_threshold`` defaults to the k-sigma threshold calibrated at training time. Pixels
        that no flagged window covers get 0 (not inspected further).
        """
        self._check_images(images)
        height, width = images.shape[-2:]
        images = self.to_work_size(images)
        thr = float(self.patch_threshold) if patch_threshold is None else float(patch_threshold)
        if math.isnan(thr):
            raise ModelError("no patch threshold: pass patch_threshold or use a model calibrated by `train`")
        patches, grid = extract_patches(images, self.cfg.patch_size, self.cfg.patch_stride)
        encoded = [self.encode(c) for c in self._chunks(patches)]
        z = torch.cat([e[1] for e in encoded])
        scores = nearest_entry_distance(z, self.memory)
        flagged = scores >= thr
        maps = images.new_zeros(images.shape[0], images.shape[2], images.shape[3])
        if bool(flagged.any()):
            idx = torch.nonzero(flagged, as_tuple=True)[0]
            # the encoder ran once for the scores; only the flagged windows are decoded
            skips = {lvl - 1: torch.cat([e[0][lvl - 1] for e in encoded])[idx] for lvl in self.skip_levels}
            feats = [skips.get(i, z.new_empty(0)) for i in range(5)]
            zs = z[idx]
            code = self.address(zs)[1] if self.uses_memory else zs
            recs = patches.clone()
            recs[idx] = self.decode(feats, code)
            stitched, cover = stitch(recs, grid, weights=flagged.float())
            full = torch.where(cover > 0, stitched, images)
            maps = self.pixel_map(images, full, patch_grid_values(scores, grid))
            maps = maps * (cover[:, 0] > 0)
        maps = resize_maps(maps, height, width)
        return MultilevelResult(maps, patch_grid_values(scores, grid), patch_grid_values(flagged, grid))


class Discriminator(nn.Module):
    """Shaped like the encoder (five DownBlocks) plus a 1x1 conv to one real/fake logit per patch.

    Returns the logit and the outputs of blocks 3 and 4 (after LeakyReLU) for the feature-matching
    perceptual loss of eq. (13).
    """

    def __init__(self, channels: int, widths: list[int]) -> None:
        super().__init__()
        self.features = Encoder(channels, widths)
        self.head = nn.Conv2d(int(widths[-1]), 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = self.features(x)
        logit = self.head(feats[-1]).mean(dim=(1, 2, 3))
        return logit, [feats[2], feats[3]]
