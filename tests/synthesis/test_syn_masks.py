"""Perlin noise and the three mask kinds."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from texinspect.config import MaskConfig
from texinspect.errors import ConfigError
from texinspect.synthesis.masks import (
    draw_mask,
    mask_area,
    perlin_mask,
    perlin_noise,
    random_mask,
    shape_mask,
    smooth_noise,
    soft_mask,
    validate_mask_config,
)


def test_perlin_noise_shape_range_dtype() -> None:
    noise = perlin_noise(48, 80, (4, 5), np.random.default_rng(0), angle=0.7)
    assert noise.shape == (48, 80) and noise.dtype == np.float32
    assert noise.min() >= -1.0 and noise.max() <= 1.0
    assert noise.std() > 0.05  # real noise, not a constant


def test_perlin_noise_deterministic_per_seed() -> None:
    a = perlin_noise(32, 32, (4, 4), np.random.default_rng(3))
    b = perlin_noise(32, 32, (4, 4), np.random.default_rng(3))
    c = perlin_noise(32, 32, (4, 4), np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_perlin_noise_is_zero_on_lattice_points() -> None:
    # Gradient noise vanishes at every lattice corner: checks the interpolation is Perlin's.
    h = w = 64
    res = 4
    noise = perlin_noise(h, w, (res, res), np.random.default_rng(1))
    # 16 px per cell: pixels 0, 16, 32.. sit 1/32 of a cell from a corner, pixels 8, 24.. near
    # cell centres, where gradient noise is largest on average.
    corners = noise[np.ix_(np.arange(0, h, 16), np.arange(0, w, 16))]
    centres = noise[np.ix_(np.arange(8, h, 16), np.arange(8, w, 16))]
    assert np.abs(corners).mean() < 0.5 * np.abs(centres).mean()


def test_perlin_noise_smooth_between_neighbours() -> None:
    noise = perlin_noise(128, 128, (2, 2), np.random.default_rng(2))
    assert np.abs(np.diff(noise, axis=0)).max() < 0.1
    assert np.abs(np.diff(noise, axis=1)).max() < 0.1


def test_rotation_turns_anisotropic_noise() -> None:
    # 16 x 1 cells: streaks along x. Rotated by 90 degrees they run along y instead.
    rng = np.random.default_rng(5)
    straight = perlin_noise(64, 64, (16, 1), rng)
    turned = perlin_noise(64, 64, (16, 1), np.random.default_rng(5), angle=math.pi / 2)
    dy = lambda a: np.abs(np.diff(a, axis=0)).mean()  # noqa: E731
    dx = lambda a: np.abs(np.diff(a, axis=1)).mean()  # noqa: E731
    assert dy(straight) > 3 * dx(straight)
    assert dx(turned) > 3 * dy(turned)


def test_smooth_noise_matches_full_resolution_statistics() -> None:
    fast = smooth_noise(128, 128, (2, 2), np.random.default_rng(0))
    assert fast.shape == (128, 128) and fast.dtype == np.float32
    assert -1.0 <= fast.min() and fast.max() <= 1.0 and fast.std() > 0.05


@pytest.mark.parametrize("maker", [perlin_mask, shape_mask])
def test_binary_masks(maker) -> None:
    cfg = MaskConfig()
    rng = np.random.default_rng(0)
    nonempty = 0
    for _ in range(20):
        mask = maker(64, 64, rng, cfg)
        assert mask.shape == (64, 64) and mask.dtype == np.float32
        assert set(np.unique(mask)) <= {0.0, 1.0}
        nonempty += bool(mask.any())
    assert nonempty >= 10  # raw draws may be empty (redrawn by random_mask), most are not


def test_soft_mask_is_large_smooth_and_continuous() -> None:
    cfg = MaskConfig()
    rng = np.random.default_rng(0)
    for _ in range(10):
        mask = soft_mask(64, 64, rng, cfg)
        assert mask.min() >= 0.0 and mask.max() <= 1.0
        intermediate = np.mean((mask > 0.05) & (mask < 0.95))
        assert intermediate > 0.01  # soft edges, not a binary blob
        assert 0.03 < mask_area(mask) < 0.6  # large region (8-40 % by design)
        assert np.abs(np.diff(mask, axis=0)).max() < 0.5  # no hard steps


@pytest.mark.parametrize("kind", ["perlin", "shape", "soft"])
def test_random_masks_respect_min_area(kind: str) -> None:
    cfg = MaskConfig(min_area=0.01)
    rng = np.random.default_rng(11)
    for _ in range(15):
        mask, got = draw_mask(64, 64, rng, cfg, kind=kind)
        assert got == kind
        assert mask_area(mask) >= 0.01
        assert mask.min() >= 0.0 and mask.max() <= 1.0


def test_random_mask_draws_all_kinds_with_config_probabilities() -> None:
    cfg = MaskConfig(shape_probability=0.3, soft_probability=0.25)
    rng = np.random.default_rng(0)
    kinds = [draw_mask(32, 32, rng, cfg)[1] for _ in range(400)]
    share = {k: kinds.count(k) / len(kinds) for k in ("perlin", "shape", "soft")}
    assert abs(share["soft"] - 0.25) < 0.07 and abs(share["shape"] - 0.3) < 0.07
    mask = random_mask(32, 32, np.random.default_rng(0), cfg)
    assert mask.shape == (32, 32) and mask.dtype == np.float32


def test_unreachable_area_falls_back_to_an_ellipse() -> None:
    cfg = MaskConfig(perlin_threshold=0.99, min_area=0.05)  # Perlin never exceeds 0.99 in practice
    mask, kind = draw_mask(64, 64, np.random.default_rng(0), cfg, kind="perlin")
    assert kind == "perlin" and mask_area(mask) >= 0.05


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("perlin_scale_min", -1),
        ("perlin_threshold", 1.5),
        ("shape_probability", 1.2),
        ("min_area", 0.7),
        ("max_shapes", 0),
    ],
)
def test_bad_mask_config_names_the_key(field: str, value) -> None:
    cfg = dataclasses.replace(MaskConfig(), **{field: value})
    with pytest.raises(ConfigError, match=f"synthesis.mask.{field}"):
        validate_mask_config(cfg)
