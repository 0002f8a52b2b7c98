"""Fast checks of the quality benchmark's helpers: the reference row's commands, step budgets,
surface names, and medians over runs whose pixel metrics are NaN (datasets without masks)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from tests.benchmarks.bench_helpers import SMOKE, load_script

from texinspect.errors import ConfigError
from texinspect.evaluation import markdown_table

quality = load_script("quality")
common = load_script("common")


def test_reference_row_commands(tmp_path: Path) -> None:
    row = common.ROWS["reference"]
    assert row.is_reference and not row.is_peer
    cmd = common.reference_train_command("../data/x", tmp_path / "ckpt.pt", seed=3, threads=2, steps=2600, minutes=15.0)
    assert cmd[0] == common.reference_python()
    assert cmd[1] == str(common.REPO.parent / "shared" / "reference" / "draem_lite" / "draem_lite.py")
    assert cmd[2:] == ["train", "--data", "../data/x", "--out", str(tmp_path / "ckpt.pt"), "--steps", "2600",
                       "--seed", "3", "--threads", "2"]
    if common.REFERENCE_PYTHON.exists():
        assert cmd[0] == str(common.REPO / ".venv" / "bin" / "python")
    timed = common.reference_train_command("d", tmp_path / "c.pt", seed=0, threads=1, steps=None, minutes=2.5, size=32)
    assert timed[timed.index("--minutes") + 1] == "2.5" and "--steps" not in timed
    assert timed[timed.index("--size") + 1] == "32"
    with pytest.raises(ConfigError, match="--reference-steps"):
        common.reference_train_command("d", tmp_path / "c.pt", seed=0, threads=1, steps=None, minutes=0)
    pred = common.reference_predict_command(tmp_path / "c.pt", "d", tmp_path / "pred", threads=2)
    assert pred[2:] == ["predict", "--ckpt", str(tmp_path / "c.pt"), "--data", "d", "--out", str(tmp_path / "pred"),
                        "--threads", "2"]


def test_step_budgets_reach_the_config() -> None:
    args = quality.parse_args(["--steps-phase1", "7", "--steps-phase2", "5", "--reference-steps", "9", "--minutes", "3",
                               "--data", "a/datasets/magnetic_tile", "b/datasets/elpv/mono", "--profile", "smoke"])
    settings = quality.settings_from(args, args.data[1])
    assert settings.data == "b/datasets/elpv/mono" and settings.reference_steps == 9
    config = common.row_config(common.ROWS["rbae"], settings, seed=1)
    assert (config.train.max_steps_phase1, config.train.max_steps_phase2, config.train.max_minutes) == (7, 5, 0.0)
    timed = common.row_config(common.ROWS["rbae"], quality.settings_from(quality.parse_args(["--minutes", "3"])), 1)
    assert timed.train.max_minutes == 3.0
    assert "steps 7 + 5" in quality.budget_text(settings) and "reference 9 steps" in quality.budget_text(settings)


def test_surface_names() -> None:
    assert common.surface_name("../shared/datasets/elpv/mono") == "elpv/mono"
    assert common.surface_name("../shared/datasets/magnetic_tile/") == "magnetic_tile"
    assert common.surface_name("/tmp/x/data") == "data"


def test_nan_pixel_metrics_give_na_medians(capsys: pytest.CaptureFixture[str]) -> None:
    runs = pd.DataFrame(
        [
            {"surface": "elpv/mono", "row": "rbae", "seed": s, "image_auroc": 0.6 + s / 10, "pixel_auroc": None,
             "aupro": math.nan, "steps": 10}
            for s in range(3)
        ]
        + [{"surface": "magnetic_tile", "row": "rbae", "seed": 0, "image_auroc": 0.7, "pixel_auroc": 0.9,
            "aupro": 0.8, "steps": 10}]
    )
    table = common.median_table(runs, ["image_auroc", "pixel_auroc", "aupro", "steps"], by=quality.GROUP)
    assert table.at[("elpv/mono", "rbae"), "image_auroc"] == pytest.approx(0.7)
    assert table.at[("elpv/mono", "rbae"), "seeds"] == 3
    assert math.isnan(table.at[("elpv/mono", "rbae"), "pixel_auroc"]) and math.isnan(table.at[("elpv/mono", "rbae"), "aupro"])
    assert table.at[("magnetic_tile", "rbae"), "pixel_auroc"] == pytest.approx(0.9)
    common.print_table("t", table.xs("elpv/mono", level="surface"))
    assert "n/a" in capsys.readouterr().out
    assert "| elpv/mono | rbae | 3 | 0.700 | n/a | n/a | 10 |" in markdown_table(table.reset_index())
    spread = common.spread_table(runs, ["image_auroc", "pixel_auroc"], by=quality.GROUP)
    assert spread.at[("elpv/mono", "rbae"), "image_auroc"] == "0.700 [0.600, 0.800]"  # median [min, max] over seeds
    assert spread.at[("elpv/mono", "rbae"), "pixel_auroc"] == "n/a" and spread.at[("elpv/mono", "rbae"), "seeds"] == 3
    assert spread.at[("magnetic_tile", "rbae"), "pixel_auroc"] == "0.900 [0.900, 0.900]"


def test_reference_row_on_two_surfaces(bench_data: Path, tmp_path: Path) -> None:
    """The reference runs as a subprocess (5 steps at 32 px), scored by evaluate on both surfaces."""
    if not common.REFERENCE_SCRIPT.is_file():
        pytest.skip(f"{common.REFERENCE_SCRIPT} not present")
    no_masks = tmp_path / "nomask"
    shutil.copytree(bench_data, no_masks)
    shutil.rmtree(no_masks / "ground_truth")
    out, results = tmp_path / "runs", tmp_path / "results"
    argv = ["--rows", "reference", "--seeds", "0", "--reference-steps", "5", "--reference-size", "32",
            "--data", str(bench_data), str(no_masks), "--out", str(out), "--results", str(results), *SMOKE]
    assert quality.main(argv) == 0
    runs = pd.read_csv(results / "quality_runs.csv").set_index("surface")
    assert list(runs.index) == ["data", "nomask"] and (runs["steps"] == 5).all()
    assert (runs["threshold_source"] == "k_sigma_test_good").all()  # no prediction.json from the outside tool
    assert 0 <= runs.at["data", "pixel_auroc"] <= 1 and math.isnan(runs.at["nomask", "pixel_auroc"])
    assert (out / "data" / "reference" / "seed0" / "pred" / "metrics.json").is_file()
    table = pd.read_csv(results / "quality.csv")
    assert table[["surface", "row"]].values.tolist() == [["data", "reference"], ["nomask", "reference"]]
    assert "n/a" in (results / "quality.md").read_text()
