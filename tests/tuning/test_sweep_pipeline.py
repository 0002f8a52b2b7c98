"""The Kubeflow sweep pipeline: compiles, and runs on this machine (kfp.local) with 2 parallel workers."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from texinspect.config import load_config

from .conftest import REPO


def _module() -> ModuleType:
    from texinspect.kubeflow import sweep_pipeline

    return sweep_pipeline


def _tasks(spec: dict) -> dict:
    return spec["root"]["dag"]["tasks"]


def test_compiles_with_parallel_workers_and_the_training_components(tmp_path: Path) -> None:
    m = _module()
    path = m.compile_sweep_pipeline(tmp_path / "sweep.yaml", m.SweepClusterSettings(workers=3))
    docs = list(yaml.safe_load_all(path.read_text()))
    spec = docs[0]
    tasks = _tasks(spec)
    assert {"sweep-setup", "sweep-best", "train-phase1", "build-memory-bank", "train-phase2", "evaluate-model"} <= set(tasks)
    (loop_key,) = [k for k, t in tasks.items() if t["taskInfo"]["name"] == "workers"]
    loop = tasks[loop_key]
    assert loop["iteratorPolicy"]["parallelismLimit"] == 3
    assert json.loads(loop["parameterIterator"]["items"]["raw"]) == [0, 1, 2]
    # the best config feeds the training components; the best step waits for every worker
    assert tasks["train-phase1"]["inputs"]["artifacts"]["config"]["taskOutputArtifact"]["producerTask"] == "sweep-best"
    assert loop_key in tasks["sweep-best"]["dependentTasks"]
    assert "sweep-setup" in loop["dependentTasks"]  # the study exists before any worker starts
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {"data_uri", "model", "trials", "study_name", "profile", "overrides", "params_file"} <= set(params)
    assert "storage" not in params  # the database URL carries a password: a Secret, not a parameter
    # workers get the GPU; MLflow settings reach every sweep task on a cluster
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert "configMapAsEnv" in platform["exec-sweep-worker"]
    executors = spec["deploymentSpec"]["executors"]
    assert executors["exec-sweep-worker"]["container"]["resources"]["accelerator"]["resourceCount"] == "1"
    assert "accelerator" not in executors["exec-sweep-best"]["container"]["resources"]


def test_checked_in_yaml_is_up_to_date(tmp_path: Path) -> None:
    from texinspect.kubeflow.settings import FLAVOR_SETTINGS

    m = _module()
    for flavor, cluster in FLAVOR_SETTINGS.items():  # each image carries its flavor's YAML
        fresh = m.compile_sweep_pipeline(tmp_path / f"{flavor}.yaml", m.SweepClusterSettings(cluster))
        kept = REPO / "pipelines" / flavor / m.PIPELINE_FILE
        assert kept.is_file(), "run: texinspect pipeline compile"
        assert list(yaml.safe_load_all(kept.read_text())) == list(yaml.safe_load_all(fresh.read_text())), kept


def test_missing_storage_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from texinspect.config import SWEEP_STORAGE_ENV
    from texinspect.errors import ConfigError
    from texinspect.kubeflow.sweep_steps import sweep_call, worker_share

    monkeypatch.delenv(SWEEP_STORAGE_ENV, raising=False)
    with pytest.raises(ConfigError, match="texinspect-sweep-db"):
        sweep_call("rbae", "/tmp/x")
    assert worker_share(5, 2) == 3 and worker_share(2, 2) == 1


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_runs_locally_with_two_parallel_trials(write_params, sample_root: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    space = {"rbae": {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True}}}
    params_file = write_params(space=space, config={"tracking": {"enabled": True}})
    tiny = {
        "train.max_steps_phase1": 2,
        "train.max_steps_phase2": 2,
        "train.batch_size": 2,
        "train.checkpoint_every": 2,
        "synthesis.count": 2,
        "eval.overlays": 1,
    }
    params = {"model": "rbae", "trials": 2, "profile": "smoke", "params_file": str(params_file)}
    run = _module().run_local_sweep(sample_root, tmp_path / "out", params=params, overrides=tiny, workers=2)

    # both workers ran one trial each against the same storage
    db = tmp_path / "out" / "optuna.db"
    with sqlite3.connect(db) as con:
        states = [row[0] for row in con.execute("select state from trials order by number")]
    assert states == ["COMPLETE", "COMPLETE"]
    worker_dirs = [p for key, p in run.artifacts.items() if key.startswith("sweep-worker") and key.endswith("trial_runs")]
    assert len(worker_dirs) == 2
    assert sorted(len(list((p / "trials").iterdir())) for p in worker_dirs) == [1, 1]
    # one MLflow parent run for the study, each worker's trial a child run of it
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("texinspect").experiment_id])
    parents = [r for r in runs if r.data.tags.get("texinspect.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("texinspect.kind") == "sweep-trial"]
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert parents[0].info.status == "FINISHED" and "best_value" in parents[0].data.metrics
    # the best params became the retraining config, and the retrained model was evaluated
    best_config = run.artifact("sweep-best", "config")
    summary = json.loads((run.artifact("sweep-best", "report") / "sweep_summary.json").read_text())
    assert load_config(best_config).train.lr == summary["best"]["overrides"]["train.lr"]
    model = run.artifact("train-phase2", "model")
    assert yaml.safe_load((model / "model.yaml").read_text())["config"]["train"]["lr"] == summary["best"]["overrides"]["train.lr"]
    metrics = json.loads((run.artifact("evaluate-model", "evaluation") / "metrics.json").read_text())
    assert 0.0 <= metrics["image_auroc"] <= 1.0
