"""One trial: sample overrides, train in the trial's folder, score on the fixed validation set.

Pruning: the trainers call ``on_log(phase, step, row)`` for every logged loss row (the same
callback ``training.loop.run_phase`` takes). The trial reports ``-row[pruner.key]`` (a loss,
negated because the study maximises) at a global step that runs on across the phases, and raises
``optuna.TrialPruned`` when the pruner says so. A family whose ``train`` takes no ``on_log``
still runs; its trials are just never pruned (a warning says so).

Failures: any exception (a NaN loss is ``FloatingPointError`` from the training loop, a bad
sampled value is ``ConfigError``) marks the trial FAIL with the error kept as a user attribute,
and the study goes on. Ctrl-C marks it FAIL + ``interrupted`` and stops the study; the next
start re-queues it (see study.py).
"""

from __future__ import annotations

import inspect
import logging
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna

from texinspect.config import Config
from texinspect.devices import resolve_device
from texinspect.models import family_module
from texinspect.models.artifact import load_detector
from texinspect.training.validation import ValidationSet, evaluate_detector
from texinspect.tuning.mlflow_runs import SweepTracker
from texinspect.tuning.settings import SweepSettings
from texinspect.tuning.space import SearchSpace
from texinspect.tuning.study import INTERRUPTED, RUN_DIR, resume_of, worker_attrs

log = logging.getLogger(__name__)

TRIALS_DIR = "trials"
OVERRIDES = "overrides"
ERROR = "error"
OnLog = Callable[[str, int, dict[str, float]], None]


def accepts_on_log(train: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(train).parameters
    except (TypeError, ValueError):
        return False
    return "on_log" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def train_family(module: ModuleType, config: Config, run_dir: Path, on_log: OnLog | None) -> Path:
    """``module.train(config, run_dir, resume=True, on_log=...)``, without on_log if not supported."""
    if on_log is not None and accepts_on_log(module.train):
        return Path(module.train(config, run_dir, resume=True, on_log=on_log))
    return Path(module.train(config, run_dir, resume=True))


class PruningReporter:
    """The ``on_log`` callback of one trial: intermediate values, MLflow steps, the prune check."""

    def __init__(self, trial: optuna.Trial, key: str, tracker: SweepTracker, run_id: str | None) -> None:
        self.trial, self.key, self.tracker, self.run_id = trial, key, tracker, run_id
        self.phase: str | None = None
        self.offset = 0  # steps of the phases before the current one
        self.last = 0
        self.reported = 0
        self._warned = False

    def __call__(self, phase: str, step: int, row: dict[str, float]) -> None:
        if phase != self.phase:
            if self.phase is not None:
                self.offset += self.last
            self.phase, self.last = phase, 0
        self.last = step
        global_step = self.offset + step
        for name, value in row.items():
            if name != "step":
                self.tracker.log_metric(self.run_id, f"{phase}.{name}", float(value), global_step)
        if self.key not in row:
            if not self._warned:
                log.warning("trial %d: logged rows have no '%s' (have %s): not pruned", self.trial.number, self.key, sorted(row))
                self._warned = True
            return
        value = float(row[self.key])
        if not math.isfinite(value):
            return  # the training loop raises FloatingPointError for this row itself
        self.trial.report(-value, global_step)
        self.reported += 1
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"{phase} step {step}: {self.key}={value:.4g} is worse than the median of earlier trials")


class Objective:
    """Callable for ``study.optimize``; holds what every trial shares (base config, space, yardstick)."""

    def __init__(
        self,
        base: Config,
        space: SearchSpace,
        settings: SweepSettings,
        vset: ValidationSet,
        out_dir: str | Path,
        tracker: SweepTracker,
    ) -> None:
        self.base, self.space, self.settings, self.vset = base, space, settings, vset
        self.out_dir = Path(out_dir)
        self.tracker = tracker
        self.module = family_module(base.model)
        self.prunable = accepts_on_log(self.module.train)
        if settings.pruner.kind != "none" and not self.prunable:
            log.warning("%s.train() takes no on_log callback: trials run to the end (no pruning)", base.model)

    def run_dir(self, trial: optuna.Trial) -> Path:
        if RUN_DIR in trial.user_attrs and self._resume_of(trial) is not None:
            return Path(trial.user_attrs[RUN_DIR])
        return self.out_dir / TRIALS_DIR / f"{trial.number:04d}"

    @staticmethod
    def _resume_of(trial: optuna.Trial) -> int | None:
        return resume_of(trial.storage.get_trial(trial._trial_id))  # system attrs: the retry history

    def __call__(self, trial: optuna.Trial) -> float:
        for key, value in worker_attrs().items():
            trial.set_user_attr(key, value)
        if trial.user_attrs.get(INTERRUPTED):  # copied from the trial this retry continues
            trial.set_user_attr(INTERRUPTED, False)
        overrides = self.space.suggest(trial)
        trial.set_user_attr(OVERRIDES, overrides)
        run_dir = self.run_dir(trial)
        previous = self._resume_of(trial)
        resumed = previous is not None and run_dir.is_dir()
        if run_dir.exists() and not resumed:
            shutil.rmtree(run_dir)  # a leftover of an older study in the same folder: never resume it
        trial.set_user_attr(RUN_DIR, str(run_dir))
        log.info("trial %d%s: %s", trial.number, f" (continues trial {previous})" if resumed else "", overrides)
        run_id = self.tracker.start_trial(trial.study, trial.number, overrides)
        reporter = PruningReporter(trial, self.settings.pruner.key, self.tracker, run_id)
        try:
            # The trial's MLflow record is the sweep's child run: trainers must not open their own.
            config = self.base.with_overrides({**overrides, "tracking.enabled": False})
            model_dir = train_family(self.module, config, run_dir, reporter if self.prunable else None)
            device = resolve_device(self.base.device)
            detector, card = load_detector(model_dir, device)
            metrics = evaluate_detector(detector, card, self.vset, device, fpr_limit=self.base.eval.aupro_fpr_limit)
        except optuna.TrialPruned as exc:
            self.tracker.finish_trial(run_id, "PRUNED", note=str(exc))
            self._cleanup(run_dir)
            raise
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr(ERROR, message[:2000])
            self.tracker.finish_trial(run_id, "FAIL", note=message)
            log.warning("trial %d failed: %s", trial.number, message)
            raise
        except BaseException:  # Ctrl-C / SystemExit: re-queued when the sweep starts again
            trial.set_user_attr(INTERRUPTED, True)
            self.tracker.finish_trial(run_id, "FAIL", note="interrupted")
            raise
        for key, value in metrics.items():
            trial.set_user_attr(key, value)
        self.tracker.finish_trial(run_id, "COMPLETE", metrics)
        self._cleanup(run_dir)
        return float(metrics[self.settings.metric])

    def _cleanup(self, run_dir: Path) -> None:
        if not self.settings.keep_checkpoints:
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
