"""DefectSynthesizer: every kind, reproducibility, labels that follow the visible change."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from texinspect.config import SynthesisConfig
from texinspect.errors import ConfigError
from texinspect.synthesis.pool import TexturePool
from texinspect.synthesis.synthesizer import DefectSynthesizer, visible_change

from .conftest import textured_image

SIZE = 48


def make(channels: int = 3, **changes) -> DefectSynthesizer:
    cfg = dataclasses.replace(SynthesisConfig(texture_pool=""), **changes)
    return DefectSynthesizer(
        cfg, SIZE, channels, pool=TexturePool("", SIZE, channels, seed=0, procedural_count=8)
    )


def test_same_seed_same_defect_different_seed_different() -> None:
    synth = make()
    image = textured_image(SIZE, 3, 0)
    a = synth(image, np.random.default_rng(5))
    b = synth(image, np.random.default_rng(5))
    c = synth(image, np.random.default_rng(6))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not (np.array_equal(a[0], c[0]) and np.array_equal(a[1], c[1]))


@pytest.mark.parametrize("kind", ["destructive", "translucent", "self_texture", "shift"])
def test_each_kind_changes_only_inside_its_mask(kind: str) -> None:
    synth = make()
    image = textured_image(SIZE, 3, 1)
    other = textured_image(SIZE, 3, 2)
    for seed in range(6):
        d = synth.draw(image, np.random.default_rng(seed), other_normal=other, kind=kind)
        assert d.kind == kind
        assert d.image.shape == image.shape and d.image.dtype == np.float32
        assert d.mask.shape == (SIZE, SIZE) and set(np.unique(d.mask)) <= {0.0, 1.0}
        assert 0.0 <= d.image.min() and d.image.max() <= 1.0
        outside = d.drawn_mask == 0
        np.testing.assert_array_equal(d.image[:, outside], image[:, outside])  # region-only blend
        assert d.mask[outside].sum() == 0  # label never outside the drawn mask
        assert d.area >= synth.cfg.mask.min_area
        # label marks visible change: the mean change under the label dominates the rest
        diff = np.abs(d.image - image).mean(0)
        assert diff[d.mask > 0].mean() > 3 * diff[d.mask == 0].mean()
        if kind == "destructive":
            assert d.lam == 1.0
        elif kind == "translucent":
            assert synth.cfg.transparency_min <= d.lam < synth.cfg.transparency_max
        elif kind == "shift":
            assert np.isnan(d.lam) and d.mask_kind == "soft"


def test_kind_probabilities_follow_config() -> None:
    synth = make(shift_probability=0.2, self_texture_probability=0.3, destructive_probability=0.5)
    rng = np.random.default_rng(0)
    kinds = [synth.draw_kind(rng) for _ in range(2000)]
    share = {k: kinds.count(k) / len(kinds) for k in set(kinds)}
    assert share["shift"] == pytest.approx(0.2, abs=0.03)
    assert share["self_texture"] == pytest.approx(0.3, abs=0.03)
    assert share["destructive"] == pytest.approx(0.25, abs=0.03)
    assert share["translucent"] == pytest.approx(0.25, abs=0.03)


def test_global_transparency_changes_the_whole_image() -> None:
    synth = make(transparency_mode="global", transparency_min=0.3, transparency_max=0.6)
    image = textured_image(SIZE, 3, 3)
    d = synth.draw(image, np.random.default_rng(0), kind="translucent")
    outside = d.drawn_mask == 0
    assert np.abs(d.image - image)[:, outside].mean() > 0.02  # eq. (1) as printed: I_d everywhere
    assert d.area > (d.drawn_mask >= 0.5).mean()  # label covers the visibly changed outside too


def test_grayscale_images_get_grayscale_defects() -> None:
    synth = make(channels=3)
    image = textured_image(SIZE, 3, 4)  # three equal channels
    for seed in range(5):
        d = synth.draw(image, np.random.default_rng(seed), kind="destructive")
        np.testing.assert_array_equal(d.image[0], d.image[1])
        np.testing.assert_array_equal(d.image[0], d.image[2])


def test_visible_change_threshold() -> None:
    io = np.zeros((1, 8, 8), np.float32)
    out = io.copy()
    out[:, 2:6, 2:6] = 0.1
    assert visible_change(io, out, None, 0.05)[2:6, 2:6].all()
    assert not visible_change(io, out, None, 0.2).any()
    support = np.zeros((8, 8), np.float32)
    support[:4] = 1
    assert not visible_change(io, out, support, 0.05)[4:].any()


def test_wrong_image_shape_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"expects an image of shape \(3, 48, 48\)"):
        make()(np.zeros((3, 32, 32), np.float32), np.random.default_rng(0))


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"transparency_min": 0.0}, "synthesis.transparency_min"),
        ({"shift_probability": 0.7, "self_texture_probability": 0.5}, "synthesis.self_texture_probability"),
        ({"defect_probability": 2.0}, "synthesis.defect_probability"),
        ({"shift_min": 0.5, "shift_max": 0.1}, "synthesis.shift_min"),
        ({"label_threshold": -0.1}, "synthesis.label_threshold"),
    ],
)
def test_bad_config_names_the_key(changes: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        make(**changes)
