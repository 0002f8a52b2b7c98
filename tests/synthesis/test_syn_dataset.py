"""SyntheticDefectDataset: items depend only on (seed, epoch, index), with any worker count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from texinspect.config import SynthesisConfig
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
