"""quality.py end to end on tiny data: rows trained with their overrides, a derived row re-uses
its base, every metric comes from texinspect's evaluate, CSV / Markdown / JSON are written."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tests.benchmarks.bench_helpers import SMOKE, load_script

from texinspect.errors import ConfigError

quality = load_script("quality")
common = load_script("common")


def test_row_selection_and_training_order() -> None:
    names = [r.name for r in common.select_rows(["fmrnet_gms", "rbae*"])]
    assert names[0] == "fmrnet_gms" and set(names[1:]) == {n for n in common.ROWS if n.startswith("rbae")}
    order = [r.name for r in common.training_order(common.select_rows(["fmrnet_gms", "aessim"]))]
    assert order == ["fmrnet", "fmrnet_gms", "aessim"]  # the base is trained before its derived row
    assert [r.name for r in common.select_rows(["all"])] == list(common.ROWS)
    with pytest.raises(ConfigError, match="matches no row"):
        common.select_rows(["nope"])


def test_quality_runs_rows_end_to_end(bench_data: Path, tmp_path: Path) -> None:
    out, results = tmp_path / "runs", tmp_path / "results"
    csv = tmp_path / "medians.csv"
    argv = ["--rows", "aessim", "rbae_no_rbam", "fmrnet_gms", "--seeds", "0", "--minutes", "0.02", "--data",
            str(bench_data), "--out", str(out), "--results", str(results), "--csv", str(csv), *SMOKE]
    assert quality.main(argv) == 0

    table = pd.read_csv(csv, index_col="row")
    assert list(table.index) == ["aessim", "rbae_no_rbam", "fmrnet_gms"]  # fmrnet trained, not reported
    for col in quality.COLUMNS:
        assert col in table.columns
    for metric in ("image_auroc", "pixel_auroc", "aupro"):
        assert table[metric].between(0, 1).all(), table[metric]
    assert (table["steps"] > 0).all() and (table["train_wall_s"] > 0).all()

    # the metrics are exactly what texinspect's evaluate wrote for that prediction
    for row in table.index:
        written = json.loads((out / row / "seed0" / "pred" / "metrics.json").read_text())
        for metric in ("image_auroc", "pixel_auroc", "aupro", "f1", "pixel_f1"):
            a, b = written[metric], table.at[row, metric]
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b), (row, metric)

    # overrides reached the config the model was trained with
    card = yaml.safe_load((out / "rbae_no_rbam" / "seed0" / "model" / "model.yaml").read_text())
    assert card["family"] == "rbae" and card["config"]["rbae"]["use_rbam"] is False
    assert card["config"]["data"]["image_size"] == 64 and card["config"]["train"]["max_minutes"] == 0.02
    # the derived row is the fmrnet model of the same seed, one modality, re-calibrated
    derived = yaml.safe_load((out / "fmrnet_gms" / "seed0" / "model" / "model.yaml").read_text())
    base = yaml.safe_load((out / "fmrnet" / "seed0" / "model" / "model.yaml").read_text())
    assert derived["config"]["fmrnet"]["modalities"] == ["gms"] and base["config"]["fmrnet"]["modalities"] == ["gms", "ssim", "residual"]
    assert derived["pixel_threshold"] != base["pixel_threshold"]  # the image score is the patch rule in both
    runs = pd.read_csv(results / "quality_runs.csv")
    fmr_steps = json.loads((out / "fmrnet" / "seed0" / "train_summary.json").read_text())
    assert runs.set_index("row").at["fmrnet_gms", "steps"] == sum(p["steps"] for p in fmr_steps["phases"].values())

    meta = json.loads((results / "quality.json").read_text())
    assert meta["rows"] == ["aessim", "rbae_no_rbam", "fmrnet_gms"] and meta["torch"] and meta["date"]
    md = (results / "quality.md").read_text()
    assert "| row |" in md and "aessim" in md and "torch threads" in md
    assert not (out / "aessim" / "seed0" / "checkpoints").exists()  # only what later scripts need is kept


def test_merge_and_rescore_reuse_trained_runs(bench_data: Path, tmp_path: Path) -> None:
    """`quality.py --merge` rebuilds the table from run CSVs; `rescore.py` re-scores without training."""
    out, results = tmp_path / "runs", tmp_path / "results"
    argv = ["--rows", "fmrnet", "--seeds", "0", "--minutes", "0.02", "--data", str(bench_data),
            "--out", str(out), "--results", str(results), *SMOKE]
    assert quality.main(argv) == 0
    runs_csv = results / "quality_runs.csv"
    first = pd.read_csv(results / "quality.csv", index_col="row")

    merged = tmp_path / "merged"
    assert quality.main(["--merge", str(runs_csv), "--results", str(merged)]) == 0
    again = pd.read_csv(merged / "quality.csv", index_col="row")
    assert again.at["fmrnet", "image_auroc"] == pytest.approx(first.at["fmrnet", "image_auroc"])

    rescore = load_script("rescore")
    rescored = tmp_path / "rescored"
    argv = ["--runs-csv", str(runs_csv), "--out", str(out), "--rows", "fmrnet", "--set", "fmrnet.image_score=map",
            "--data", str(bench_data), "--results", str(rescored), "--threads", "1"]
    assert rescore.main(argv) == 0
    card = yaml.safe_load((out / "fmrnet" / "seed0" / "rescored_model" / "model.yaml").read_text())
    assert card["score_rule"] == "max_of_gaussian_smoothed_map" and card["config"]["fmrnet"]["image_score"] == "map"
    table = pd.read_csv(rescored / "quality.csv", index_col="row")
    assert 0.0 <= table.at["fmrnet", "image_auroc"] <= 1.0
    assert table.at["fmrnet", "steps"] == first.at["fmrnet", "steps"]  # training columns carried over
