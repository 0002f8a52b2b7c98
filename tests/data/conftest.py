"""Fixtures for the data-layer tests: tiny MVTec-layout folders built from random pixels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from texinspect.data.sample import make_sample_dataset


def write_image(path: Path, array: np.ndarray) -> Path:
    """Save a uint8 (H,W) or (H,W,3) array as an image file, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def random_pixels(rng: np.random.Generator, size: int, channels: int = 1) -> np.ndarray:
    shape = (size, size) if channels == 1 else (size, size, channels)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def square_mask(size: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[size // 4 : size // 2, size // 4 : size // 2] = 255
    return mask


@pytest.fixture
def build_mvtec(tmp_path: Path) -> Callable[..., Path]:
    """Builder: ``build_mvtec(n_train=3, test={"good": 1, "crack": 2}, size=16)`` -> dataset root.

    Every defect image gets a mask of the same size (a filled square), so the result is clean and
    each test breaks exactly one thing.
    """

    def build(n_train: int = 3, test: dict[str, int] | None = None, size: int = 16, name: str = "ds") -> Path:
        rng = np.random.default_rng(0)
        root = tmp_path / name
        (root / "train" / "good").mkdir(parents=True, exist_ok=True)
        for i in range(n_train):
            write_image(root / "train" / "good" / f"{i:03d}.png", random_pixels(rng, size))
        for defect_type, n in (test if test is not None else {"good": 1, "crack": 2}).items():
            (root / "test" / defect_type).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                write_image(root / "test" / defect_type / f"{i:03d}.png", random_pixels(rng, size))
                if defect_type != "good":
                    write_image(root / "ground_truth" / defect_type / f"{i:03d}_mask.png", square_mask(size))
        return root

    return build


@pytest.fixture
def tools() -> SimpleNamespace:
    """The helpers above, for test modules (tests/data is not a package, so no imports)."""
    return SimpleNamespace(write=write_image, pixels=random_pixels, square_mask=square_mask)


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small procedural dataset shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("sample") / "granular"
    make_sample_dataset(root, n_train=6, n_test_good=3, n_test_defect_per_type=2, size=64, seed=3)
    return root
