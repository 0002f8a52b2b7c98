"""``texinspect pipeline run --local``: the Kubeflow pipeline, every stage, on this machine.

``kfp.local.SubprocessRunner`` runs each component in a subprocess of this Python (the
environment plays the role of the project image), passes artifacts as folders under
``OUT/kfp`` and evaluates the ``dsl.If`` gate, exactly as the cluster would. Kubernetes settings
(GPUs, secrets, the model PVC) are ignored; the model store is ``OUT/model-store``, MLflow is a
SQLite file in OUT unless ``MLFLOW_TRACKING_URI`` is set, and the InferenceService is rendered and
validated but not applied.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from texinspect.errors import DataError
from texinspect.kubeflow.steps import StepError
from texinspect.kubeflow.training_pipeline import PIPELINE_NAME, build_pipeline

log = logging.getLogger(__name__)


@dataclass
class LocalRun:
    """Where a local run left its artifacts, and what it decided."""

    root: Path  # OUT/kfp/<pipeline>-<timestamp>
    artifacts: dict[str, Path] = field(default_factory=dict)  # "<task>/<output>" -> path
    metrics: dict[str, Any] = field(default_factory=dict)
    registration: dict[str, Any] = field(default_factory=dict)
    deployed: bool = False

    def artifact(self, task: str, output: str) -> Path:
        key = f"{task}/{output}"
        if key not in self.artifacts:
            raise KeyError(f"no artifact {key} in {self.root} (have: {', '.join(sorted(self.artifacts))})")
        return self.artifacts[key]


def local_arguments(
    data: str | Path,
    out: str | Path,
    params: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Pipeline arguments for a local run: paths made absolute, MLflow and model store inside OUT."""
    out = Path(out).resolve()
    merged = dict(overrides or {})
    merged.setdefault("tracking.tracking_uri", f"sqlite:///{out / 'mlflow.db'}")
    merged.setdefault("tracking.artifact_location", str(out / "mlartifacts"))
    args: dict[str, Any] = dict(params or {})
    if args.get("params_file"):
        args["params_file"] = str(Path(args["params_file"]).resolve())
    args.update(
        data_uri=str(Path(data).resolve()),
        overrides=json.dumps(merged),
        model_store=str(out / "model-store"),
        apply_deployment=False,
    )
    return args


def run_local(
    data: str | Path,
    out: str | Path,
    params: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
) -> LocalRun:
    """Run the whole pipeline with ``kfp.local``; raises if any task fails."""
    data, out = Path(data), Path(out).resolve()
    if not data.is_dir():
        raise DataError(f"dataset folder not found: {data}")
    out.mkdir(parents=True, exist_ok=True)
    arguments = local_arguments(data, out, params, overrides)
    log.info("local pipeline run: %s", arguments)
    return run_with_kfp_local(build_pipeline(), arguments, out, PIPELINE_NAME)


def run_with_kfp_local(pipeline: Callable[..., Any], arguments: dict[str, Any], out: Path, name: str) -> LocalRun:
    """One run of a compiled-in-memory pipeline with ``kfp.local`` under ``out/kfp``, every task a
    subprocess of this environment; the run folder it wrote, collected. A failed task is a
    :class:`StepError` that points at the artifacts so far."""
    from kfp import local

    pipeline_root = out / "kfp"
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        workspace_root=str(out / "kfp-workspace"),
        raise_on_error=True,
    )
    before = set(pipeline_root.glob(f"{name}-*")) if pipeline_root.is_dir() else set()
    with warnings.catch_warnings():  # "non-Python base image": the image is this environment here
        warnings.filterwarnings("ignore", message=".*base image.*", category=RuntimeWarning)
        warnings.filterwarnings(
            "ignore", message=".*no effect in the current local runner.*", category=UserWarning
        )
        try:
            pipeline(**arguments)
        except RuntimeError as exc:  # kfp.local: "Pipeline ... finished with status FAILURE"
            plain = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # kfp colours its messages
            raise StepError(f"{plain} (the task's log is above; artifacts so far: {pipeline_root})") from exc
    runs = sorted(set(pipeline_root.glob(f"{name}-*")) - before)
    if not runs:
        raise DataError(f"the local run wrote nothing under {pipeline_root}")
    return collect(runs[-1])


def latest_run(out: str | Path) -> LocalRun:
    """The newest run a ``pipeline run --local --out OUT`` left under ``OUT/kfp``, indexed.

    For callers that ran the pipeline in another process (``make demo``) and read its outputs.
    """
    pipeline_root = Path(out) / "kfp"
    runs = sorted(pipeline_root.glob(f"{PIPELINE_NAME}-*")) if pipeline_root.is_dir() else []
    if not runs:
        raise DataError(f"no local pipeline run under {pipeline_root}")
    return collect(runs[-1])


def _index_outputs(result: LocalRun, task_dir: Path, task: str) -> None:
    for output in sorted(task_dir.iterdir()):
        if output.name != "executor_output.json":
            result.artifacts[f"{task}/{output.name}"] = output


def collect(root: Path) -> LocalRun:
    """Index a local run folder: ``<task>/<output>`` artifact paths, metrics, registration."""
    result = LocalRun(root=root)
    for task_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        loop = re.fullmatch(r"for-loop-\d+-iteration-(\d+)", task_dir.name)
        if loop:  # tasks inside dsl.ParallelFor: "<task>-<iteration>/<output>"
            for inner in sorted(p for p in task_dir.iterdir() if p.is_dir()):
                _index_outputs(result, inner, f"{inner.name}-{loop.group(1)}")
        else:
            _index_outputs(result, task_dir, task_dir.name)
    evaluation = result.artifacts.get("evaluate-model/evaluation")
    if evaluation and (evaluation / "metrics.json").is_file():
        result.metrics = json.loads((evaluation / "metrics.json").read_text())
    registration = result.artifacts.get("register-model/registration")
    if registration and (registration / "registration.json").is_file():
        result.registration = json.loads((registration / "registration.json").read_text())
    result.deployed = "deploy-model/manifest" in result.artifacts
    return result


def summary(run: LocalRun) -> str:
    """What a person wants to see after a run: where things are and what was decided."""
    lines = [f"local pipeline run: {run.root}"]
    config = run.artifacts.get("resolve-config/config")
    if config and config.is_file():
        family = (yaml.safe_load(config.read_text()) or {}).get("model")
        lines.append(f"  model family      {family}  (config: {config})")
    for key in ("train-phase2/model", "evaluate-model/evaluation", "synthesize-defects/synthetic"):
        if key in run.artifacts:
            lines.append(f"  {key:<30} {run.artifacts[key]}")
    for key in ("image_auroc", "pixel_auroc", "aupro", "f1"):
        if isinstance(run.metrics.get(key), (int, float)):
            lines.append(f"  {key:<17} {run.metrics[key]:.4f}")
    if run.registration:
        lines.append(f"  registration      {json.dumps(run.registration, default=str)}")
    lines.append(
        f"  deployment        {'rendered ' + str(run.artifacts['deploy-model/manifest']) if run.deployed else 'skipped (not promoted)'}"
    )
    return "\n".join(lines)
