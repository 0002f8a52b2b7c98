"""What the sweep pipeline's components do: run the ``texinspect sweep`` stage and move files.

Every component body is one call into this module, which calls the library functions that
``texinspect sweep`` wraps (:func:`texinspect.tuning.plan_sweep`, :func:`texinspect.tuning.run_sweep`)
with the options a person would give it. Free of ``kfp`` imports.

Workers share one Optuna storage (a database every pod reaches). ``setup`` creates the study and
its MLflow parent run before the parallel workers start, so they never race to create them;
``worker`` runs its share of the trials; ``best`` writes the report and the best params file,
which is a resolved config the training components take as their ``config`` artifact.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from texinspect.config import SWEEP_STORAGE_ENV
from texinspect.errors import ConfigError
from texinspect.kubeflow.steps import StepError, params_path, parse_overrides, stage
from texinspect.tuning.runner import plan_sweep, run_sweep

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepCall:
    """The options every sweep step shares (``texinspect sweep --model --out --config ...``).

    The storage URL is not among them (it would be logged with its password): ``plan_sweep``
    reads it from ``$TEXINSPECT_SWEEP_STORAGE``.
    """

    model: str
    out: Path
    config: Path
    study_name: str | None = None
    profile: str | None = None
    overrides: tuple[str, ...] = ()  # KEY=VALUE, as ``--set`` takes them

    def run(self, trials: int, worker_id: int = 0, worker_trials: int | None = None, plots: bool = False):
        """Plan and run (or resume) the study: what ``texinspect sweep`` does with these options;
        ``worker_trials=0`` runs no trial and only writes the report. Returns the SweepResult."""

        log.info("sweep %s: %d trials, worker %d", self, trials, worker_id)
        with stage("sweep"):
            plan = plan_sweep(
                self.config,
                self.model,
                self.out,
                trials=trials,
                profile=self.profile,
                overrides=list(self.overrides),
                study_name=self.study_name,
            )
            recover = worker_id == 0 and worker_trials != 0  # not when only writing the report
            return run_sweep(plan, worker_id=worker_id, worker_trials=worker_trials, recover=recover, plots=plots)


def sweep_call(
    model: str,
    out: str | Path,
    study_name: str = "",
    profile: str = "",
    overrides: str = "",
    params_file: str = "",
    data: str = "",
) -> SweepCall:
    """The common part of every sweep step of the pipeline; the storage is checked up front."""
    if not os.environ.get(SWEEP_STORAGE_ENV):
        raise ConfigError(
            f"${SWEEP_STORAGE_ENV} is not set: parallel sweep workers need one database they all reach, "
            "e.g. postgresql://user:pass@host/optuna. On a cluster it comes from the Secret "
            "texinspect-sweep-db (key TEXINSPECT_SWEEP_STORAGE, docs/kubeflow.md); on one machine "
            "export it (sqlite:////shared/path/optuna.db works)"
        )
    sets = [f"{key}={json.dumps(value)}" for key, value in parse_overrides(overrides).items()]
    if data:
        sets.append(f"data.root={data}")
    return SweepCall(model, Path(out), params_path(params_file), study_name or None, profile or None, tuple(sets))


def setup(common: SweepCall, out: str | Path) -> None:
    """Create the study (and its MLflow parent run) without running a trial."""
    Path(out).mkdir(parents=True, exist_ok=True)
    common.run(trials=0)


def worker_share(trials: int, workers: int) -> int:
    """Trials one of ``workers`` runs at most (the study stops all of them at ``trials``)."""
    if trials < 1 or workers < 1:
        raise ConfigError(f"sweep pipeline: trials and workers must be >= 1, got trials={trials}, workers={workers}")
    return math.ceil(trials / workers)


def worker(common: SweepCall, trials: int, workers: int, worker_id: int) -> None:
    common.run(trials, worker_id=int(worker_id), worker_trials=worker_share(trials, workers))


def best(common: SweepCall, out: str | Path, config_path: str | Path, trials: int) -> dict[str, Any]:
    """Report from the storage (ends the MLflow parent run once ``trials`` exist); the best params
    file becomes the ``config`` artifact."""
    common.run(trials, worker_trials=0, plots=True)
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
