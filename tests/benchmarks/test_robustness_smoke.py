"""robustness.py: the speckle noise itself, the noisy test copies, and a run end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tests.benchmarks.bench_helpers import SMOKE, load_script

robustness = load_script("robustness")


def test_speckle_replaces_a_share_p_of_pixels() -> None:
    rng = np.random.default_rng(0)
    image = np.full((200, 200), 7, np.uint8)
    assert np.array_equal(robustness.speckle(image, 0.0, rng), image)
    noisy = robustness.speckle(image, 0.3, rng)
    changed = (noisy != 7).mean()
    assert 0.3 * (1 - 1 / 256) - 0.01 < changed < 0.3 + 0.01  # a replaced pixel may draw 7 again
    values = noisy[noisy != 7]
    assert values.min() < 30 and values.max() > 225  # uniform over the whole 0..255 range
    rgb = np.zeros((100, 100, 3), np.uint8)
    hit = (robustness.speckle(rgb, 0.5, rng) != 0).any(axis=2)
    assert 0.45 < hit.mean() < 0.55  # one decision per pixel, not per channel
    with pytest.raises(ValueError, match="probability"):
        robustness.speckle(image, 1.5, rng)


def test_noisy_copy_keeps_names_and_masks(bench_data: Path, tmp_path: Path) -> None:
    target = robustness.noisy_copy(bench_data, 0.2, tmp_path / "p0.2")
    originals = sorted(p.relative_to(bench_data) for p in (bench_data / "test").rglob("*.png"))
    copies = sorted(p.relative_to(target) for p in (target / "test").rglob("*.png"))
    assert copies == originals
    first = originals[0]
    a = np.asarray(Image.open(bench_data / first))
    b = np.asarray(Image.open(target / first))
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    changed = (a != b).reshape(a.shape[0], a.shape[1], -1).any(axis=2).mean()
    assert 0.15 < changed < 0.25, changed
    assert (target / "ground_truth").resolve() == (bench_data / "ground_truth").resolve()
    again = robustness.noisy_copy(bench_data, 0.2, tmp_path / "again")
    assert np.array_equal(np.asarray(Image.open(again / first)), b)  # the same noise for every model


def test_robustness_end_to_end(bench_data: Path, tmp_path: Path) -> None:
    out, results = tmp_path / "runs", tmp_path / "results"
    argv = ["--rows", "aessim", "fmrnet", "--ps", "0", "0.3", "--seeds", "0", "--minutes", "0.02",
            "--data", str(bench_data), "--out", str(out), "--results", str(results), *SMOKE]
    assert robustness.main(argv) == 0
    table = pd.read_csv(results / "robustness.csv")
    expected = {"aessim", "fmrnet", "fmrnet_gms", "fmrnet_ssim", "fmrnet_residual"}
    assert set(table["row"]) == expected and len(table) == 2 * len(expected)
    assert sorted(set(table["p"])) == [0.0, 0.3]
    assert table["image_auroc"].between(0, 1).all() and table["pixel_auroc"].between(0, 1).all()
    # different noise gives different maps: not every row scores the same at p=0 and p=0.3
    wide = table.pivot(index="row", columns="p", values="pixel_auroc")
    assert (wide[0.0] != wide[0.3]).any()
    with Image.open(results / "robustness.png") as im:
        assert im.size[0] > 400 and im.size[1] > 200
    assert not (out / "noisy").exists()  # noisy copies are temporary unless --keep-noisy
