"""ImageDataset items and caching; split_train_val determinism and sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from texinspect.data.datasets import ImageDataset, split_train_val
from texinspect.data.images import load_image, load_mask
from texinspect.data.layout import ImageRecord, list_images, scan_dataset
from texinspect.errors import ConfigError


def test_items_have_shapes_dtypes_labels(sample_root: Path) -> None:
    index = scan_dataset(sample_root)
    records = index.train[:2] + index.test
    dataset = ImageDataset(records, size=32, channels=1)
    assert len(dataset) == len(records)
    for i, record in enumerate(records):
        item = dataset[i]
        assert item["image"].shape == (1, 32, 32) and item["image"].dtype == torch.float32
        assert item["mask"].shape == (1, 32, 32) and item["mask"].dtype == torch.float32
        assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
        assert item["label"] == record.label and item["rel"] == record.rel
        np.testing.assert_array_equal(item["image"].numpy(), load_image(record.path, 32, 1))
        if record.mask_path is None:
            assert float(item["mask"].abs().sum()) == 0.0
        else:
            np.testing.assert_array_equal(item["mask"][0].numpy(), load_mask(record.mask_path, 32))
            assert float(item["mask"].sum()) > 0
    unknown = ImageDataset(list_images(sample_root / "train" / "good")[:1], size=16, channels=3)
    assert unknown[0]["label"] == -1 and unknown[0]["image"].shape == (3, 16, 16)


def test_cache_holds_uint8_and_returns_identical_tensors(sample_root: Path) -> None:
    records = scan_dataset(sample_root).test
    cached = ImageDataset(records, size=48, channels=3, cache=True)
    fresh = ImageDataset(records, size=48, channels=3, cache=False)
    first = [cached[i] for i in range(len(cached))]
    assert all(a.dtype == np.uint8 for a in cached._images.values())
    assert len(cached._images) == len(records) and not fresh._images
    for i in range(len(records)):
        again, plain = cached[i], fresh[i]
        assert torch.equal(again["image"], first[i]["image"]) and torch.equal(again["image"], plain["image"])
        assert torch.equal(again["mask"], plain["mask"])
    # A returned tensor is a copy: changing it must not change the cache.
    first[0]["image"].zero_()
    assert torch.equal(cached[0]["image"], fresh[0]["image"])


def test_batches_through_a_dataloader(sample_root: Path) -> None:
    dataset = ImageDataset(scan_dataset(sample_root).test, size=16, channels=3)
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["mask"].shape == (4, 1, 16, 16)
    assert batch["label"].dtype == torch.int64 and len(batch["rel"]) == 4


def test_index_out_of_range(sample_root: Path) -> None:
    dataset = ImageDataset(scan_dataset(sample_root).train[:2], size=16, channels=1)
    with pytest.raises(IndexError):
        dataset[2]
    assert dataset[-1]["rel"] == dataset[1]["rel"]


def _records(n: int) -> list[ImageRecord]:
    return [ImageRecord(Path(f"/x/{i}.png"), f"{i}.png", "train", "good") for i in range(n)]


def test_split_train_val_is_deterministic_and_disjoint() -> None:
    records = _records(50)
    train, val = split_train_val(records, 0.1, seed=7)
    assert (train, val) == split_train_val(records, 0.1, seed=7)
    assert len(val) == 5 and len(train) == 45
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(records)
    assert train == sorted(train, key=records.index) and val == sorted(val, key=records.index)
    other = [split_train_val(records, 0.1, seed=s)[1] for s in range(5)]
    assert len({tuple(r.rel for r in v) for v in other}) > 1  # the seed matters


def test_split_train_val_edge_cases() -> None:
    assert [len(part) for part in split_train_val(_records(2), 0.01, 0)] == [1, 1]
    assert [len(part) for part in split_train_val(_records(10), 0.0, 0)] == [10, 0]
    assert [len(part) for part in split_train_val(_records(1), 0.5, 0)] == [1, 0]
    assert [len(part) for part in split_train_val(_records(3), 0.9, 0)] == [1, 2]
    with pytest.raises(ConfigError, match="val_fraction must be in"):
        split_train_val(_records(3), 1.0, 0)
