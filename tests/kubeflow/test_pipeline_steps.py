"""What the component bodies call: config resolution, CLI argument lists, artifact plumbing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from texinspect.config import load_config
from texinspect.errors import ConfigError
from texinspect.kubeflow import steps

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / "params.yaml"


def test_overrides_keep_their_types() -> None:
    """A JSON string, not a KFP dict: integers must stay integers for the config's type checks."""
    parsed = steps.parse_overrides('{"train.batch_size": 4, "train.lr": 0.001, "rbae.use_rbam": false}')
    assert parsed == {"train.batch_size": 4, "train.lr": 0.001, "rbae.use_rbam": False}
    assert isinstance(parsed["train.batch_size"], int)
    assert steps.parse_overrides("train.batch_size: 2") == {"train.batch_size": 2}  # YAML works too
    assert steps.parse_overrides("") == {} and steps.parse_overrides(None) == {}
    for bad in ("[1, 2]", '"text"', "{a: [unclosed"):
        with pytest.raises(ConfigError, match="overrides"):
            steps.parse_overrides(bad)


def test_negative_typed_parameters_mean_unset() -> None:
    assert steps.typed_overrides({"batch_size": -1, "lr": -1.0, "max_minutes": 0.0, "seed": 3}) == {
        "train.max_minutes": 0.0,
        "seed": 3,
    }
    with pytest.raises(ConfigError, match="bogus"):
        steps.typed_overrides({"bogus": 1})


def test_resolve_config_precedence(tmp_path: Path) -> None:
    """params.yaml < profile < overrides < typed parameters < model, written as one full file."""
    out = tmp_path / "cfg" / "config.yaml"
    config = steps.resolve_config(
        out,
        model="fmrnet",
        profile="smoke",
        overrides='{"train.batch_size": 2, "fmrnet.memory_size": 8, "model": "rbae"}',
        params_file=str(PARAMS),
        typed={"batch_size": 3, "lr": -1.0, "image_size": -1},
    )
    smoke = load_config(PARAMS, profile="smoke")
    assert config.model == "fmrnet"  # the model parameter wins over an override
    assert config.train.batch_size == 3  # typed beats overrides
    assert config.fmrnet.memory_size == 8  # overrides beat the profile
    assert config.data.image_size == smoke.data.image_size  # unset typed keeps the profile's value
    assert config.train.lr == smoke.train.lr
    # the file is a complete config: later stages load it with no profile and get the same values
    assert load_config(out).to_dict() == config.to_dict()
    assert "profiles" not in yaml.safe_load(out.read_text())


def test_resolve_config_errors_name_the_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="train.batchsize"):
        steps.resolve_config(tmp_path / "c.yaml", "rbae", "", '{"train.batchsize": 4}', str(PARAMS))
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        steps.resolve_config(tmp_path / "c.yaml", "rbae", "nope", "", str(PARAMS))
    monkeypatch.delenv(steps.PARAMS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="params file not found"):
        steps.resolve_config(tmp_path / "c.yaml", "rbae")
    monkeypatch.setenv(steps.PARAMS_ENV, str(PARAMS))  # the image's way of pointing at its params
    assert steps.resolve_config(tmp_path / "c.yaml", "rbae").model == "rbae"


def test_train_argv_and_bad_phase() -> None:
    assert steps.train_argv("c.yaml", "data", "run", "1") == [
        "train", "--config", "c.yaml", "--data", "data", "--out", "run", "--phase", "1",
    ]  # fmt: skip
    with pytest.raises(steps.StepError, match="phase"):
        steps.train_argv("c.yaml", "data", "run", "3")


def test_a_failing_stage_raises_step_error(tmp_path: Path) -> None:
    with pytest.raises(steps.StepError, match="stage evaluate failed: .*missing"):
        steps.evaluate(str(tmp_path / "missing"), str(tmp_path), str(PARAMS))


def test_copy_tree_and_required_files(tmp_path: Path) -> None:
    src = tmp_path / "a"
    (src / "checkpoints").mkdir(parents=True)
    (src / "checkpoints" / "last.pt").write_bytes(b"x")
    out = steps.copy_tree(src, tmp_path / "b")
    assert (out / "checkpoints" / "last.pt").read_bytes() == b"x"
    with pytest.raises(steps.StepError, match="not a folder"):
        steps.copy_tree(tmp_path / "nothing", tmp_path / "c")
    with pytest.raises(steps.StepError, match="model card"):
        steps.model_dir_of(src)


