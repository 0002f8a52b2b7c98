"""Texture pool: folder sampling, LRU cache, procedural fallback with a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from texinspect.synthesis.pool import TexturePool, augment, procedural_texture

from .conftest import TEXTURE_POOL


def _write_pool(folder: Path, n: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(folder / f"t{i}.png")


@pytest.mark.parametrize("folder", ["", "definitely/not/here"])
def test_missing_folder_falls_back_to_procedural_with_a_warning(folder: str, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="texinspect.synthesis.pool"):
        pool = TexturePool(folder, size=32, channels=3, seed=1, procedural_count=5)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "procedural" in r.getMessage()]
    assert len(warnings) == 1
    assert pool.procedural and len(pool) == 5 and pool.description == "procedural (5 textures)"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="texinspect.synthesis.pool"):
        for k in range(10):
            sample = pool.sample(np.random.default_rng(k))
    assert not caplog.records  # warned once, at construction, not per sample
    assert sample.shape == (3, 32, 32) and sample.dtype == np.float32
    assert 0.0 <= sample.min() and sample.max() <= 1.0


def test_procedural_textures_are_seeded_and_varied() -> None:
    a = TexturePool("", 32, 1, seed=3, procedural_count=8)
    b = TexturePool("", 32, 1, seed=3, procedural_count=8)
    np.testing.assert_array_equal(a.base(2), b.base(2))
    stds = [procedural_texture(32, 3, np.random.default_rng(i)).std() for i in range(10)]
    assert min(stds) > 0.01  # textures, not flat colours


def test_folder_pool_samples_are_reproducible(tmp_path: Path, caplog) -> None:
    _write_pool(tmp_path / "pool", 3)
    with caplog.at_level(logging.WARNING):
        pool = TexturePool(tmp_path / "pool", size=16, channels=1, cache_size=2)
    assert not pool.procedural and len(pool) == 3 and not caplog.records
    assert pool.description.endswith("(3 images)")
    x = pool.sample(np.random.default_rng(7))
    y = pool.sample(np.random.default_rng(7))
    assert x.shape == (1, 16, 16)
    np.testing.assert_array_equal(x, y)
    for i in range(3):
        pool.base(i)
    assert len(pool._cache) == 2  # LRU bound holds
    assert list(pool._cache) == [1, 2]


def test_empty_folder_falls_back(tmp_path: Path, caplog) -> None:
    (tmp_path / "empty").mkdir()
    with caplog.at_level(logging.WARNING):
        pool = TexturePool(tmp_path / "empty", 16, 3)
    assert pool.procedural and "has no images" in caplog.text


def test_augment_changes_image_but_keeps_range() -> None:
    image = np.random.default_rng(0).integers(0, 256, (3, 24, 24), dtype=np.uint8)
    outs = [augment(image, np.random.default_rng(i)) for i in range(5)]
    assert all(o.shape == (3, 24, 24) and o.dtype == np.float32 for o in outs)
    assert all(0.0 <= o.min() and o.max() <= 1.0 for o in outs)
    assert not np.allclose(outs[0], outs[1])
    with pytest.raises(TypeError, match="uint8"):
        augment(image.astype(np.float32), np.random.default_rng(0))


@pytest.mark.realdata
def test_real_texture_pool() -> None:
    if not TEXTURE_POOL.is_dir():
        pytest.skip(f"real texture pool not found at {TEXTURE_POOL} (see ../shared/datasets/README.md)")
    pool = TexturePool(TEXTURE_POOL, size=64, channels=3)
    assert not pool.procedural and len(pool) >= 100
    samples = [pool.sample(np.random.default_rng(i)) for i in range(4)]
    assert all(s.shape == (3, 64, 64) for s in samples)
    assert all(s.std() > 0.01 for s in samples)  # real textures, not blank decodes
