"""speed.py end to end on tiny data (separate train / infer processes per model), and its maths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tests.benchmarks.bench_helpers import SMOKE, load_script

speed = load_script("speed")
common = load_script("common")


def test_latency_stats_are_per_image() -> None:
    stats = common.latency_stats([80.0, 40.0, 60.0, 100.0, 120.0], per=8)
    assert stats["median_ms"] == 10.0
    assert stats["p90_ms"] == np.percentile([10.0, 5.0, 7.5, 12.5, 15.0], 90)


def test_ratios_to_the_peer() -> None:
    table = pd.DataFrame(
        {"cpu_b1_median_ms": [5.0, 20.0, 50.0], "cpu_patch_b1_median_ms": [np.nan, 1.0, np.nan]},
        index=pd.Index(["aessim", "fmrnet", "draem"], name="row"),
    )
    out = speed.add_peer_ratios(table)
    assert list(out["cpu_b1_vs_draem"]) == [0.1, 0.4, 1.0]
    assert "cpu_patch_b1_vs_draem" not in out.columns
    assert "cpu_b1_vs_draem" not in speed.add_peer_ratios(table.drop(index="draem")).columns


def test_speed_measures_each_model(bench_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    argv = ["--rows", "aessim", "fmrnet", "--data", str(bench_data), "--results", str(out), "--repeats", "2",
            "--warmup", "1", "--train-steps", "1", "--batch-sizes", "1", "2", "--profile-ops", *SMOKE]
    assert speed.main(argv) == 0
    table = pd.read_csv(out / "speed.csv", index_col="row")
    assert list(table.index) == ["aessim", "fmrnet"]
    for bs in (1, 2):
        for stat in ("median_ms", "p90_ms"):
            assert (table[f"cpu_b{bs}_{stat}"] > 0).all()
        assert (table[f"cpu_b{bs}_p90_ms"] >= table[f"cpu_b{bs}_median_ms"]).all()
    assert table.at["fmrnet", "cpu_patch_b1_median_ms"] > 0  # FMR-Net's patch-level exit is timed too
    assert np.isnan(table.at["aessim", "cpu_patch_b1_median_ms"])
    assert table.at["aessim", "img_s_train"] > 0
    assert table.at["fmrnet", "img_s_phase1"] > 0 and table.at["fmrnet", "img_s_phase2"] > 0
    assert (table["peak_rss_infer_mb"] > 50).all() and (table["peak_rss_train_mb"] > 50).all()
    assert (table["parameters"] > 1000).all()
    profile = (out / "profile_fmrnet.txt").read_text()
    assert "Self CPU" in profile and "aten::" in profile


def test_speed_adds_an_onnx_runtime_row(bench_data: Path, tmp_path: Path) -> None:
    """Issue 19: ``--onnx`` times the exported graphs with ONNX Runtime as a row of its own
    (a smoke run of the code path, tiny model and one repeat: not a measurement)."""
    out = tmp_path / "results"
    argv = ["--rows", "fmrnet", "--onnx", "--data", str(bench_data), "--results", str(out), "--repeats", "1",
            "--warmup", "0", "--train-steps", "0", "--batch-sizes", "1", "2", "--no-cuda", *SMOKE]
    assert speed.main(argv) == 0
    table = pd.read_csv(out / "speed.csv", index_col="row")
    assert list(table.index) == ["fmrnet", "fmrnet-onnxruntime"]
    for bs in (1, 2):
        assert table.at["fmrnet-onnxruntime", f"cpu_b{bs}_median_ms"] > 0
        assert table.at["fmrnet-onnxruntime", f"cpu_patch_b{bs}_median_ms"] > 0  # edge.onnx
    assert table.at["fmrnet-onnxruntime", "parameters"] == table.at["fmrnet", "parameters"]
    assert table.at["fmrnet-onnxruntime", "peak_rss_infer_mb"] > 0
