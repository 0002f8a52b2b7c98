"""Anomaly-source textures: a folder of natural images (the papers use ImageNet/DTD), or
procedural textures when no folder is available.

Images are listed up front but decoded lazily, and a small LRU cache of uint8 arrays keeps the
most recently used ones: the pool is sampled every training step, so a decode (~1-2 ms) must not
happen every time, but holding 1,200 decoded textures per DataLoader worker would waste memory.
Every sample is augmented (crop/zoom, rotation, flips, colour jitter) so a finite pool gives
many different anomaly sources.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from texinspect.data.images import check_size_channels, load_image
from texinspect.data.layout import list_images
from texinspect.synthesis.masks import fractal_noise, resize_bilinear, smooth_noise

log = logging.getLogger(__name__)

PROCEDURAL_KINDS = ("fractal", "stripes", "checker", "blobs", "cells")


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _gray(image: np.ndarray) -> np.ndarray:
    """(C,H,W) -> (1,H,W) luma (ITU-R 601, as ``load_image`` converts colour to 1 channel)."""
    if image.shape[0] == 1:
        return image
    w = np.array([0.299, 0.587, 0.114], np.float32)[:, None, None]
    return (image * w).sum(axis=0, keepdims=True, dtype=np.float32)


def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    if image.shape[0] == channels:
        return image
    if channels == 1:
        return _gray(image)
    return np.repeat(image, channels, axis=0)


def procedural_texture(size: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """One random texture, float32 (channels, size, size) in [0, 1]: fractal noise, stripes,
    checker, colour blobs or cell-like patterns, each with random colours and scales."""
    kind = PROCEDURAL_KINDS[int(rng.integers(len(PROCEDURAL_KINDS)))]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / np.float32(size)
    if kind == "fractal":
        res = float(2 ** rng.integers(1, 4))
        t = fractal_noise(size, size, (res, res), rng, octaves=4, persistence=rng.uniform(0.4, 0.7))
        t = 0.5 + 0.5 * t
    elif kind == "stripes":
        a = rng.uniform(0, math.pi)
        freq = rng.uniform(4, 40)
        warp = 0.05 * smooth_noise(size, size, (4.0, 4.0), rng)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * freq * (yy * math.sin(a) + xx * math.cos(a) + warp))
        if rng.random() < 0.5:
            t = (t > 0.5).astype(np.float32)
    elif kind == "checker":
        n = rng.uniform(3, 24)
        a = rng.uniform(0, math.pi / 2)
        u = yy * math.cos(a) - xx * math.sin(a)
        v = yy * math.sin(a) + xx * math.cos(a)
        t = ((np.floor(u * n) + np.floor(v * n)) % 2).astype(np.float32)
    elif kind == "blobs":
        res = float(2 ** rng.integers(1, 4))
        t = (smooth_noise(size, size, (res, res), rng, octaves=2) > rng.uniform(-0.2, 0.2)).astype(np.float32)
        t = 0.7 * t + 0.3 * (0.5 + 0.5 * smooth_noise(size, size, (16.0, 16.0), rng))
    else:  # cells: distance to random seed points (Worley-like), a pebble/crack texture
        n = int(rng.integers(8, 60))
        pts = rng.random((n, 2)).astype(np.float32)
        d = np.full((size, size), np.inf, np.float32)
        for py, px in pts:
            d = np.minimum(d, (yy - py) ** 2 + (xx - px) ** 2)
        t = np.sqrt(d) * math.sqrt(n)
        t = t / max(float(t.max()), 1e-6)
    c0, c1 = rng.random(3).astype(np.float32), rng.random(3).astype(np.float32)
    rgb = c0[:, None, None] + (c1 - c0)[:, None, None] * np.clip(t, 0.0, 1.0)[None]
    return _to_channels(rgb.astype(np.float32), channels)


class TexturePool:
    """Random anomaly-source images (C, size, size) in [0, 1] from ``folder``, or procedural ones.

    ``folder`` "" or a folder without images selects the procedural fallback and logs a WARNING
    (once, when the pool is made): training still works on a fresh machine, but defects drawn
    from real texture photographs resemble real defects better.
    """

    def __init__(
        self,
        folder: str | Path = "",
        size: int = 256,
        channels: int = 3,
        seed: int = 0,
        cache_size: int = 128,
        procedural_count: int = 64,
    ) -> None:
        check_size_channels(size, channels)
        self.folder = str(folder)
        self.size = size
        self.channels = channels
        self.seed = seed
        self.cache_size = max(0, cache_size)
        self.procedural_count = max(1, procedural_count)
        self.paths: list[Path] = []
        if self.folder and Path(self.folder).is_dir():
            self.paths = [r.path for r in list_images(self.folder)]
        if not self.paths:
            why = (
                "no folder configured"
                if not self.folder
                else (
                    f"'{self.folder}' has no images"
                    if Path(self.folder).is_dir()
                    else f"'{self.folder}' not found"
                )
            )
            log.warning(
                "texture pool: %s; using %d procedural textures as anomaly sources "
                "(set synthesis.texture_pool to a folder of texture photographs, e.g. DTD)",
                why,
                self.procedural_count,
            )
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    @property
    def procedural(self) -> bool:
        return not self.paths

    @property
    def description(self) -> str:
        """For run logs and MLflow params: what the anomaly sources actually were."""
        if self.procedural:
            return f"procedural ({self.procedural_count} textures)"
        return f"{self.folder} ({len(self.paths)} images)"

    def __len__(self) -> int:
        return len(self.paths) if self.paths else self.procedural_count

    def __getstate__(self) -> dict:
        # DataLoader workers get a copy: send it without the decoded cache.
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        return state

    def base(self, index: int) -> np.ndarray:
        """Texture ``index`` before augmentation, uint8 (C, size, size); LRU-cached.

        Procedural textures are seeded by (seed, index) so the pool is the same in every worker.
        """
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        if self.paths:
            image = _to_uint8(load_image(self.paths[index], self.size, self.channels))
        else:
            image = _to_uint8(
                procedural_texture(self.size, self.channels, np.random.default_rng([self.seed, index]))
            )
        limit = self.cache_size if self.paths else max(self.cache_size, self.procedural_count)
        if limit:
            self._cache[index] = image
            while len(self._cache) > limit:
                self._cache.popitem(last=False)
        return image

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """A random, augmented texture: float32 (C, size, size) in [0, 1]."""
        return augment(self.base(int(rng.integers(len(self)))), rng)


def random_zoom(image: np.ndarray, rng: np.random.Generator, min_scale: float = 0.4) -> np.ndarray:
    """Crop a random square of ``min_scale``..1 of the side and resize it back (texture scale);
    float32 (C,H,W) in, float32 out."""
    _, h, w = image.shape
    y0, x0, ch, cw = _zoom_box(h, w, rng, min_scale)
    crop = image[:, y0 : y0 + ch, x0 : x0 + cw]
    return np.stack([resize_bilinear(c, h, w) for c in crop])


def _zoom_box(h: int, w: int, rng: np.random.Generator, min_scale: float) -> tuple[int, int, int, int]:
    s = rng.uniform(min_scale, 1.0)
    ch, cw = max(2, int(h * s)), max(2, int(w * s))
    return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw


def _zoom_uint8(image: np.ndarray, rng: np.random.Generator, min_scale: float) -> np.ndarray:
    """``random_zoom`` on uint8 (C,H,W) with one PIL call (crop box + bilinear resize)."""
    c, h, w = image.shape
    y0, x0, ch, cw = _zoom_box(h, w, rng, min_scale)
    pil = Image.fromarray(image[0] if c == 1 else np.ascontiguousarray(image.transpose(1, 2, 0)))
    out = np.asarray(pil.resize((w, h), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch)))
    return out[None] if out.ndim == 2 else out.transpose(2, 0, 1)


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (C,H,W) -> float32 (C,H,W) in [0, 1]: random zoom, 90-degree rotation, flip, and
    colour jitter (contrast, brightness, per-channel gain, gamma, occasional inversion).

    The colour jitter is folded into one 256-entry lookup table per channel, so it costs a
    gather instead of several passes over the image (the pool is sampled every training step).
    """
    if image.dtype != np.uint8:
        raise TypeError(f"augment expects a uint8 image, got {image.dtype}")
    if rng.random() < 0.7:
        image = _zoom_uint8(image, rng, 0.4)
    image = np.rot90(image, int(rng.integers(4)), axes=(1, 2))
    if rng.random() < 0.5:
        image = image[:, :, ::-1]
    c = image.shape[0]
    mean = float(image[:, ::4, ::4].mean()) / 255.0
    contrast = rng.uniform(0.6, 1.4)
    brightness = rng.uniform(-0.2, 0.2)
    gains = rng.uniform(0.8, 1.2, size=c) if c > 1 else np.ones(1)
    gamma = rng.uniform(0.6, 1.6) if rng.random() < 0.5 else 1.0
    invert = rng.random() < 0.1
    v = np.arange(256, dtype=np.float64) / 255.0
    luts = []
    for gain in gains:
        t = np.clip(((v - mean) * contrast + mean + brightness) * gain, 0.0, 1.0) ** gamma
        luts.append((1.0 - t if invert else t).astype(np.float32))
    return np.stack([luts[k].take(image[k]) for k in range(c)])
