"""What the sweep pipeline's components do: build ``texinspect sweep`` calls and move files.

Every component body is one call into this module, which runs the same ``texinspect sweep``
command a person would (through ``texinspect.pipeline.steps.run_cli``). Free of ``kfp`` imports.

Workers share one Optuna storage (a database every pod reaches). ``setup`` creates the study and
its MLflow parent run before the parallel workers start, so they never race to create them;
``worker`` runs its share of the trials; ``best`` writes the report and the best params file,
which is a resolved config the training components take as their ``config`` artifact.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from texinspect.errors import ConfigError
from texinspect.pipeline.settings import SWEEP_STORAGE_ENV
from texinspect.pipeline.steps import StepError, params_path, parse_overrides, run_cli


def sweep_argv(
    model: str,
    out: str | Path,
    study_name: str = "",
    profile: str = "",
    overrides: str = "",
    params_file: str = "",
    data: str = "",
) -> list[str]:
    """The common part of every ``texinspect sweep`` call of the pipeline.

    The storage URL is not on the command line (it would be logged with its password):
    ``texinspect sweep`` reads it from ``$TEXINSPECT_SWEEP_STORAGE``, checked here up front.
    """
    if not os.environ.get(SWEEP_STORAGE_ENV):
        raise ConfigError(
            f"${SWEEP_STORAGE_ENV} is not set: parallel sweep workers need one database they all reach, "
            "e.g. postgresql://user:pass@host/optuna. On a cluster it comes from the Secret "
            "texinspect-sweep-db (key TEXINSPECT_SWEEP_STORAGE, docs/kubeflow.md); on one machine "
            "export it (sqlite:////shared/path/optuna.db works)"
        )
    argv = ["sweep", "--model", model, "--out", str(out), "--config", str(params_path(params_file))]
    if study_name:
        argv += ["--study-name", study_name]
    if profile:
        argv += ["--profile", profile]
    if data:
        argv += ["--data", str(data)]
    for key, value in parse_overrides(overrides).items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    return argv


def setup(common: list[str], out: str | Path) -> None:
    """Create the study (and its MLflow parent run) without running a trial."""
    Path(out).mkdir(parents=True, exist_ok=True)
    run_cli([*common, "--trials", "0", "--no-plots"])


def worker_share(trials: int, workers: int) -> int:
    """Trials one of ``workers`` runs at most (the study stops all of them at ``trials``)."""
    if trials < 1 or workers < 1:
        raise ConfigError(f"sweep pipeline: trials and workers must be >= 1, got trials={trials}, workers={workers}")
    return math.ceil(trials / workers)


def worker(common: list[str], trials: int, workers: int, worker_id: int) -> None:
    run_cli(
        [
            *common,
            "--trials", str(trials),
            "--worker-id", str(int(worker_id)),
            "--worker-trials", str(worker_share(trials, workers)),
            "--no-plots",
        ]
    )


def best(common: list[str], out: str | Path, config_path: str | Path, trials: int) -> dict[str, Any]:
    """Report from the storage (ends the MLflow parent run once ``trials`` exist); the best params
    file becomes the ``config`` artifact."""
    run_cli([*common, "--trials", str(trials), "--report-only"])
    out = Path(out)
    summary = json.loads((out / "sweep_summary.json").read_text())
    if not summary.get("best"):
        raise StepError(f"sweep '{summary.get('study')}': no trial completed ({summary.get('states')}); nothing to retrain")
    Path(config_path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "best_params.yaml", config_path)
    return summary


def summary_markdown(summary: dict[str, Any]) -> str:
    """The sweep for the KFP UI: states, the best trial and its values."""
    best = summary.get("best") or {}
    lines = [
        f"# Sweep {summary.get('study')} ({summary.get('model')})",
        "",
        f"Objective: {summary.get('metric')} on {summary.get('validation')}.",
        "",
        "| state | trials |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted((summary.get("states") or {}).items())],
        "",
        f"Best trial {best.get('trial')}: {summary.get('metric')} = {best.get('value')}",
        "",
        "| key | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in (best.get("overrides") or {}).items()],
    ]
    return "\n".join(lines) + "\n"
