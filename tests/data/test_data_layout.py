"""scan_dataset / list_images / records_for_prediction: structure, order, and one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from texinspect.data.layout import (
    ImageRecord,
    has_ground_truth,
    list_images,
    records_for_prediction,
    scan_dataset,
)
from texinspect.errors import DataError


def one_line(exc: pytest.ExceptionInfo[DataError]) -> str:
    text = str(exc.value)
    assert "\n" not in text, f"error message spans several lines: {text!r}"
    return text


def test_scan_finds_splits_types_masks_in_sorted_order(build_mvtec) -> None:
    root = build_mvtec(n_train=3, test={"good": 2, "crack": 2, "blowhole": 1})
    index = scan_dataset(root)
    assert [r.rel for r in index.train] == ["train/good/000.png", "train/good/001.png", "train/good/002.png"]
    assert all(r.path.is_absolute() and r.path.is_file() for r in index.train + index.test)
    assert [r.rel for r in index.test] == [
        "test/blowhole/000.png",
        "test/crack/000.png",
        "test/crack/001.png",
        "test/good/000.png",
        "test/good/001.png",
    ]
    assert index.types() == ["good", "blowhole", "crack"]
    assert index.defect_types() == ["blowhole", "crack"]
    assert index.counts() == {"train/good": 3, "test/good": 2, "test/blowhole": 1, "test/crack": 2}
    assert len(index) == 8
    crack = index.records("test", "crack")[1]
    assert crack.mask_path == root / "ground_truth" / "crack" / "001_mask.png"
    assert crack.label == 1 and crack.split == "test"
    good = index.records("test", "good")[0]
    assert good.label == 0 and good.mask_path is None
    assert index.train[0].label == 0 and index.train[0].split == "train"


def test_record_is_frozen_and_unknown_label(tmp_path: Path) -> None:
    record = ImageRecord(tmp_path / "a.png", "a.png", "", "", None)
    assert record.label is None
    with pytest.raises(AttributeError):
        record.rel = "b.png"  # type: ignore[misc]


def test_extensions_are_case_insensitive_and_other_files_ignored(build_mvtec, tools) -> None:
    root = build_mvtec(n_train=1, test={})
    rng = np.random.default_rng(1)
    good = root / "train" / "good"
    tools.write(good / "upper.PNG", tools.pixels(rng, 16))
    tools.write(good / "photo.JPG", tools.pixels(rng, 16, 3))
    tools.write(good / "scan.tif", tools.pixels(rng, 16))
    tools.write(good / "x.bmp", tools.pixels(rng, 16))
    (good / "notes.txt").write_text("not an image")
    (good / ".hidden.png").write_bytes(b"")
    (good / "sub").mkdir()
    rels = [r.rel for r in scan_dataset(root).train]
    assert rels == [
        "train/good/000.png",
        "train/good/photo.JPG",
        "train/good/scan.tif",
        "train/good/upper.PNG",
        "train/good/x.bmp",
    ]


def test_scan_is_deterministic(build_mvtec) -> None:
    root = build_mvtec()
    assert scan_dataset(root) == scan_dataset(root)


def test_missing_root_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        scan_dataset(tmp_path / "nowhere")
    assert one_line(exc) == f"{tmp_path / 'nowhere'}: dataset folder not found"


def test_missing_train_good_names_the_folder(tmp_path: Path) -> None:
    (tmp_path / "ds" / "test" / "good").mkdir(parents=True)
    with pytest.raises(DataError) as exc:
        scan_dataset(tmp_path / "ds")
    text = one_line(exc)
    assert text.startswith(f"{tmp_path / 'ds' / 'train' / 'good'}: folder not found")


def test_empty_training_set_names_the_folder(build_mvtec) -> None:
    root = build_mvtec(n_train=0)
    (root / "train" / "good" / "readme.txt").write_text("only text here")
    with pytest.raises(DataError) as exc:
        scan_dataset(root)
    assert one_line(exc).startswith(f"{root / 'train' / 'good'}: no training images")


def test_defect_image_without_mask_names_image_and_expected_mask(build_mvtec) -> None:
    root = build_mvtec(test={"good": 1, "crack": 2})
    (root / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(DataError) as exc:
        scan_dataset(root)
    text = one_line(exc)
    assert text.startswith(f"{root / 'test' / 'crack' / '001.png'}: defect image has no mask")
    assert "ground_truth/crack/001_mask.png" in text


def test_dataset_without_ground_truth_folder_has_image_labels_only(build_mvtec) -> None:
    root = build_mvtec(test={"good": 1, "defective": 2, "likely_defective": 1})
    shutil.rmtree(root / "ground_truth")  # ELPV: no masks at all
    index = scan_dataset(root)
    assert not has_ground_truth(index.root)
    assert index.defect_types() == ["defective", "likely_defective"]
    assert [(r.label, r.mask_path) for r in index.test] == [(1, None), (1, None), (0, None), (1, None)]
    assert has_ground_truth(scan_dataset(build_mvtec(name="with_masks")).root)


def test_prepare_training_data_on_a_dataset_without_masks(build_mvtec) -> None:
    """Training scans the dataset too: a dataset with image labels only must train."""
    from texinspect.config import Config
    from texinspect.training.common import prepare_training_data

    root = build_mvtec(n_train=6, test={"good": 1, "defective": 2})
    shutil.rmtree(root / "ground_truth")
    config = Config().with_overrides([f"data.root={root}", "data.image_size=16", "synthesis.texture_pool="])
    data = prepare_training_data(config)
    assert len(data.train) + len(data.val) == 6 and not has_ground_truth(data.index.root)
    assert data.synthetic[0]["image"].shape[-1] == 16


def test_require_test(build_mvtec) -> None:
    root = build_mvtec(test={})
    assert scan_dataset(root).test == []
    with pytest.raises(DataError) as exc:
        scan_dataset(root, require_test=True)
    assert one_line(exc).startswith(f"{root / 'test'}: no test images")


def test_list_images_is_recursive_sorted_and_unlabelled(tmp_path: Path, tools) -> None:
    rng = np.random.default_rng(0)
    tools.write(tmp_path / "b.png", tools.pixels(rng, 8))
    tools.write(tmp_path / "a" / "z.jpg", tools.pixels(rng, 8, 3))
    tools.write(tmp_path / ".git" / "x.png", tools.pixels(rng, 8))
    (tmp_path / "c.txt").write_text("x")
    records = list_images(tmp_path)
    assert [r.rel for r in records] == ["a/z.jpg", "b.png"]
    assert all(r.label is None and r.split == "" and r.mask_path is None for r in records)
    with pytest.raises(DataError) as exc:
        list_images(tmp_path / "missing")
    assert one_line(exc) == f"{tmp_path / 'missing'}: folder not found"


def test_records_for_prediction(build_mvtec, tmp_path: Path, tools) -> None:
    root = build_mvtec(test={"good": 1, "crack": 1})
    assert [r.rel for r in records_for_prediction(root)] == ["test/crack/000.png", "test/good/000.png"]
    # Prediction needs no ground truth: a missing mask is not an error here.
    shutil.rmtree(root / "ground_truth")
    records = records_for_prediction(root)
    assert records[0].label == 1 and records[0].mask_path is None
    plain = tmp_path / "plain"
    tools.write(plain / "x.png", tools.pixels(np.random.default_rng(0), 8))
    assert [r.rel for r in records_for_prediction(plain)] == ["x.png"]
    single = records_for_prediction(plain / "x.png")
    assert len(single) == 1 and single[0].path == plain / "x.png"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as exc:
        records_for_prediction(tmp_path / "empty")
    assert one_line(exc).startswith(f"{tmp_path / 'empty'}: no images found")
