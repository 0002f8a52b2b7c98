"""The Optuna study on disk: storage, resume after a kill, and how many trials are left.

Storage is SQLite in the sweep folder by default, or any SQLAlchemy URL (a database shared by
parallel pipeline workers). A trial whose process died is found two ways and re-queued with the
same parameters and the same run folder, so its training resumes from its checkpoints:

- a trial still RUNNING whose recorded worker (host name + process id) is this machine and that
  process is gone: failed at start-up, at once (a local ``kill -9``, a closed terminal);
- a trial whose heartbeat stopped (any worker, any machine): failed by Optuna after the grace
  period, when some worker starts its next trial.

A trial interrupted with Ctrl-C is marked failed by Optuna and flagged ``interrupted``; it is
re-queued the same way when the sweep is started again. A trial that raised (including a NaN
loss) stays failed and counts as one of the study's trials.

Re-queueing is Optuna's own ``RetryHeartbeatStaleTrialCallback``: a WAITING copy of the trial with
its parameters and user attributes (the run folder among them), and the numbers it continues in
its ``retry_history`` system attribute. The start-up check calls the same callback.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from texinspect.errors import ConfigError
from texinspect.tuning.settings import SweepSettings

log = logging.getLogger(__name__)

RUN_DIR = "run_dir"
HOST, PID = "host", "pid"
INTERRUPTED = "interrupted"
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING)


@dataclass(frozen=True)
class StudyRef:
    """Which study, where: enough for any worker to open it."""

    name: str
    storage_url: str

    @property
    def display_url(self) -> str:
        """The URL with any password hidden (for logs, MLflow and summaries)."""
        try:
            from sqlalchemy.engine import make_url

            return make_url(self.storage_url).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - only for display
            return self.storage_url.split("@")[-1]


def default_storage(out_dir: str | Path) -> str:
    return f"sqlite:///{(Path(out_dir) / 'optuna.db').resolve()}"


def study_ref(settings: SweepSettings, model: str, out_dir: str | Path) -> StudyRef:
    return StudyRef(settings.study_name or f"texinspect-{model}", settings.storage or default_storage(out_dir))


def retry_callback() -> optuna.storages.RetryHeartbeatStaleTrialCallback:
    """Optuna's re-queue of a dead trial (unbounded retries: a retry resumes from checkpoints)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback()


def retry_history(trial: FrozenTrial) -> list[int]:
    """The trials ``trial`` continues, oldest first (empty: not a retry)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return list(optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(trial))


def resume_of(trial: FrozenTrial) -> int | None:
    """The dead trial ``trial`` directly continues, or None."""
    history = retry_history(trial)
    return history[-1] if history else None


def make_storage(ref: StudyRef, heartbeat_seconds: int = 0) -> optuna.storages.RDBStorage:
    """RDB storage with heartbeats (dead workers' trials are failed and re-queued)."""
    engine_kwargs: dict[str, Any] = {}
    if ref.storage_url.startswith("sqlite"):
        path = ref.storage_url.split("sqlite:///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 120}}  # parallel local workers wait for the lock
    kwargs: dict[str, Any] = {}
    if heartbeat_seconds > 0:
        kwargs = {
            "heartbeat_interval": heartbeat_seconds,
            "grace_period": 3 * heartbeat_seconds,
            "heartbeat_stale_trial_callback": retry_callback(),
        }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(ref.storage_url, engine_kwargs=engine_kwargs, **kwargs)
    except Exception as exc:  # SQLAlchemy raises many kinds for a bad URL or an unreachable server
        raise ConfigError(f"sweep.storage: cannot open '{ref.display_url}': {exc}") from exc


def open_study(
    ref: StudyRef,
    settings: SweepSettings,
    worker_id: int = 0,
) -> optuna.Study:
    """Create the study, or load it when it exists (a resume, or another worker's study)."""
    s = settings.sampler
    seed = s.seed + worker_id
    sampler: optuna.samplers.BaseSampler
    if s.kind == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.startup_trials)
    p = settings.pruner
    pruner: optuna.pruners.BasePruner
    if p.kind == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_steps)
    else:
        pruner = optuna.pruners.NopPruner()
    storage = make_storage(ref, settings.heartbeat_seconds)
    study = optuna.create_study(
        study_name=ref.name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ConfigError(f"study '{ref.name}' in {ref.display_url} minimises; texinspect sweeps maximise a metric")
    return study


def check_study_attrs(study: optuna.Study, expected: dict[str, Any]) -> None:
    """Record ``expected`` on a new study; on an existing one, refuse a different model/metric/space."""
    attrs = study.user_attrs
    for key, value in expected.items():
        if key not in attrs:
            study.set_user_attr(key, value)
        elif attrs[key] != value:
            raise ConfigError(
                f"study '{study.study_name}' was started with {key}={attrs[key]!r}, now {value!r}: "
                "resume with the same settings, or choose another sweep.study_name / --study-name"
            )


def superseded(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of dead trials that were re-queued (the re-queued trial stands for them)."""
    return {number for t in trials for number in retry_history(t)}


def counted_trials(study: optuna.Study) -> int:
    """Trials that count towards ``--trials``: finished, running or queued, not superseded."""
    trials = study.get_trials(deepcopy=False)
    gone = superseded(trials)
    return sum(1 for t in trials if t.state in COUNTED and t.number not in gone)


def trials_to_run(study: optuna.Study, target: int) -> bool:
    """True while the study has queued trials, or fewer than ``target`` counted trials."""
    trials = study.get_trials(deepcopy=False)
    gone = superseded(trials)
    waiting = any(t.state == TrialState.WAITING for t in trials)
    counted = sum(1 for t in trials if t.state in COUNTED and t.number not in gone)
    return waiting or counted < target


def worker_attrs() -> dict[str, Any]:
    return {HOST: socket.gethostname(), PID: os.getpid()}


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():  # a RUNNING trial of this very process at start-up: a reused pid
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def requeue_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue ``trial``'s parameters again, continuing in its run folder (Optuna's retry callback)."""
    if trial.number in superseded(study.get_trials(deepcopy=False)):
        return
    retry_callback()(study, trial)
    log.info("trial %d did not finish (worker gone or interrupted): queued again with its parameters", trial.number)


def recover_dead_trials(study: optuna.Study) -> list[int]:
    """Fail RUNNING trials whose local process is gone and re-queue those and interrupted ones.

    Returns the numbers of the re-queued trials' originals.
    """
    host = socket.gethostname()
    requeued = []
    for t in study.get_trials(deepcopy=False):
        dead_local = (
            t.state == TrialState.RUNNING
            and t.user_attrs.get(HOST) == host
            and PID in t.user_attrs
            and not _process_alive(int(t.user_attrs[PID]))
        )
        if dead_local:
            try:
                study.tell(t.number, state=TrialState.FAIL)
            except (RuntimeError, ValueError) as exc:  # finished meanwhile by someone else
                log.debug("trial %d: %s", t.number, exc)
                continue
        if dead_local or (t.state == TrialState.FAIL and t.user_attrs.get(INTERRUPTED)):
            if t.number not in superseded(study.get_trials(deepcopy=False)):
                requeue_trial(study, t)
                requeued.append(t.number)
    return requeued
