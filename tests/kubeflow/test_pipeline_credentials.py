"""Issue 19, problems 5 and 7: credentials only through Kubernetes Secrets, each task only the
ones it uses; ``MLFLOW_TRACKING_URI`` from the ConfigMap in every training task.

Reads the compiled YAML (what a cluster runs), not the Python that builds it.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from texinspect.config import SWEEP_STORAGE_ENV
from texinspect.errors import ConfigError
from texinspect.kubeflow.build import PIPELINE_FILE, compile_pipeline
from texinspect.kubeflow.components import STAGES
from texinspect.kubeflow.credentials import TASK_ENV, task_env
from texinspect.kubeflow.settings import ClusterSettings

REPO = Path(__file__).resolve().parents[2]
SECRET_WORDS = ("password", "secret", "storage", "token", "access_key", "credential", "db_url")


def _sweep_module() -> ModuleType:
    from texinspect.kubeflow import sweep_pipeline

    return sweep_pipeline


def _load(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    spec, platform = list(yaml.safe_load_all(path.read_text()))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    return _load(compile_pipeline(tmp_path_factory.mktemp("p") / PIPELINE_FILE))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    m = _sweep_module()
    return _load(m.compile_sweep_pipeline(tmp_path_factory.mktemp("s") / "sweep.yaml"))


def _secrets(executor: dict[str, Any]) -> dict[str, set[str]]:
    return {
        s["secretName"]: {m["envVar"] for m in s["keyToEnv"]} for s in executor.get("secretAsEnv", [])
    }


def _config_env(executor: dict[str, Any]) -> set[str]:
    return {m["envVar"] for c in executor.get("configMapAsEnv", []) for m in c["keyToEnv"]}


@pytest.mark.parametrize("which", ["training", "sweep"])
def test_no_pipeline_parameter_carries_a_credential(which: str, request: pytest.FixtureRequest) -> None:
    spec, _ = request.getfixturevalue(which)
    params = spec["root"]["inputDefinitions"]["parameters"]
    leaks = [p for p in params if any(word in p.lower() for word in SECRET_WORDS)]
    assert not leaks, f"{which} pipeline parameters that look like credentials: {leaks}"


def test_sweep_tasks_read_the_database_url_from_a_secret(sweep: tuple[dict, dict]) -> None:
    _, k8s = sweep
    settings = ClusterSettings()
    for stage in ("sweep-setup", "sweep-worker", "sweep-best"):
        assert _secrets(k8s[f"exec-{stage}"]) == {settings.sweep_db_secret: {SWEEP_STORAGE_ENV}}, stage
        assert "MLFLOW_TRACKING_URI" in _config_env(k8s[f"exec-{stage}"]), stage


def test_each_task_gets_only_the_secrets_its_stage_reads(
    training: tuple[dict, dict], sweep: tuple[dict, dict]
) -> None:
    settings = ClusterSettings()
    for _, k8s in (training, sweep):
        for name, executor in k8s.items():
            stage = name.removeprefix("exec-")
            if stage not in TASK_ENV:  # the importer: KFP's launcher, no task code
                continue
            wanted = {settings.sweep_db_secret: {SWEEP_STORAGE_ENV}} if task_env(stage).sweep_db else {}
            assert _secrets(executor) == wanted, stage
            # S3 keys: the MLflow server proxies artifacts, the launcher fetches the dataset
            assert not any("AWS_" in env for envs in _secrets(executor).values() for env in envs), stage


def test_register_step_gets_no_s3_keys(training: tuple[dict, dict]) -> None:
    _, k8s = training
    assert "secretAsEnv" not in k8s["exec-register-model"]
    assert _config_env(k8s["exec-register-model"]) == {"MLFLOW_TRACKING_URI"}


def test_every_training_task_gets_the_tracking_uri_from_the_configmap(
    training: tuple[dict, dict], sweep: tuple[dict, dict]
) -> None:
    for _, k8s in (training, sweep):
        for stage in ("train-phase1", "train-phase2"):
            (entry,) = k8s[f"exec-{stage}"]["configMapAsEnv"]
            assert entry["configMapName"] == ClusterSettings().config_map
            assert {"configMapKey": "MLFLOW_TRACKING_URI", "envVar": "MLFLOW_TRACKING_URI"} in entry["keyToEnv"]


def test_every_stage_says_what_it_reads() -> None:
    assert set(STAGES) <= set(TASK_ENV)
    assert set(_sweep_module().SWEEP_STAGES) <= set(TASK_ENV)
    with pytest.raises(KeyError, match="TASK_ENV"):
        task_env("new-stage")


def test_sweep_steps_take_the_storage_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from texinspect.kubeflow.sweep_steps import sweep_call

    monkeypatch.delenv(SWEEP_STORAGE_ENV, raising=False)
    with pytest.raises(ConfigError, match=SWEEP_STORAGE_ENV):
        sweep_call("rbae", "/tmp/x", params_file=str(REPO / "params.yaml"))
    url = "postgresql://optuna:hunter2@db/optuna"
    monkeypatch.setenv(SWEEP_STORAGE_ENV, url)
    call = sweep_call("rbae", "/tmp/x", params_file=str(REPO / "params.yaml"))
    assert "hunter2" not in repr(call), "the sweep's options are logged: the URL stays in the env"


def test_plan_sweep_reads_the_storage_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from texinspect.tuning import plan_sweep

    monkeypatch.setenv(SWEEP_STORAGE_ENV, f"sqlite:///{tmp_path / 'shared.db'}")
    plan = plan_sweep(REPO / "params.yaml", "rbae", tmp_path / "out", trials=0)
    assert plan.ref.storage_url == f"sqlite:///{tmp_path / 'shared.db'}"
