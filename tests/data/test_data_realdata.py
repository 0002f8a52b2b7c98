"""The shared magnetic-tile dataset (outside the repo): scanned counts match its README."""

from __future__ import annotations

from pathlib import Path

import pytest

from texinspect.data.check import check_dataset
from texinspect.data.datasets import ImageDataset
from texinspect.data.layout import scan_dataset

MAGNETIC_TILE = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "magnetic_tile"

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def magnetic_tile() -> Path:
    if not MAGNETIC_TILE.is_dir():
        pytest.skip(f"real data not present: {MAGNETIC_TILE.resolve()} (see ../shared/datasets/README.md)")
    return MAGNETIC_TILE


def test_magnetic_tile_counts_match_readme(magnetic_tile: Path) -> None:
    index = scan_dataset(magnetic_tile, require_test=True)
    assert index.counts() == {
        "train/good": 762,
        "test/good": 95,
        "test/blowhole": 115,
        "test/break": 85,
        "test/crack": 57,
    }
    defects = [r for r in index.test if r.label == 1]
    assert len(defects) == 257 and all(r.mask_path is not None and r.mask_path.is_file() for r in defects)
    # README: 8-bit grayscale files; the loader turns them into the model's channel count.
    item = ImageDataset(defects[:1], size=64, channels=3, cache=False)[0]
    assert item["image"].shape == (3, 64, 64) and item["label"] == 1 and float(item["mask"].sum()) > 0


def test_magnetic_tile_passes_the_full_check(magnetic_tile: Path) -> None:
    report = check_dataset(magnetic_tile, size=256)
    assert report.ok, report.summary()
    assert report.sizes == {"256x256": 1114} and report.modes == {"L": 1114}
    assert report.table()["masks"].sum() == 257
