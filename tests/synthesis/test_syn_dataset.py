"""SyntheticDefectDataset: items depend only on (seed, epoch, index), with any worker count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from texinspect.config import SynthesisConfig
from texinspect.errors import ConfigError
from texinspect.synthesis.dataset import SyntheticDefectDataset
from texinspect.synthesis.pool import TexturePool
from texinspect.synthesis.synthesizer import DefectSynthesizer


def make(normal, seed: int = 0, p: float | None = None) -> SyntheticDefectDataset:
    pool = TexturePool("", 32, 3, seed=0, procedural_count=4)
    synth = DefectSynthesizer(SynthesisConfig(texture_pool=""), 32, 3, pool=pool)
    return SyntheticDefectDataset(normal, synth, seed=seed, defect_probability=p)


def collect(dataset, workers: int) -> dict[str, torch.Tensor]:
    loader = DataLoader(dataset, batch_size=3, shuffle=False, num_workers=workers)
    batches = list(loader)
    return {k: torch.cat([b[k] for b in batches]) for k in ("image", "defect", "mask", "has_defect")}


def test_item_layout(normal_dataset) -> None:
    item = make(normal_dataset, p=1.0)[2]
    assert item["image"].shape == (3, 32, 32) and item["defect"].shape == (3, 32, 32)
    assert item["mask"].shape == (1, 32, 32) and item["mask"].dtype == torch.float32
    assert item["has_defect"].dtype == torch.float32 and item["has_defect"].item() == 1.0
    assert item["mask"].sum() > 0 and not torch.equal(item["image"], item["defect"])
    torch.testing.assert_close(item["image"], normal_dataset[2]["image"])
    assert item["rel"] == "img2.png"


def test_no_defect_means_identical_image_and_empty_mask(normal_dataset) -> None:
    ds = make(normal_dataset, p=0.0)
    for i in range(len(ds)):
        item = ds[i]
        assert torch.equal(item["image"], item["defect"])
        assert item["mask"].sum() == 0 and item["has_defect"].item() == 0.0


def test_reproducible_across_two_passes_and_worker_counts(normal_dataset) -> None:
    ds = make(normal_dataset, seed=3)
    ds.set_epoch(1)
    first = collect(ds, workers=0)
    second = collect(ds, workers=2)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert 0 < first["has_defect"].sum() < len(ds)  # default p = 0.5 mixes both


def test_epoch_and_seed_change_the_defects(normal_dataset) -> None:
    ds = make(normal_dataset, seed=3, p=1.0)
    ds.set_epoch(0)
    a = collect(ds, 0)["defect"]
    ds.set_epoch(1)
    b = collect(ds, 0)["defect"]
    c = collect(make(normal_dataset, seed=4, p=1.0), 0)["defect"]
    assert not torch.equal(a, b) and not torch.equal(a, c)


def test_item_does_not_depend_on_access_order(normal_dataset) -> None:
    ds = make(normal_dataset, seed=9, p=1.0)
    forward = [ds[i]["defect"] for i in range(len(ds))]
    backward = [ds[i]["defect"] for i in reversed(range(len(ds)))][::-1]
    assert all(torch.equal(x, y) for x, y in zip(forward, backward, strict=True))


def test_bad_probability_and_index(normal_dataset) -> None:
    from texinspect.errors import ConfigError

    with pytest.raises(ConfigError, match="defect_probability"):
        make(normal_dataset, p=1.5)
    with pytest.raises(IndexError):
        make(normal_dataset)[len(normal_dataset)]
    assert np.isfinite(make(normal_dataset)[-1]["defect"].numpy()).all()


def _views(image: torch.Tensor, augment: str) -> list[torch.Tensor]:
    """Every view ``augment`` may produce of a (C, H, W) image."""
    mirrors = [image, image.flip(-1), image.flip(-2), image.flip(-1).flip(-2)]
    if augment == "flips":
        return mirrors
    return [m.rot90(k, dims=(1, 2)) for m in mirrors for k in range(4)]


@pytest.mark.parametrize("augment", ["flips", "dihedral"])
def test_augment_shows_turned_views_of_the_normal_images_and_is_reproducible(normal_dataset, augment: str) -> None:
    """``data.augment`` (issue 21): more views of a direction-free texture from few good images."""
    synth = make(normal_dataset, seed=3).synthesizer
    ds = SyntheticDefectDataset(normal_dataset, synth, seed=3, defect_probability=0.0, augment=augment)
    changed = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item, original = ds[i], normal_dataset[i]["image"]
            assert any(torch.equal(item["image"], v) for v in _views(original, augment))
            changed += not torch.equal(item["image"], original)
            torch.testing.assert_close(ds[i]["image"], item["image"])  # the same view each time it is read
    assert changed >= 6  # 18 reads, each left as it is with probability 1/4 (flips) or 1/8 (dihedral)
    with_defects = SyntheticDefectDataset(normal_dataset, synth, seed=3, defect_probability=1.0, augment=augment)
    item = with_defects[1]
    outside = item["mask"][0] == 0
    # the defect is drawn on the turned view: outside the mask the two agree (up to faint blending)
    assert (item["defect"] - item["image"]).abs()[:, outside].mean() < 0.01


def test_augment_none_leaves_the_items_as_before_and_unknown_values_are_refused(normal_dataset) -> None:
    plain = make(normal_dataset, seed=5)
    none = SyntheticDefectDataset(normal_dataset, plain.synthesizer, seed=5, augment="none")
    for i in range(len(plain)):
        for key in ("image", "defect", "mask"):
            assert torch.equal(plain[i][key], none[i][key])
    with pytest.raises(ConfigError, match="data.augment: expected one of none, flips, dihedral, got 'rot45'"):
        SyntheticDefectDataset(normal_dataset, plain.synthesizer, seed=5, augment="rot45")


def test_gain_jitter_relights_each_normal_within_its_bound_and_the_defect_is_drawn_on_it(normal_dataset) -> None:
    """``data.gain_jitter`` (issue 17 round 6): exposure drift is shown to the model as normal."""
    synth = make(normal_dataset, seed=4).synthesizer
    jitter = 0.3
    ds = SyntheticDefectDataset(normal_dataset, synth, seed=4, defect_probability=0.0, gain_jitter=jitter)
    gains = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item, original = ds[i]["image"], normal_dataset[i]["image"]
            unclipped = (item < 1.0) & (original > 0.05)
            ratio = item[unclipped] / original[unclipped]
            # one gain for the whole image (up to float rounding), inside exp([-j, j])
            assert float(ratio.max() - ratio.min()) < 1e-4
            gains.append(float(ratio.mean()))
            torch.testing.assert_close(ds[i]["image"], item)  # the same gain each time it is read
    assert min(gains) >= np.exp(-jitter) - 1e-4 and max(gains) <= np.exp(jitter) + 1e-4
    assert min(gains) < 0.95 and max(gains) > 1.05  # darker and brighter views both occur
    item = SyntheticDefectDataset(normal_dataset, synth, seed=4, defect_probability=1.0, gain_jitter=jitter)[1]
    outside = item["mask"][0] == 0
    assert (item["defect"] - item["image"]).abs()[:, outside].mean() < 0.01  # drawn on the relit image


def test_gain_jitter_zero_leaves_the_items_as_before_and_bad_bounds_are_refused(normal_dataset) -> None:
    plain = make(normal_dataset, seed=6)
    zero = SyntheticDefectDataset(normal_dataset, plain.synthesizer, seed=6, gain_jitter=0.0)
    for i in range(len(plain)):
        for key in ("image", "defect", "mask"):
            assert torch.equal(plain[i][key], zero[i][key])
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match=r"data.gain_jitter: expected a log-gain bound in \[0, 1.0\]"):
            SyntheticDefectDataset(normal_dataset, plain.synthesizer, seed=6, gain_jitter=bad)
