"""check_dataset: every kind of problem is found, named, counted; strict mode raises."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from texinspect.data.check import check_dataset
from texinspect.errors import DataError


def kinds(report) -> list[str]:
    return sorted(p.kind for p in report.problems)


def test_clean_dataset_has_no_problems_and_counts(build_mvtec) -> None:
    root = build_mvtec(n_train=3, test={"good": 2, "crack": 2})
    report = check_dataset(root)
    assert report.ok and report.problems == []
    table = report.table()
    assert list(table.columns) == ["split", "type", "images", "masks", "problems", "sizes", "modes"]
    assert table[["split", "type", "images", "masks"]].values.tolist() == [
        ["train", "good", 3, 0],
        ["test", "good", 2, 0],
        ["test", "crack", 2, 2],
    ]
    assert report.sizes == {"16x16": 7} and report.modes == {"L": 7}
    assert report.count("test", "crack") == 2
    summary = report.summary()
    assert "problems: 0" in summary and "crack" in summary


def test_dataset_without_ground_truth_is_valid_with_a_warning(build_mvtec) -> None:
    root = build_mvtec(n_train=2, test={"good": 1, "defective": 2})
    shutil.rmtree(root / "ground_truth")  # image-level labels only (ELPV)
    report = check_dataset(root, strict=True)
    assert report.ok and report.count("test", "defective") == 2
    assert report.table().set_index("type").at["defective", "masks"] == 0
    assert any("no ground_truth/ folder" in w for w in report.warnings)
    (root / "ground_truth" / "defective").mkdir(parents=True)  # once the folder exists, masks are required
    assert kinds(check_dataset(root)) == ["missing_mask", "missing_mask"]


def test_each_problem_is_found_and_names_its_file(build_mvtec, tools) -> None:
    root = build_mvtec(n_train=3, test={"good": 2, "crack": 4})
    rng = np.random.default_rng(5)
    # truncated training image
    data = (root / "train" / "good" / "001.png").read_bytes()
    (root / "train" / "good" / "001.png").write_bytes(data[: len(data) // 2])
    # unreadable test image
    (root / "test" / "good" / "001.png").write_bytes(b"garbage" * 20)
    gt = root / "ground_truth" / "crack"
    (gt / "000_mask.png").unlink()  # defect image without mask
    tools.write(gt / "001_mask.png", tools.square_mask(8))  # mask of the wrong size
    odd = tools.square_mask(16)
    odd[0, 0] = 128
    tools.write(gt / "002_mask.png", odd)  # mask with a value other than 0/255
    tools.write(gt / "999_mask.png", tools.square_mask(16))  # mask without image
    tools.write(root / "ground_truth" / "good" / "000_mask.png", tools.square_mask(16))  # good with a mask
    tools.write(root / "test" / "crack" / "003.png", tools.pixels(rng, 16))  # 003 keeps its valid mask

    report = check_dataset(root)
    assert not report.ok
    by_kind = {p.kind: p for p in report.problems}
    assert kinds(report) == sorted(
        [
            "unreadable_image",
            "unreadable_image",
            "missing_mask",
            "mask_size",
            "mask_values",
            "orphan_mask",
            "good_has_mask",
        ]
    )
    assert by_kind["missing_mask"].path == root / "test" / "crack" / "000.png"
    assert by_kind["mask_size"].path == gt / "001_mask.png"
    assert "mask is 8x8 but its image is 16x16" in by_kind["mask_size"].message
    assert "(128)" in by_kind["mask_values"].message
    assert by_kind["orphan_mask"].path == gt / "999_mask.png"
    assert by_kind["good_has_mask"].path == root / "ground_truth" / "good" / "000_mask.png"
    unreadable = sorted(str(p.path) for p in report.problems if p.kind == "unreadable_image")
    assert unreadable == [str(root / "test" / "good" / "001.png"), str(root / "train" / "good" / "001.png")]
    assert any("truncated" in p.message for p in report.problems if p.kind == "unreadable_image")
    for problem in report.problems:
        assert "\n" not in str(problem) and str(problem).startswith(str(problem.path) + ": ")
    table = report.table().set_index(["split", "type"])
    assert table.loc[("train", "good"), "problems"] == 1
    assert table.loc[("test", "crack"), "problems"] == 4  # missing, size, values, orphan
    assert table.loc[("test", "crack"), "masks"] == 3
    summary = report.summary()
    assert "test/crack/000.png: defect image has no mask" in summary

    with pytest.raises(DataError) as exc:
        check_dataset(root, strict=True)
    assert str(exc.value) == str(report.problems[0])


def test_structural_problems_are_reported_not_raised(tmp_path: Path, build_mvtec) -> None:
    assert kinds(check_dataset(tmp_path / "missing")) == ["root_missing"]
    (tmp_path / "nolayout").mkdir()
    assert kinds(check_dataset(tmp_path / "nolayout")) == ["train_missing"]
    root = build_mvtec(n_train=0, test={})
    report = check_dataset(root)
    assert kinds(report) == ["train_empty"]
    assert any("no test/ folder" in w for w in report.warnings)
    with pytest.raises(DataError, match="no training images"):
        check_dataset(root, strict=True)


def test_size_warns_about_upsampling(build_mvtec) -> None:
    root = build_mvtec(n_train=2, test={"good": 1})
    assert check_dataset(root, size=16).warnings == []
    report = check_dataset(root, size=32)
    assert report.ok and report.warnings == ["3 image(s) are smaller than 32 px and will be upsampled"]