def test_metrics_and_report(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text(
        json.dumps(
            {"image_auroc": 0.9, "aupro": None, "n_images": 12, "threshold_source": "k_sigma", "ok": True}
        )
    )
    (tmp_path / "per_type.md").write_text("| type | auroc |\n|---|---|\n| crack | 0.8 |\n")
    assert steps.scalar_metrics(tmp_path / "metrics.json") == {"image_auroc": 0.9, "n_images": 12.0}
    report = steps.write_report(tmp_path, tmp_path / "out" / "report.md").read_text()
    assert "| image_auroc | 0.9 |" in report and "| crack | 0.8 |" in report
    with pytest.raises(steps.StepError, match="metrics.json not found"):
        steps.scalar_metrics(tmp_path / "nope.json")


def test_step_modules_import_inside_a_kfp_task() -> None:
    """In a task, KFP's runtime ships a reduced kfp.dsl: the CLI and the step modules must not need more."""
    import os
    import subprocess
    import sys

    code = (
        "from texinspect.cli import build_parser; build_parser();"
        "import texinspect.kubeflow.steps, texinspect.kubeflow.deploy, texinspect.training.distributed;"
        "import sys; assert 'kfp.kubernetes' not in sys.modules, 'kfp.kubernetes was imported'"
    )
    env = {**os.environ, "_KFP_RUNTIME": "true"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_roc_and_confusion_become_kfp_classification_metrics(tmp_path: Path) -> None:
    """Issue 19: the evaluation's ROC curve and confusion matrix as KFP ClassificationMetrics
    (what the Kubeflow UI draws), JSON-safe and bounded."""
    import json

    import numpy as np
    import pandas as pd
    from kfp.dsl import ClassificationMetrics
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(500), np.ones(500)]
    scores = labels + rng.normal(0, 0.8, size=labels.size)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    assert np.isinf(thresholds[0]) and len(fpr) > steps.MAX_CURVE_POINTS
    (tmp_path / "curves").mkdir()
    pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thresholds}).to_csv(tmp_path / "curves" / "roc.csv", index=False)
    pd.DataFrame(
        {"defect_type": ["crack", "spot", "good", "all"], "n": [10, 6, 8, 24], "flagged": [0.9, 0.5, 0.25, 0.5],
         "image_auroc": [0.9, 0.8, None, 0.85], "pixel_auroc": None, "aupro": None}
    ).to_csv(tmp_path / "per_type.csv", index=False)  # fmt: skip

    roc = steps.roc_curve_points(tmp_path)
    assert roc is not None and len(roc["fpr"]) == steps.MAX_CURVE_POINTS
    assert roc["fpr"][0] == 0.0 and roc["fpr"][-1] == 1.0 and roc["tpr"][-1] == 1.0
    assert all(np.isfinite(roc["threshold"])) and roc["threshold"][0] > roc["threshold"][1]
    categories, matrix = steps.confusion_matrix(tmp_path)
    assert categories == ["good", "defect"] and matrix == [[6, 2], [4, 12]]

    artifact = ClassificationMetrics(name="classification")
    artifact.log_roc_curve(roc["fpr"], roc["tpr"], roc["threshold"])
    artifact.log_confusion_matrix(categories, matrix)
    json.dumps(artifact.metadata, allow_nan=False)  # what KFP writes to MLMD
    assert len(artifact.metadata["confidenceMetrics"]) == steps.MAX_CURVE_POINTS
    assert steps.roc_curve_points(tmp_path / "nothing") is None


def test_confusion_matrix_needs_a_known_threshold(tmp_path: Path) -> None:
    import pandas as pd

    pd.DataFrame({"defect_type": ["crack", "good", "all"], "n": [2, 2, 4], "flagged": [None, None, None]}).to_csv(
        tmp_path / "per_type.csv", index=False
    )
    assert steps.confusion_matrix(tmp_path) is None


def test_ddp_steps_start_their_processes_with_torchrun() -> None:
    """Issue 19: PyTorch's own launcher (torchrun), not a home-made spawn, runs the ranks."""
    from torch.distributed.run import get_args_parser

    argv = steps.train_argv("c.yaml", "data", "run", "1")
    parsed = get_args_parser().parse_args(steps.torchrun_args(argv, 4))
    assert parsed.standalone and parsed.nproc_per_node == "4"
    assert parsed.module and parsed.training_script == "texinspect" and parsed.training_script_args == argv


@pytest.mark.timeout(300)
def test_a_failing_rank_fails_the_step_with_torchrun_s_summary(tmp_path: Path) -> None:
    with pytest.raises(steps.StepError, match=r"torchrun --standalone --nproc-per-node=2"):
        steps.run_training(str(tmp_path / "missing.yaml"), str(tmp_path), str(tmp_path / "run"), "1", world_size=2)
