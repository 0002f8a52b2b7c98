"""``run_sweep``: the study from start (or resume) to the report, for the CLI and the pipeline.

One process is one worker. Alone it runs the study until ``trials`` trials count (a resumed
study runs only the missing ones). As one of several pipeline workers sharing a database it runs
at most ``worker_trials`` of them and stops early when the study is full.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from texinspect.config import SWEEP_STORAGE_ENV, Config, load_config
from texinspect.errors import ConfigError
from texinspect.training.validation import ValidationSet, build_synthetic_validation, labelled_validation
from texinspect.tuning.mlflow_runs import SweepTracker
from texinspect.tuning.objective import Objective
from texinspect.tuning.report import SUMMARY, best_trial, write_best_params, write_report
from texinspect.tuning.settings import SweepSettings, load_sweep_settings
from texinspect.tuning.space import SearchSpace, parse_space
from texinspect.tuning.study import (
    StudyRef,
    check_study_attrs,
    counted_trials,
    open_study,
    recover_dead_trials,
    study_ref,
    trials_to_run,
)

log = logging.getLogger(__name__)


@dataclass
class SweepPlan:
    """Everything resolved before the first trial: config, space, settings, where the study is."""

    base: Config
    settings: SweepSettings
    space: SearchSpace
    ref: StudyRef
    out_dir: Path
    trials: int

    def study_attrs(self) -> dict[str, Any]:
        v = self.settings.validation
        validation = f"labelled folder {v.folder}" if v.folder else f"synthetic: {v.images} images, seed {v.seed}"
        return {"model": self.base.model, "metric": self.settings.metric, "space": self.space.signature(), "validation": validation}


@dataclass
class SweepResult:
    study: str
    storage: str
    out_dir: Path
    ran: int  # trials this process ran
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def best_params(self) -> Path | None:
        path = (self.summary.get("files") or {}).get("best_params")
        return Path(path) if path else None


def plan_sweep(
    config_path: str | Path,
    model: str,
    out_dir: str | Path,
    trials: int | None = None,
    profile: str | None = None,
    overrides: Sequence[str] | dict[str, Any] = (),
    storage: str | None = None,
    study_name: str | None = None,
) -> SweepPlan:
    """Read params.yaml (config + ``sweep:``), apply CLI choices and check the space up front."""
    settings = load_sweep_settings(config_path)
    storage = storage or os.environ.get(SWEEP_STORAGE_ENV)  # a Secret on a cluster: never a parameter
    if storage:
        settings.storage = storage
    if study_name:
        settings.study_name = study_name
    n = settings.trials if trials is None else trials
    if n < 0:
        raise ConfigError(f"--trials: expected >= 0, got {n}")
    extra = dict(overrides) if isinstance(overrides, dict) else list(overrides)
    if isinstance(extra, dict):
        extra["model"] = model
    else:
        extra.append(f"model={model}")
    base = load_config(config_path, extra, profile)
    if settings.validation.seed == base.seed:
        raise ConfigError(
            f"sweep.validation.seed ({settings.validation.seed}) equals the training seed: choose a distinct one"
        )
    space = parse_space(settings.space, model, base)
    out = Path(out_dir)
    return SweepPlan(base, settings, space, study_ref(settings, model, out), out, n)


def validation_set(plan: SweepPlan) -> ValidationSet:
    v = plan.settings.validation
    if v.folder:
        return labelled_validation(v.folder, plan.base)
    return build_synthetic_validation(plan.base, v.images, v.seed)


def run_sweep(
    plan: SweepPlan,
    worker_id: int = 0,
    worker_trials: int | None = None,
    recover: bool = True,
    plots: bool = True,
) -> SweepResult:
    """Run (or resume) the study of ``plan``; writes the report into ``plan.out_dir``.

    ``recover``: re-queue dead / interrupted trials first (a single worker, or worker 0).
    ``plan.trials == 0`` only creates the study and its MLflow parent run (pipeline set-up).
    """
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = open_study(plan.ref, plan.settings, worker_id)
    check_study_attrs(study, plan.study_attrs())
    tracker = SweepTracker(plan.base.tracking)
    tracker.start_parent(
        study,
        {"study": plan.ref.name, "storage": plan.ref.display_url, "trials": plan.trials, **plan.study_attrs()},
    )
    if recover:
        recover_dead_trials(study)
    ran = 0
    budget = worker_trials if worker_trials is not None else plan.trials
    if plan.trials > 0 and budget > 0 and trials_to_run(study, plan.trials):
        vset = validation_set(plan)
        objective = Objective(plan.base, plan.space, plan.settings, vset, plan.out_dir, tracker)
        log.info("study %s (%s): %d of %d trials exist", plan.ref.name, plan.ref.display_url, counted_trials(study), plan.trials)
        while ran < budget and trials_to_run(study, plan.trials):
            study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
            ran += 1
            write_best_params(study, plan.base, plan.out_dir)  # current after every trial: a kill loses nothing
    summary = write_report(study, plan.base, plan.out_dir, plan.ref.display_url, plots=plots)
    best = best_trial(study)
    tracker.finish_parent(
        {"best_value": best.value} if best is not None else {},
        [plan.out_dir / SUMMARY, plan.out_dir / "best_params.yaml", plan.out_dir / "trials.csv", *map(Path, summary["files"]["plots"])],
        terminate=counted_trials(study) >= plan.trials and plan.trials > 0,
    )
    return SweepResult(plan.ref.name, plan.ref.display_url, plan.out_dir, ran, summary)
