"""Which cluster objects each pipeline task reads as environment variables, and nothing more.

Credentials never travel as pipeline parameters: KFP stores every parameter in its run records
and shows them in the UI. They come from Kubernetes Secrets through ``kfp.kubernetes``
(``use_secret_as_env``), and each task gets only the ones its code uses:

- every task that talks to MLflow (both training phases, registration, the sweep) gets
  ``MLFLOW_TRACKING_URI`` from the ConfigMap; the MLflow server proxies artifacts
  (``--serve-artifacts``), so none of them needs S3 keys;
- the sweep's tasks get the Optuna database URL (password included) from its own Secret;
- the dataset reaches the tasks through KFP's launcher, which reads S3 settings from the
  ``kfp-launcher`` ConfigMap (``k8s/base/kfp-launcher.yaml``), not from the task.

Kept in one table (:data:`TASK_ENV`) so that a test can compare what the compiled YAML gives each
task with what the task needs, and a new stage has to say what it reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from texinspect.config import SWEEP_STORAGE_ENV
from texinspect.kubeflow.settings import ClusterSettings

# ConfigMap key -> environment variable, for tasks that log to or read from MLflow.
MLFLOW_CONFIG_ENV: dict[str, str] = {"MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI"}
# Secret key -> environment variable: the Optuna storage URL the sweep's workers share.
SWEEP_DB_SECRET_ENV: dict[str, str] = {SWEEP_STORAGE_ENV: SWEEP_STORAGE_ENV}


@dataclass(frozen=True)
class TaskEnv:
    """What one task reads from the cluster: the MLflow ConfigMap keys, and named Secrets."""

    mlflow: bool = False
    sweep_db: bool = False


# Stage name -> what it reads. A stage not listed reads nothing (and a test fails for a new stage).
TASK_ENV: dict[str, TaskEnv] = {
    "dataset-fingerprint": TaskEnv(),
    "resolve-config": TaskEnv(),
    "synthesize-defects": TaskEnv(),
    "train-phase1": TaskEnv(mlflow=True),
    "build-memory-bank": TaskEnv(),
    "train-phase2": TaskEnv(mlflow=True),  # `texinspect train` logs the run (rank 0)
    "evaluate-model": TaskEnv(),
    "register-model": TaskEnv(mlflow=True),
    "deploy-model": TaskEnv(),  # writes the model store and the InferenceService: RBAC, not keys
    "sweep-setup": TaskEnv(mlflow=True, sweep_db=True),
    "sweep-worker": TaskEnv(mlflow=True, sweep_db=True),
    "sweep-best": TaskEnv(mlflow=True, sweep_db=True),
}


def secrets_for(stage: str, settings: ClusterSettings) -> dict[str, dict[str, str]]:
    """Secret name -> {key: env var} that ``stage`` gets (empty for most stages)."""
    needs = task_env(stage)
    return {settings.sweep_db_secret: dict(SWEEP_DB_SECRET_ENV)} if needs.sweep_db else {}


def config_maps_for(stage: str, settings: ClusterSettings) -> dict[str, dict[str, str]]:
    """ConfigMap name -> {key: env var} that ``stage`` gets."""
    return {settings.config_map: dict(MLFLOW_CONFIG_ENV)} if task_env(stage).mlflow else {}


def task_env(stage: str) -> TaskEnv:
    try:
        return TASK_ENV[stage]
    except KeyError:
        raise KeyError(
            f"pipeline stage {stage!r} is not in texinspect.kubeflow.credentials.TASK_ENV: "
            "say which ConfigMaps and Secrets it reads"
        ) from None


def apply_env(task: object, stage: str, settings: ClusterSettings) -> None:
    """Give ``task`` (a ``kfp.dsl.PipelineTask``) exactly the env its stage reads."""
    from kfp import kubernetes

    for name, mapping in config_maps_for(stage, settings).items():
        kubernetes.use_config_map_as_env(task, name, mapping)
    for name, mapping in secrets_for(stage, settings).items():
        kubernetes.use_secret_as_env(task, name, mapping)
