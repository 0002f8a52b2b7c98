"""The Kubeflow sweep pipeline: parallel Optuna workers on one shared storage, then retrain the best.

    dataset -> sweep-setup (study + MLflow parent run)
            -> ParallelFor(workers): sweep-worker (its share of the trials, same storage)
            -> sweep-best (report, plots, best params file = a resolved config)
            -> train-phase1 -> build-memory-bank -> train-phase2 -> evaluate-model   (the training
               pipeline's own components, fed the best config)

The number of parallel workers is a compile-time setting (``SweepClusterSettings.workers``);
the trials, the model family and the search space (params.yaml) are run-time parameters. The
storage URL is not a parameter (KFP keeps parameters in its run records, and the URL carries the
database password): every sweep task reads it from ``$TEXINSPECT_SWEEP_STORAGE``, which the
cluster fills from the ``texinspect-sweep-db`` Secret. On a cluster it must be a database every
pod reaches (e.g. PostgreSQL); on one machine a SQLite file works. ``texinspect pipeline compile``
writes it beside the training pipeline (``pipelines/{cpu,cuda}/texinspect-sweep.yaml``);
``texinspect pipeline run --sweep --local --data DIR`` runs every task here with kfp.local.
"""

# No ``from __future__ import annotations``: KFP reads the component and pipeline annotations.

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfp import compiler, dsl, kubernetes
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Output
from kfp.dsl.graph_component import GraphComponent

from texinspect.config import SWEEP_STORAGE_ENV
from texinspect.kubeflow.components import build_components
from texinspect.kubeflow.credentials import apply_env
from texinspect.kubeflow.local import LocalRun, run_with_kfp_local
from texinspect.kubeflow.settings import ClusterSettings
from texinspect.kubeflow.training_pipeline import configure_task, ranks_per_pod

PIPELINE_NAME = "texinspect-sweep"
PIPELINE_FILE = f"{PIPELINE_NAME}.yaml"  # in pipelines/<flavor>/, beside the training pipeline


# --------------------------------------------------------------------------- components


def sweep_setup(
    model: str,
    profile: str,
    overrides: str,
    params_file: str,
    study_name: str,
    study: Output[Artifact],
) -> str:
    """Create the Optuna study and its MLflow parent run before the workers start."""
    from texinspect.kubeflow import sweep_steps as ps

    common = ps.sweep_call(model, study.path, study_name, profile, overrides, params_file)
    ps.setup(common, study.path)
    return study_name or f"texinspect-{model}"


def sweep_worker(
    model: str,
    profile: str,
    overrides: str,
    params_file: str,
    study_name: str,
    data: Input[Dataset],
    trials: int,
    workers: int,
    worker_id: int,
    trial_runs: Output[Artifact],
):
    """One parallel worker: its share of the study's trials (each an MLflow child run)."""
    from texinspect.kubeflow import sweep_steps as ps

    common = ps.sweep_call(model, trial_runs.path, study_name, profile, overrides, params_file, data.path)
    ps.worker(common, trials, workers, worker_id)
    trial_runs.metadata["worker_id"] = worker_id


def sweep_best(
    model: str,
    profile: str,
    overrides: str,
    params_file: str,
    study_name: str,
    data: Input[Dataset],
    trials: int,
    trial_runs: Input[list[Artifact]],
    report: Output[Artifact],
    config: Output[Artifact],
    metrics: Output[Metrics],
    summary: Output[Markdown],
) -> float:
    """Report (trials.csv, plots, best params) from the storage; the best config for retraining."""
    from texinspect.kubeflow import sweep_steps as ps

    common = ps.sweep_call(model, report.path, study_name, profile, overrides, params_file, data.path)
    result = ps.best(common, report.path, config.path, trials)
    best = result["best"]
    metrics.log_metric("best_value", float(best["value"]))
    for key, value in (result.get("states") or {}).items():
        metrics.log_metric(f"trials_{key.lower()}", float(value))
    with open(summary.path, "w") as f:
        f.write(ps.summary_markdown(result))
    config.metadata.update({"best_trial": best["trial"], "workers": len(trial_runs)})
    return float(best["value"])


SWEEP_STAGES = {"sweep-setup": sweep_setup, "sweep-worker": sweep_worker, "sweep-best": sweep_best}
# (cpu request, memory request, cpu limit, memory limit); a worker trains, so it gets the GPU.
SWEEP_RESOURCES: dict[str, tuple] = {
    "sweep-setup": ("100m", "512Mi", "500m", "1Gi"),
    "sweep-worker": ("4", "16Gi", "8", "32Gi"),
    "sweep-best": ("500m", "2Gi", "2", "4Gi"),
}


@dataclass(frozen=True)
class SweepClusterSettings:
    """Compile-time settings: the training pipeline's cluster settings plus the worker count."""

    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    workers: int = 4  # parallel trial workers (ParallelFor); each runs ceil(trials / workers) trials


def build_sweep_components(image: str) -> dict[str, Any]:
    return {name: dsl.component(fn, base_image=image, install_kfp_package=False) for name, fn in SWEEP_STAGES.items()}


