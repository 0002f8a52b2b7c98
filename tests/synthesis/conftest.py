"""Shared helpers for the synthesis tests: small procedural images and MVTec-layout folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

REPO = Path(__file__).resolve().parents[2]
TEXTURE_POOL = REPO.parent / "shared" / "datasets" / "texture_pool"
MAGNETIC_TILE = REPO.parent / "shared" / "datasets" / "magnetic_tile"


def textured_image(size: int, channels: int, seed: int) -> np.ndarray:
    """A float32 (C,H,W) image with texture (stripes + noise), not flat: pastes must show."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 0.5 + 0.2 * np.sin(2 * np.pi * (rng.uniform(3, 8) * yy + rng.uniform(0, 1)))
    image = base[None] + 0.05 * rng.standard_normal((1, size, size))
    return np.clip(np.repeat(image, channels, axis=0), 0, 1).astype(np.float32)


class ArrayDataset(Dataset):
    """Normal images as the training code gives them: {"image": (C,H,W) tensor, "rel": str}."""

    def __init__(self, n: int, size: int, channels: int) -> None:
        self.images = [torch.from_numpy(textured_image(size, channels, seed=i)) for i in range(n)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "rel": f"img{index}.png"}


def write_mvtec(root: Path, n_train: int, size: int) -> Path:
    """A tiny dataset in MVTec layout (train/good only is what the synthesize stage reads)."""
    folder = root / "train" / "good"
    folder.mkdir(parents=True)
    for i in range(n_train):
        array = (textured_image(size, 1, seed=100 + i)[0] * 255).round().astype(np.uint8)
        Image.fromarray(array).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture
def normal_dataset() -> ArrayDataset:
    return ArrayDataset(6, 32, 3)
