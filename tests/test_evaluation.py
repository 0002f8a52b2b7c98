"""End to end: a tiny MVTec-layout dataset and a prediction folder written by hand."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from texinspect.cli import evaluate as evaluation_cli
from texinspect.config import EvalConfig
from texinspect.data.images import load_mask
from texinspect.data.sample import make_sample_dataset
from texinspect.errors import DataError
from texinspect.evaluation import (
    OVERVIEW_FILE,
    OverviewLayout,
    evaluate,
    load_items,
    overview_tile,
    read_prediction_meta,
    read_scores,
    write_overview,
)

SIZE = 32


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def make_dataset(root: Path) -> dict[str, np.ndarray]:
    """train/good (2), test/good (3), test/crack (2), test/spot (2, one with an empty mask).

    Returns the mask (bool, SIZE x SIZE) of every test image by its relative path.
    """
    rng = np.random.default_rng(0)
    masks: dict[str, np.ndarray] = {}
    for i in range(2):
        _png(root / "train/good" / f"{i:03d}.png", rng.integers(90, 160, (SIZE, SIZE)))
    for i in range(3):
        _png(root / "test/good" / f"{i:03d}.png", rng.integers(90, 160, (SIZE, SIZE)))
        masks[f"test/good/{i:03d}.png"] = np.zeros((SIZE, SIZE), bool)
    boxes = {
        ("crack", 0): [(4, 10, 2, 20)],
        ("crack", 1): [(20, 24, 5, 9), (2, 6, 25, 30)],  # two regions
        ("spot", 0): [(12, 18, 12, 18)],
        ("spot", 1): [],  # labelled defective, but the mask is empty
    }
    for (defect_type, i), rects in boxes.items():
        mask = np.zeros((SIZE, SIZE), bool)
        for y0, y1, x0, x1 in rects:
            mask[y0:y1, x0:x1] = True
        image = rng.integers(90, 160, (SIZE, SIZE))
        image[mask] = 250
        _png(root / "test" / defect_type / f"{i:03d}.png", image)
        _png(root / "ground_truth" / defect_type / f"{i:03d}_mask.png", mask * 255)
        masks[f"test/{defect_type}/{i:03d}.png"] = mask
    return masks


def write_prediction(
    pred: Path,
    masks: dict[str, np.ndarray],
    threshold: float | None = 0.5,
    pixel_threshold: float | None = 0.5,
) -> pd.DataFrame:
    """Perfect maps (map = mask) and scores: 0.1-0.3 for good images, 0.9 for defective ones."""
    rows = []
    for i, (rel, mask) in enumerate(sorted(masks.items())):
        target = pred / "maps" / f"{rel}.npy"
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, mask.astype(np.float32))
        good = "/good/" in rel
        rows.append(
            {"path": rel, "score": 0.1 * (1 + i % 3) if good else 0.9, "label": 0 if good else 1,
             "defect_type": rel.split("/")[1]}
        )
    table = pd.DataFrame(rows)
    table.to_csv(pred / "scores.csv", index=False)
    meta = {"family": "fake", "image_size": SIZE, "threshold": threshold, "pixel_threshold": pixel_threshold}
    (pred / "prediction.json").write_text(json.dumps(meta))
    return table


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    data, pred = tmp_path / "data", tmp_path / "pred"
    masks = make_dataset(data)
    pred.mkdir()
    write_prediction(pred, masks)
    return data, pred, masks


def test_evaluate_perfect_predictions(setup: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    data, pred, _ = setup
    result = evaluate(pred, data, EvalConfig(overlays=1))

    saved = json.loads((pred / "metrics.json").read_text())
    for key in (
        "image_auroc", "pixel_auroc", "aupro", "precision", "recall", "f1", "threshold", "threshold_source",
        "pixel_precision", "pixel_recall", "pixel_f1", "pixel_threshold", "best_f1", "best_f1_threshold",
        "n_images", "n_good", "n_defect",
    ):
        assert key in saved, key
    assert saved["pixel_auroc"] == 1.0
    assert saved["aupro"] == pytest.approx(1.0)
    assert saved["image_auroc"] == 1.0
    assert (saved["precision"], saved["recall"], saved["f1"]) == (1.0, 1.0, 1.0)
    assert saved["threshold"] == 0.5 and saved["threshold_source"] == "model"
    assert (saved["pixel_precision"], saved["pixel_recall"], saved["pixel_f1"]) == (1.0, 1.0, 1.0)
    assert saved["best_f1"] == 1.0 and saved["best_f1_threshold"] == pytest.approx(0.9)
    assert (saved["n_images"], saved["n_good"], saved["n_defect"]) == (7, 3, 4)
    assert saved["n_defect_empty_mask"] == 1
    assert saved["n_defect_regions"] == 4
    assert result["pixel_auroc"] == saved["pixel_auroc"]

    table = pd.read_csv(pred / "per_type.csv")
    assert table["defect_type"].tolist() == ["crack", "spot", "good", "all"]
    assert table["n"].tolist() == [2, 2, 3, 7]
    crack = table.set_index("defect_type").loc["crack"]
    assert (crack.image_auroc, crack.pixel_auroc, crack.aupro, crack.flagged) == (1.0, 1.0, 1.0, 1.0)
    assert table.set_index("defect_type").loc["good", "flagged"] == 0.0
    assert "| crack | 2 |" in (pred / "per_type.md").read_text()

    overlays = sorted(p.relative_to(pred / "overlays").as_posix() for p in (pred / "overlays").rglob("*.png"))
    assert overlays == ["crack/000.png", "good/000.png", "spot/000.png"]
    assert Image.open(pred / "overlays/crack/000.png").size[0] > 3 * SIZE

    roc = pd.read_csv(pred / "curves/roc.csv")
    assert list(roc.columns) == ["fpr", "tpr", "threshold"]
    assert roc["fpr"].is_monotonic_increasing and roc["tpr"].iloc[-1] == 1.0
    assert list(pd.read_csv(pred / "curves/pr.csv").columns) == ["recall", "precision", "threshold"]
    assert (pred / "curves/roc.png").stat().st_size > 0 and (pred / "curves/pr.png").stat().st_size > 0


def test_imperfect_map_lowers_pixel_metrics(setup: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    data, pred, masks = setup
    noisy = masks["test/crack/001.png"].astype(np.float32)
    noisy[:16, :16] = 1.0  # false alarms as strong as the defect, on normal pixels
    np.save(pred / "maps/test/crack/001.png.npy", noisy)
    result = evaluate(pred, data, EvalConfig(overlays=0))
    assert result["pixel_auroc"] < 1.0
    assert result["aupro"] < 1.0
    assert result["pixel_precision"] < 1.0 and result["pixel_recall"] == 1.0
    assert not (pred / "overlays").exists()
    (pred / "overlays/crack").mkdir(parents=True)
    (pred / "overlays/crack/old.png").write_bytes(b"stale")
    evaluate(pred, data, EvalConfig(overlays=1))
    assert not (pred / "overlays/crack/old.png").exists()  # pictures of an earlier run are removed
    assert (pred / "overlays/crack/000.png").is_file()


def test_without_stored_thresholds_k_sigma_over_test_good(tmp_path: Path) -> None:
    data, pred = tmp_path / "data", tmp_path / "pred"
    masks = make_dataset(data)
    pred.mkdir()
    table = write_prediction(pred, masks, threshold=None, pixel_threshold=None)
    result = evaluate(pred, data, EvalConfig(k_sigma=2.0, overlays=0))
    good = table.loc[table["label"] == 0, "score"].to_numpy()
    assert result["threshold_source"] == "k_sigma_test_good"
    assert result["threshold"] == pytest.approx(good.mean() + 2.0 * good.std(ddof=1))
    assert result["pixel_threshold_source"] == "k_sigma_test_good"
    assert result["pixel_threshold"] == pytest.approx(0.0)  # good maps are all zero
    saved = json.loads((pred / "metrics.json").read_text())
    assert saved["threshold_source"] == "k_sigma_test_good"


def test_missing_map_names_the_file(setup: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    data, pred, _ = setup
    (pred / "maps/test/spot/000.png.npy").unlink()
    with pytest.raises(DataError, match=r"maps/test/spot/000\.png\.npy: anomaly map not found"):
        evaluate(pred, data, EvalConfig(overlays=0))


def test_map_of_the_wrong_shape_names_the_file(setup: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    data, pred, _ = setup
    np.save(pred / "maps/test/good/001.png.npy", np.zeros((SIZE, SIZE + 1), np.float32))
    with pytest.raises(DataError, match=r"maps/test/good/001\.png\.npy: map has shape \(32, 33\)"):
        evaluate(pred, data, EvalConfig(overlays=0))


def test_scores_without_required_columns(setup: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    data, pred, _ = setup
    table = pd.read_csv(pred / "scores.csv").drop(columns=["score"])
    table.to_csv(pred / "scores.csv", index=False)
    with pytest.raises(DataError, match=r"scores\.csv: missing column\(s\) score"):
        evaluate(pred, data, EvalConfig(overlays=0))


def test_scores_missing_a_test_image(setup: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    data, pred, _ = setup
    table = pd.read_csv(pred / "scores.csv")
    table[table["path"] != "test/crack/000.png"].to_csv(pred / "scores.csv", index=False)
    with pytest.raises(DataError, match=r"no score for 1 of 7 test images, e\.g\. 'test/crack/000\.png'"):
        evaluate(pred, data, EvalConfig(overlays=0))


def test_cli_prints_the_metrics(setup: tuple[Path, Path, dict[str, np.ndarray]], tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data, pred, _ = setup
    monkeypatch.chdir(tmp_path)  # no params.yaml here: built-in defaults
    parser = argparse.ArgumentParser()
    evaluation_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", "--pred", str(pred), "--data", str(data), "--set", "eval.overlays=0"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "image AUROC" in out and "1.0000" in out
    assert "| crack |" in out
    assert not (pred / "overlays").exists()
    assert f"{OVERVIEW_FILE}," in out.splitlines()[-1]
    assert (pred / OVERVIEW_FILE).is_file()  # the overview does not depend on eval.overlays


def test_outside_tool_folder_without_prediction_json(setup: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    """scores.csv (path, score, label) + maps/ alone: thresholds unknown, derived from the test split."""
    data, pred, _ = setup
    (pred / "prediction.json").unlink()
    table = pd.read_csv(pred / "scores.csv")[["path", "score", "label"]]  # what draem_lite writes
    table.to_csv(pred / "scores.csv", index=False)
    result = evaluate(pred, data, EvalConfig(k_sigma=2.0, overlays=0))
    saved = json.loads((pred / "metrics.json").read_text())
    assert saved["prediction_json"] is False and saved["family"] is None
    assert saved["image_size"] == SIZE
    assert saved["image_auroc"] == 1.0 and saved["pixel_auroc"] == 1.0
    good = table.loc[table["label"] == 0, "score"].to_numpy()
    assert saved["threshold_source"] == "k_sigma_test_good"
    assert saved["threshold"] == pytest.approx(good.mean() + 2.0 * good.std(ddof=1))
    assert saved["pixel_threshold_source"] == "k_sigma_test_good"
    assert result["f1"] == pytest.approx(saved["f1"])
    assert "no prediction.json" in evaluation_cli.format_summary(result)


def test_dataset_without_ground_truth_gives_image_metrics_only(
    setup: tuple[Path, Path, dict[str, np.ndarray]], capsys: pytest.CaptureFixture[str]
) -> None:
    data, pred, _ = setup
    shutil.rmtree(data / "ground_truth")  # image-level labels only, like ELPV
    result = evaluate(pred, data, EvalConfig(overlays=1))
    saved = json.loads((pred / "metrics.json").read_text())
    assert saved["image_auroc"] == 1.0 and (saved["precision"], saved["recall"]) == (1.0, 1.0)
    for key in ("pixel_auroc", "aupro", "pixel_precision", "pixel_recall", "pixel_f1", "n_defect_regions"):
        assert saved[key] is None, key
    assert "ground_truth" in saved["pixel_metrics_unavailable"]
    table = pd.read_csv(pred / "per_type.csv").set_index("defect_type")
    assert table["pixel_auroc"].isna().all() and table["aupro"].isna().all()
    assert table.at["crack", "image_auroc"] == 1.0
    assert "| crack | 2 | 1.000 | n/a | n/a |" in (pred / "per_type.md").read_text()
    summary = evaluation_cli.format_summary(result)
    assert "pixel metrics n/a: " in summary and "n/a" in summary.splitlines()[2]  # pixel AUROC line


def test_ground_truth_folder_with_a_missing_mask_is_an_error(
    setup: tuple[Path, Path, dict[str, np.ndarray]],
) -> None:
    data, pred, _ = setup
    (data / "ground_truth" / "spot" / "000_mask.png").unlink()
    with pytest.raises(DataError, match=r"test/spot/000\.png: defect image has no mask \(expected ground_truth/spot/000_mask\.png\)"):
        evaluate(pred, data, EvalConfig(overlays=0))


# --------------------------------------------------------------------------- overview.png

RED, GREEN = (255, 0, 0), (0, 255, 0)


def _rgb(path: Path) -> np.ndarray:
    image = Image.open(path)
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"))


def _layout(picture: np.ndarray, n_types: int, rows: int, size: int = SIZE) -> OverviewLayout:
    """The layout of ``picture`` (its legend takes one line or more, depending on the font)."""
    height, width = picture.shape[:2]
    for lines in range(1, 5):
        layout = OverviewLayout(overview_tile(size), n_types, rows, lines)
        if layout.size == (width, height):
            return layout
    raise AssertionError(f"{width} x {height} px is no layout of {n_types} types x {rows} rows")


def _overlay_tile(picture: np.ndarray, layout: OverviewLayout, block: int, row: int) -> np.ndarray:
    x, y = layout.overlay_xy(block, row)
    return picture[y : y + layout.tile, x : x + layout.tile]


def _coloured(tile: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """(row, column) of the pixels of exactly ``colour``."""
    return np.argwhere(np.all(tile == colour, axis=2))


def test_overview_tile_sizes() -> None:
    assert overview_tile(32) == 128  # small maps enlarged by a whole factor
    assert overview_tile(48) == 144
    assert overview_tile(100) == 100  # x2 would pass the cap
    assert overview_tile(128) == 128
    assert overview_tile(512) == 160  # large maps reduced


def test_overview_written_by_evaluate(setup: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    """good, crack, spot side by side, 2 rows; the map of crack/000 misses its mask."""
    data, pred, masks = setup
    found = np.zeros((SIZE, SIZE), np.float32)
    found[20:28, 20:28] = 1.0  # the mask of crack/000 is rows 4..9, columns 2..19
    np.save(pred / "maps/test/crack/000.png.npy", found)
    evaluate(pred, data, EvalConfig(overlays=0))

    picture = _rgb(pred / OVERVIEW_FILE)
    layout = _layout(picture, n_types=3, rows=2)
    assert layout.tile == 4 * SIZE
    zoom = layout.tile // SIZE
    crack = _overlay_tile(picture, layout, block=1, row=0)  # blocks: good, crack, spot
    green = _coloured(crack, GREEN) // zoom
    assert len(green) and green.min() >= 20 and green.max() < 28  # where the map >= 0.5
    red = _coloured(crack, RED) // zoom
    assert len(red) and (red[:, 0].min(), red[:, 0].max()) == (4, 9)  # the true mask outline
    assert (red[:, 1].min(), red[:, 1].max()) == (2, 19)
    for row in (0, 1):  # good images: maps all zero, no mask
        good = _overlay_tile(picture, layout, block=0, row=row)
        assert not len(_coloured(good, GREEN)) and not len(_coloured(good, RED))
    spot = _overlay_tile(picture, layout, block=2, row=0)
    assert len(_coloured(spot, GREEN))  # map == mask: the green outline covers the red one


def test_overview_rows_and_types_set_its_size(setup: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    data, pred, _ = setup
    items = load_items(pred, data, read_prediction_meta(pred), read_scores(pred))
    one = write_overview(items, pred / "one.png", 0.5, 0.5, per_type=1)
    three = write_overview(items, pred / "three.png", 0.5, 0.5, per_type=3)
    assert one is not None and three is not None
    small, large = _layout(_rgb(one), 3, 1), _layout(_rgb(three), 3, 3)  # crack, spot: 2 images, good: 3
    assert small.legend_lines == large.legend_lines
    assert large.size[1] - small.size[1] == 2 * small.row_height
    assert small.size[0] == large.size[0] >= 3 * 2 * small.tile
    crack_only = [it for it in items if it.record.defect_type == "crack"]
    picture = _rgb(write_overview(crack_only, pred / "crack.png", 0.5, 0.5))
    assert _layout(picture, 1, 2).n_types == 1
    assert write_overview([], pred / "none.png", 0.5, 0.5) is None and not (pred / "none.png").exists()


def test_overview_without_thresholds_has_no_found_outline(
    setup: tuple[Path, Path, dict[str, np.ndarray]],
) -> None:
    data, pred, _ = setup
    items = load_items(pred, data, read_prediction_meta(pred), read_scores(pred))
    picture = _rgb(write_overview(items, pred / "nan.png", float("nan"), float("nan")))
    assert not len(_coloured(picture, GREEN))
    assert len(_coloured(picture, RED))  # the true masks are still outlined


def test_overview_of_a_dataset_without_masks_has_no_red(
    setup: tuple[Path, Path, dict[str, np.ndarray]],
) -> None:
    data, pred, _ = setup
    found = np.zeros((SIZE, SIZE), np.float32)
    found[20:28, 20:28] = 1.0  # away from the mask of crack/000, so that its outline would show
    np.save(pred / "maps/test/crack/000.png.npy", found)
    evaluate(pred, data, EvalConfig(overlays=0))
    assert len(_coloured(_rgb(pred / OVERVIEW_FILE), RED))  # with masks
    shutil.rmtree(data / "ground_truth")
    evaluate(pred, data, EvalConfig(overlays=0))
    picture = _rgb(pred / OVERVIEW_FILE)
    assert not len(_coloured(picture, RED))
    assert len(_coloured(picture, GREEN))  # the maps still find the defects


def test_overview_of_the_128px_sample_is_small_enough_for_the_readme(tmp_path: Path) -> None:
    """4 types x 2 rows of 128 px textures with smooth noisy maps: under 300 KB (README limit)."""
    from scipy import ndimage

    size = 128
    data, pred = tmp_path / "data", tmp_path / "pred"
    make_sample_dataset(data, n_train=1, n_test_good=2, n_test_defect_per_type=2, size=size)
    rng = np.random.default_rng(0)
    rows = []
    for image in sorted((data / "test").rglob("*.png")):
        rel, defect_type = image.relative_to(data).as_posix(), image.parent.name
        mask = np.zeros((size, size), np.float32)
        if defect_type != "good":
            mask = load_mask(data / "ground_truth" / defect_type / f"{image.stem}_mask.png", size)
        noise = ndimage.gaussian_filter(rng.random((size, size)), 3)
        amap = (0.5 * noise + 2.0 * ndimage.gaussian_filter(mask, 2)).astype(np.float32)
        (pred / "maps" / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(pred / "maps" / f"{rel}.npy", amap)
        rows.append({"path": rel, "score": float(amap.max())})
    pd.DataFrame(rows).to_csv(pred / "scores.csv", index=False)
    meta = {"family": "fake", "image_size": size, "threshold": 0.9, "pixel_threshold": 0.6}
    (pred / "prediction.json").write_text(json.dumps(meta))
    evaluate(pred, data, EvalConfig(overlays=0))
    picture = _rgb(pred / OVERVIEW_FILE)
    assert _layout(picture, n_types=4, rows=2, size=size).tile == size
    assert (pred / OVERVIEW_FILE).stat().st_size < 300 * 1024  # measured: 143 KB


def test_overview_captions_say_the_verdict_and_fit_the_cell() -> None:
    from texinspect.data.layout import ImageRecord
    from texinspect.evaluation import TestImage
    from texinspect.evaluation.pictures import _caption

    def item(rel: str, score: float) -> TestImage:
        record = ImageRecord(Path(rel), rel, "test", rel.split("/")[1])
        return TestImage(record, score, np.zeros((2, 2), np.float32), np.zeros((2, 2), bool))

    def measure(text: str) -> float:
        return 5.0 * len(text)

    assert _caption(item("test/crack/000.png", 0.9), 0.5, 500, measure) == "crack/000  score 0.9  defect"
    assert _caption(item("test/crack/001.png", 0.2), 0.5, 500, measure).endswith("good (missed)")
    assert _caption(item("test/good/000.png", 0.7), 0.5, 500, measure).endswith("defect (false alarm)")
    assert _caption(item("test/good/001.png", 0.2), float("nan"), 500, measure) == "good/001  score 0.2"
    long = _caption(item(f"test/crack/{'x' * 80}.png", 0.9), 0.5, 200, measure)
    assert measure(long) <= 200 and long.startswith("crack/xx") and ".." in long and long.endswith("defect")
