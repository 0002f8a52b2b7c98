"""Sweeps end to end with the fake family: failures, NaN, pruning, report files, MLflow runs."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from texinspect.errors import ConfigError
from texinspect.tuning import run_sweep
from texinspect.tuning.study import open_study


def _study(plan) -> optuna.Study:
    return open_study(plan.ref, plan.settings)


def test_three_trials_complete_and_write_the_report(write_params, make_plan, fake_family, tmp_path: Path) -> None:
    params = write_params()
    plan = make_plan(params, tmp_path / "sweep", 3)
    result = run_sweep(plan)
    study = _study(plan)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert result.ran == 3
    for t in study.trials:
        assert 0.0 <= t.value <= 1.0
        assert t.value == t.user_attrs["pixel_auroc"]
        assert set(t.user_attrs["overrides"]) == {"train.lr", "rbae.ffm_kernel"}
    out = tmp_path / "sweep"
    for name in ("best_params.yaml", "best_overrides.yaml", "trials.csv", "sweep_summary.json"):
        assert (out / name).is_file(), name
    for png in ("history.png", "importance.png"):
        assert (out / "plots" / png).stat().st_size > 1000
    table = pd.read_csv(out / "trials.csv")
    assert list(table["state"]) == ["COMPLETE"] * 3
    assert result.summary["best"]["value"] == max(t.value for t in study.trials)


FAILING_SPACE = {
    "rbae": {
        "train.lr": {"type": "categorical", "choices": [0.05, 0.2, 1.5]},
        "train.weight_decay": {"type": "categorical", "choices": [0.0, 1.0]},
    }
}


def test_a_raising_trial_and_a_nan_trial_fail_and_the_study_goes_on(write_params, make_plan, fake_family, tmp_path: Path) -> None:
    params = write_params(space=FAILING_SPACE)
    plan = make_plan(params, tmp_path / "sweep", 4)
    study = _study(plan)
    for lr, wd in ((0.05, 0.0), (0.2, 1.0), (1.5, 0.0), (0.2, 0.0)):
        study.enqueue_trial({"train.lr": lr, "train.weight_decay": wd})
    result = run_sweep(plan)
    trials = _study(plan).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].user_attrs["error"].startswith("RuntimeError: fake family")
    assert trials[2].user_attrs["error"].startswith("FloatingPointError") and "non-finite" in trials[2].user_attrs["error"]
    assert result.summary["states"] == {"COMPLETE": 2, "FAIL": 2}
    assert result.summary["best"]["trial"] in (0, 3)
    table = pd.read_csv(tmp_path / "sweep" / "trials.csv")
    assert table.loc[1, "error"].startswith("RuntimeError")


def test_a_trial_worse_than_the_median_is_pruned_from_its_logged_losses(write_params, make_plan, fake_family, tmp_path: Path) -> None:
    space = {"rbae": {"train.lr": {"type": "categorical", "choices": [0.5, 0.001]}}}
    params = write_params(space=space, sweep={"pruner": {"kind": "median", "startup_trials": 1, "warmup_steps": 0}})
    plan = make_plan(params, tmp_path / "sweep", 3)
    study = _study(plan)
    for lr in (0.5, 0.001, 0.5):
        study.enqueue_trial({"train.lr": lr})
    run_sweep(plan)
    trials = _study(plan).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    # the first trial reported every logged row of both phases (4 + 4 steps, one row each) as -rec
    values = trials[0].intermediate_values
    assert sorted(values) == list(range(1, 9))
    assert values[1] == pytest.approx(-1.0 / 1.5) and values[8] == pytest.approx(-1.0 / 3.0)
    assert max(trials[1].intermediate_values) < 8  # stopped before the end of training
    assert not (tmp_path / "sweep" / "trials" / "0001" / "model").exists()


def test_each_trial_is_an_mlflow_child_run_of_the_study_run(write_params, make_plan, fake_family, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = {"tracking": {"enabled": True, "tracking_uri": uri, "artifact_location": str(tmp_path / "mlartifacts")}}
    params = write_params(config=config)
    plan = make_plan(params, tmp_path / "sweep", 2)
    run_sweep(plan)
    plan = make_plan(params, tmp_path / "sweep", 3)  # resume: one more
    run_sweep(plan)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("texinspect")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("texinspect.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("texinspect.kind") == "sweep-trial"]
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert sorted(r.data.tags["optuna.trial"] for r in children) == ["0", "1", "2"]
    for child in children:
        assert 0.0 <= child.data.metrics["pixel_auroc"] <= 1.0
        assert "train.lr" in child.data.params and child.info.status == "FINISHED"
        assert "phase2.rec" in child.data.metrics  # the logged loss rows, per step
    assert parent.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best_params.yaml", "trials.csv", "history.png", "importance.png"} <= artifacts
    assert _study(plan).user_attrs["mlflow_parent_run_id"] == parent.info.run_id


def test_tracking_failures_do_not_stop_the_sweep(
    write_params, make_plan, fake_family, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "not-a-dir"
    bad.write_text("a file where the database folder should be")
    config = {"tracking": {"enabled": True, "tracking_uri": f"sqlite:///{bad / 'x' / 'mlflow.db'}"}}
    params = write_params(config=config)
    plan = make_plan(params, tmp_path / "sweep", 2)
    with caplog.at_level("WARNING", logger="texinspect.tuning.mlflow_runs"):
        result = run_sweep(plan, plots=False)
    assert result.summary["states"] == {"COMPLETE": 2}
    assert any("MLflow tracking off" in r.message for r in caplog.records)


def test_report_only_rewrites_the_report_from_storage_without_new_trials(write_params, make_plan, fake_family, tmp_path: Path) -> None:
    params = write_params()
    out = tmp_path / "sweep"
    run_sweep(make_plan(params, out, 2), plots=False)
    before = (out / "best_params.yaml").read_text()
    (out / "best_params.yaml").unlink()
    report = tmp_path / "report"
    plan = make_plan(params, report, 2, storage=f"sqlite:///{out / 'optuna.db'}")
    result = run_sweep(plan, worker_trials=0, recover=False)
    assert result.ran == 0 and len(_study(plan).trials) == 2
    assert (report / "best_params.yaml").read_text() == before
    assert (report / "plots" / "history.png").is_file()


def test_resuming_with_another_search_space_is_refused(write_params, make_plan, fake_family, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    run_sweep(make_plan(write_params(), out, 1), plots=False)
    other = write_params(space={"rbae": {"train.lr": {"type": "float", "low": 0.1, "high": 0.2}}}, name="other.yaml")
    with pytest.raises(ConfigError, match="space"):
        run_sweep(make_plan(other, out, 2))


def test_best_params_file_is_the_best_trials_resolved_config(write_params, make_plan, fake_family, tmp_path: Path) -> None:
    params = write_params()
    out = tmp_path / "sweep"
    run_sweep(make_plan(params, out, 2), plots=False)
    study = _study(make_plan(params, out, 2))
    best = max(study.trials, key=lambda t: t.value)
    from texinspect.config import load_config

    loaded = load_config(out / "best_params.yaml")
    assert loaded.train.lr == best.user_attrs["overrides"]["train.lr"]
    assert loaded.rbae.ffm_kernel == best.user_attrs["overrides"]["rbae.ffm_kernel"]
    assert loaded.fmrnet.memory_size == 16  # the smoke profile is baked in
    assert yaml.safe_load((out / "best_overrides.yaml").read_text()) == best.user_attrs["overrides"]
