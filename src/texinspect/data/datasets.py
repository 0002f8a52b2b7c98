"""Torch datasets over image records, and the train/validation split of the normal images.

Training re-reads the same few hundred images thousands of times, so decoded images are kept in
memory as uint8 (a 256 px RGB image is 192 KiB; 762 of them are about 150 MiB) instead of
re-decoding PNGs every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from texinspect.data.images import check_size_channels, load_image, load_mask
from texinspect.data.layout import ImageRecord
from texinspect.errors import ConfigError


class ImageDataset(Dataset):
    """Records -> {"image": (C,H,W) float in [0,1], "mask": (1,H,W) float, "label": int, "rel": str}.

    ``label`` is 0 (good), 1 (defect) or -1 (unknown); ``mask`` is zeros where there is no mask
    file (good images, unlabelled folders).
    """

    def __init__(self, records: Sequence[ImageRecord], size: int, channels: int, cache: bool = True) -> None:
        check_size_channels(size, channels)
        self.records = list(records)
        self.size = size
        self.channels = channels
        self.cache = cache
        self._images: dict[int, np.ndarray] = {}
        self._masks: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.records)

    def _image(self, index: int) -> np.ndarray:
        if index in self._images:
            return _from_cache(self._images[index])
        image = load_image(self.records[index].path, self.size, self.channels)
        if self.cache:
            self._images[index] = _to_cache(image)
        return image

    def _mask(self, index: int) -> np.ndarray:
        record = self.records[index]
        if record.mask_path is None:
            return np.zeros((self.size, self.size), dtype=np.float32)
        if index in self._masks:
            return self._masks[index].astype(np.float32)
        mask = load_mask(record.mask_path, self.size)
        if self.cache:
            self._masks[index] = mask.astype(np.bool_)
        return mask

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index = index % len(self)
        record = self.records[index]
        label = record.label
        return {
            "image": torch.from_numpy(self._image(index)),
            "mask": torch.from_numpy(self._mask(index))[None],
            "label": -1 if label is None else int(label),
            "rel": record.rel,
        }

    def preload(self, progress: bool = False) -> None:
        """Decode every image now (e.g. before a timed training phase); no-op without cache."""
        if not self.cache:
            return
        for index in tqdm(range(len(self)), desc="loading images", disable=not progress, leave=False):
            self._image(index)
            self._mask(index)


def _to_cache(image: np.ndarray) -> np.ndarray:
    """uint8 when that is lossless (8-bit sources: always), else the float32 array itself."""
    quantised = np.round(image * 255.0).astype(np.uint8)
    if np.array_equal(quantised.astype(np.float32) / np.float32(255.0), image):
        return quantised
    return image


def _from_cache(stored: np.ndarray) -> np.ndarray:
    if stored.dtype == np.uint8:
        return stored.astype(np.float32) / np.float32(255.0)
    return stored.copy()


def split_train_val(
    records: Sequence[ImageRecord], val_fraction: float, seed: int
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Seeded random split; both parts keep the input order. At least one validation image when
    ``val_fraction > 0`` and there are two or more records, and never all of them."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    records = list(records)
    n = len(records)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = 0
    chosen = set(np.random.default_rng(seed).permutation(n)[:n_val].tolist())
    train = [r for i, r in enumerate(records) if i not in chosen]
    val = [r for i, r in enumerate(records) if i in chosen]
    return train, val