def _configure_sweep(task: dsl.PipelineTask, stage: str, settings: ClusterSettings) -> dsl.PipelineTask:
    """Kubernetes settings of a sweep task (ignored by kfp.local); MLflow and storage env on every one."""
    cpu_req, mem_req, cpu_lim, mem_lim = SWEEP_RESOURCES[stage]
    task.set_display_name(stage)
    task.set_cpu_request(cpu_req).set_memory_request(mem_req).set_cpu_limit(cpu_lim).set_memory_limit(mem_lim)
    if stage == "sweep-worker":
        if settings.gpus > 0:
            task.set_accelerator_type(settings.gpu_resource).set_accelerator_limit(settings.gpus)
            kubernetes.add_toleration(task, key=settings.gpu_resource, operator="Exists", effect="NoSchedule")
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit="2Gi")
    kubernetes.set_security_context(
        task, run_as_user=settings.run_as_user, run_as_group=settings.run_as_user, run_as_non_root=True
    )
    apply_env(task, stage, settings)  # MLflow URI (ConfigMap), Optuna storage URL (Secret)
    task.set_caching_options(False)  # trials depend on the shared storage, not only on the inputs
    return task


# --------------------------------------------------------------------------- pipeline


def build_sweep_pipeline(settings: SweepClusterSettings | None = None) -> GraphComponent:
    settings = settings or SweepClusterSettings()
    if settings.workers < 1:
        raise ValueError(f"workers must be >= 1, got {settings.workers}")
    cluster = settings.cluster
    world_size = ranks_per_pod(cluster)  # DDP ranks = GPUs per pod (compile-time)
    sweep = build_sweep_components(cluster.image)
    train = build_components(cluster.image)
    worker_ids = list(range(settings.workers))

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description=(
            f"texinspect: Optuna sweep with {settings.workers} parallel workers on one shared storage "
            "(search space: sweep.space in params.yaml; objective: synthetic defects on held-out normals), "
            "then retrain and evaluate the best configuration with the training pipeline's components."
        ),
    )
    def texinspect_sweep(
        data_uri: str,
        model: str = "rbae",
        trials: int = 20,
        study_name: str = "",
        profile: str = "",
        overrides: str = "",
        params_file: str = "",
    ) -> None:
        data = dsl.importer(artifact_uri=data_uri, artifact_class=dsl.Dataset, reimport=False)
        data.set_display_name("dataset")
        common = dict(model=model, profile=profile, overrides=overrides, params_file=params_file)

        setup = sweep["sweep-setup"](study_name=study_name, **common)
        _configure_sweep(setup, "sweep-setup", cluster)

        # Only pipeline parameters and the loop item go into the loop: kfp.local (2.17) replaces
        # any task-output parameter inside a ParallelFor with the loop item; .after() orders it.
        with dsl.ParallelFor(items=worker_ids, parallelism=settings.workers, name="workers") as worker_id:
            worker = sweep["sweep-worker"](
                study_name=study_name,
                data=data.output,
                trials=trials,
                workers=settings.workers,
                worker_id=worker_id,
                **common,
            )
            _configure_sweep(worker, "sweep-worker", cluster)
            worker.after(setup)

        best = sweep["sweep-best"](
            study_name=study_name,
            data=data.output,
            trials=trials,
            trial_runs=dsl.Collected(worker.outputs["trial_runs"]),
            **common,
        )
        _configure_sweep(best, "sweep-best", cluster)
        config = best.outputs["config"]

        phase1 = train["train-phase1"](config=config, data=data.output, world_size=world_size)
        configure_task(phase1, "train-phase1", cluster)
        bank = train["build-memory-bank"](config=config, data=data.output, checkpoints=phase1.outputs["checkpoints"])
        configure_task(bank, "build-memory-bank", cluster)
        phase2 = train["train-phase2"](config=config, data=data.output, bank=bank.outputs["bank"], world_size=world_size)
        configure_task(phase2, "train-phase2", cluster)
        evaluation = train["evaluate-model"](config=config, data=data.output, model=phase2.outputs["model"])
        configure_task(evaluation, "evaluate-model", cluster)

    return texinspect_sweep


def compile_sweep_pipeline(path: str | Path, settings: SweepClusterSettings | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_sweep_pipeline(settings), str(path))
    return path


# --------------------------------------------------------------------------- local run


def run_local_sweep(
    data: Path,
    out: Path,
    storage: str = "",
    params: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    workers: int = 2,
) -> LocalRun:
    """Every task on this machine with kfp.local; MLflow and the Optuna storage in ``out``."""
    data, out = Path(data).resolve(), Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    merged = dict(overrides or {})
    merged.setdefault("tracking.tracking_uri", f"sqlite:///{out / 'mlflow.db'}")
    merged.setdefault("tracking.artifact_location", str(out / "mlartifacts"))
    args: dict[str, Any] = dict(params or {})
    if args.get("params_file"):
        args["params_file"] = str(Path(args["params_file"]).resolve())
    args.update(data_uri=str(data), overrides=json.dumps(merged))
    pipeline = build_sweep_pipeline(SweepClusterSettings(workers=workers))
    # The task subprocesses inherit this environment: the storage URL reaches them as on a
    # cluster (an env var), never as a parameter.
    previous = os.environ.get(SWEEP_STORAGE_ENV)
    os.environ[SWEEP_STORAGE_ENV] = storage or f"sqlite:///{out / 'optuna.db'}"
    try:
        return run_with_kfp_local(pipeline, args, out, PIPELINE_NAME)
    finally:
        if previous is None:
            os.environ.pop(SWEEP_STORAGE_ENV, None)
        else:
            os.environ[SWEEP_STORAGE_ENV] = previous
