"""The DRAEM peer through the harness (needs benchmarks/peers/.venv: `bash benchmarks/peers/setup.sh`).

The peer's virtual environment holds anomalib, torchvision and a second torch (several GB), so it
is not part of the project's test environment; these tests run where it was created.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tests.benchmarks.bench_helpers import SMOKE, load_script

common = load_script("common")
quality = load_script("quality")
speed = load_script("speed")

pytestmark = pytest.mark.skipif(
    not common.peer_available(), reason="DRAEM peer venv missing: run `bash benchmarks/peers/setup.sh`"
)


def test_draem_row_is_scored_by_texinspect(bench_data: Path, tmp_path: Path) -> None:
    out, results = tmp_path / "runs", tmp_path / "results"
    argv = ["--rows", "draem", "--seeds", "0", "--minutes", "0.01", "--data", str(bench_data), "--out", str(out),
            "--results", str(results), *SMOKE]
    assert quality.main(argv) == 0
    table = pd.read_csv(results / "quality.csv", index_col="row")
    assert table.at["draem", "steps"] >= 1 and 0 <= table.at["draem", "pixel_auroc"] <= 1
    card = yaml.safe_load((out / "draem" / "seed0" / "model" / "model.yaml").read_text())
    assert card["family"] == "draem" and card["image_size"] == 64 and card["threshold"] is not None
    assert card["extra"]["anomalib"] and card["extra"]["torch"]  # the peer records its own stack
    metrics = json.loads((out / "draem" / "seed0" / "pred" / "metrics.json").read_text())
    assert metrics["family"] == "draem" and metrics["threshold_source"] == "model"


def test_draem_speed_json() -> None:
    args = speed.parse_args(["--image-size", "64", "--repeats", "2", "--warmup", "1", "--train-steps", "1",
                             "--batch-sizes", "1", "2", "--threads", "1"])
    rec = speed.peer_worker(args, "cpu")
    assert rec["row"] == "draem" and rec["parameters"] > 9e7  # anomalib's DRAEM: ~97 M parameters
    assert rec["cpu_b2_median_ms"] > 0 and rec["cpu_b1_p90_ms"] >= rec["cpu_b1_median_ms"]
    assert rec["img_s_train"] > 0 and rec["peak_rss_train_mb"] >= rec["peak_rss_infer_mb"] > 100
