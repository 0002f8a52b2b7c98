"""The procedural sample dataset: reproducible, clean, fast, and its defects detectable but not trivial."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from texinspect.data.check import check_dataset
from texinspect.data.images import image_info, load_image, load_mask
from texinspect.data.layout import scan_dataset
from texinspect.data.sample import TEXTURES, make_sample_dataset
from texinspect.errors import ConfigError, DataError


def digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("texture", TEXTURES)
def test_same_seed_same_bytes_and_passes_check(tmp_path: Path, texture: str) -> None:
    kwargs = dict(n_train=4, n_test_good=2, n_test_defect_per_type=2, size=48, seed=11, texture=texture)
    first = make_sample_dataset(tmp_path / "a", **kwargs)
    make_sample_dataset(tmp_path / "b", **kwargs)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    make_sample_dataset(tmp_path / "c", **{**kwargs, "seed": 12})
    changed = digest(tmp_path / "c")
    assert changed.keys() == digest(tmp_path / "a").keys() and changed != digest(tmp_path / "a")
    assert first.counts() == {
        "train/good": 4,
        "test/good": 2,
        "test/crack": 2,
        "test/scratch": 2,
        "test/spot": 2,
    }
    report = check_dataset(tmp_path / "a")
    assert report.ok, report.summary()
    assert report.sizes == {"48x48": 12} and report.modes == {"RGB": 12}


def test_counts_do_not_change_other_images(tmp_path: Path) -> None:
    make_sample_dataset(tmp_path / "a", n_train=3, n_test_good=1, n_test_defect_per_type=1, size=32)
    make_sample_dataset(tmp_path / "b", n_train=5, n_test_good=1, n_test_defect_per_type=1, size=32)
    a, b = digest(tmp_path / "a"), digest(tmp_path / "b")
    assert all(b[k] == a[k] for k in a if k != "sample.json")


def test_defaults_are_fast_and_grayscale_option(tmp_path: Path) -> None:
    start = time.perf_counter()
    index = make_sample_dataset(tmp_path / "rgb")
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"default sample dataset took {elapsed:.1f} s"
    assert index.counts() == {
        "train/good": 40,
        "test/good": 8,
        "test/crack": 6,
        "test/scratch": 6,
        "test/spot": 6,
    }
    assert image_info(index.train[0].path) == image_info(index.test[0].path)
    assert image_info(index.train[0].path).width == 128
    gray = make_sample_dataset(
        tmp_path / "gray", n_train=2, n_test_good=1, n_test_defect_per_type=1, channels=1
    )
    assert image_info(gray.train[0].path).mode == "L"


def test_refuses_non_empty_folder_unless_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "s"
    make_sample_dataset(root, n_train=3, n_test_good=1, n_test_defect_per_type=1, size=32)
    (root / "keep.txt").write_text("user file")
    with pytest.raises(DataError, match="folder is not empty"):
        make_sample_dataset(root, n_train=2, size=32)
    make_sample_dataset(root, n_train=2, n_test_good=1, n_test_defect_per_type=1, size=32, overwrite=True)
    assert len(scan_dataset(root).train) == 2  # no stale images from the first run
    assert (root / "keep.txt").read_text() == "user file"


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown texture 'marble'"):
        make_sample_dataset(tmp_path / "x", texture="marble")
    with pytest.raises(ConfigError, match="unknown defect type 'dent'"):
        make_sample_dataset(tmp_path / "x", defect_types=["dent"])
    with pytest.raises(ConfigError, match="channels must be 1 or 3"):
        make_sample_dataset(tmp_path / "x", channels=2)
    assert not (tmp_path / "x").exists()


def _local_features(image: np.ndarray) -> np.ndarray:
    """Smoothed intensity, local contrast and fine-detail energy: no learning involved."""
    gray = image.mean(0).astype(np.float64)
    mean = ndimage.gaussian_filter(gray, 2)
    std = np.sqrt(np.maximum(ndimage.gaussian_filter(gray**2, 2) - mean**2, 0))
    detail = ndimage.gaussian_filter(np.abs(gray - ndimage.gaussian_filter(gray, 1)), 1)
    return np.stack([mean, std, detail])


def test_defects_change_local_statistics_but_not_global_ones(tmp_path: Path) -> None:
    """Detectable: a z-score of local statistics against the training images ranks defect pixels
    well above normal ones. Not trivial: the image's mean brightness says little about defects."""
    index = make_sample_dataset(tmp_path / "s", n_train=16, n_test_good=8, n_test_defect_per_type=8, size=96)
    train = np.stack([_local_features(load_image(r.path, 96, 3)) for r in index.train])
    mu, sd = train.mean(axis=(0, 2, 3))[:, None, None], train.std(axis=(0, 2, 3))[:, None, None]
    maps, masks, means, labels = [], [], [], []
    for record in index.test:
        image = load_image(record.path, 96, 3)
        maps.append(np.abs((_local_features(image) - mu) / sd).max(0))
        masks.append(load_mask(record.mask_path, 96) if record.mask_path else np.zeros((96, 96)))
        means.append(image.mean())
        labels.append(record.label)
    pixel_auroc = roc_auc_score(np.array(masks).ravel() > 0, np.array(maps).ravel())
    assert pixel_auroc > 0.8, (
        f"defect pixels barely differ from normal texture (pixel AUROC {pixel_auroc:.3f})"
    )
    mean_auroc = roc_auc_score(labels, means)
    assert 0.2 < mean_auroc < 0.8, f"image brightness alone separates defects (AUROC {mean_auroc:.3f})"
    for record, mask in zip(index.test, masks, strict=True):
        if record.label == 1:
            assert 0 < mask.mean() < 0.1, f"{record.rel}: defect covers {mask.mean():.1%} of the image"
