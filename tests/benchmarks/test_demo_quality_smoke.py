"""Issue 21: the demo end to end as ``make demo`` runs it (smoke profile, tiny sample), through
``benchmarks/demo_quality.py``: what a person sees, the picture printed last, the table written.

The demo's quality bars are measured by the benchmark with the ``demo`` profile (minutes per
seed); this checks the path, not the quality.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tests.benchmarks.bench_helpers import load_script

from texinspect.data.sample import make_sample_dataset

demo_quality = load_script("demo_quality")


def test_the_demo_shows_task_lines_a_table_and_the_picture_last(tmp_path: Path) -> None:
    data = tmp_path / "sample"
    make_sample_dataset(data, n_train=24, n_test_good=3, n_test_defect_per_type=2, size=64)
    out, results = tmp_path / "runs", tmp_path / "results"
    argv = ["--seeds", "0", "--profile", "smoke", "--data", str(data), "--out", str(out), "--results", str(results)]
    assert demo_quality.main(argv) == 0

    shown = (out / "seed0.log").read_text().splitlines()
    assert shown[-1].startswith("picture: ") and Path(shown[-1].split()[1]).is_file()
    assert shown[-1].split()[1].endswith("evaluate-model/evaluation/overview.png")
    for task in ("train-phase1", "train-phase2", "evaluate-model", "register-model"):
        assert any(line.split()[:2] == [task, "ok"] for line in shown), task
    assert any(line.startswith("| image AUROC") for line in shown)
    assert len(shown) < 80  # one line per task, no kfp flood (it is in pipeline.log)
    assert len((out / "seed0" / "pipeline.log").read_text().splitlines()) > 300

    runs = pd.read_csv(results / "demo_runs.csv")
    assert list(runs["seed"]) == [0] and 0.0 <= runs["image_auroc"][0] <= 1.0 and runs["demo_wall_s"][0] > 0
    table = (results / "demo_quality.md").read_text()
    assert "image_auroc_bar" in table and "demo_wall_s" in table
