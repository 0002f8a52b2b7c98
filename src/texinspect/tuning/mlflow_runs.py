"""MLflow for sweeps: one parent run per study, one child run per trial.

The parent run's id is stored in the study (``mlflow_parent_run_id``), so a resumed study and
every parallel worker add their trials under the same parent. Child runs are created with the
``mlflow.parentRunId`` tag through ``MlflowClient`` (no active-run state, so workers in other
processes or pods do the same thing). Tracking is never allowed to fail a sweep: any MLflow error
is logged once as a warning and tracking is switched off for the rest of the process.
The backend (URI, artifact root, experiment) is resolved by ``texinspect.tracking.backend``, like
every other tracked run.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import optuna

from texinspect.config import TrackingConfig

log = logging.getLogger(__name__)

PARENT_ATTR = "mlflow_parent_run_id"
PARENT_TAG = "mlflow.parentRunId"


def _param_value(value: Any) -> str:
    return str(value)[:6000]


class SweepTracker:
    """Thin, failure-tolerant wrapper over ``MlflowClient`` for a study and its trials."""

    def __init__(self, tracking: TrackingConfig, enabled: bool | None = None) -> None:
        self.enabled = tracking.enabled if enabled is None else enabled
        self.tracking = tracking
        self.client: Any = None
        self.experiment_id: str | None = None
        self.parent_id: str | None = None

    # ------------------------------------------------------------------ plumbing

    def _fail(self, what: str, exc: BaseException) -> None:
        log.warning("MLflow tracking off for this sweep (%s failed: %s)", what, exc)
        self.enabled = False

    def _connect(self) -> bool:
        """Resolve the backend as every texinspect run does (MLFLOW_TRACKING_URI first), probe it."""
        if not self.enabled:
            return False
        if self.client is not None:
            return True
        try:
            from texinspect.tracking import backend as tb  # deferred: sweeps run without the tracking extra

            resolved = tb.resolve_backend(self.tracking)
            tb.apply_http_defaults()
            tb.probe(resolved)
            self.client = tb.client(resolved)
            self.experiment_id = tb.experiment_id(self.client, resolved)
            return True
        except Exception as exc:  # noqa: BLE001 - tracking must not stop a sweep
            self._fail("connecting", exc)
            return False

    # ------------------------------------------------------------------ parent

    def start_parent(self, study: optuna.Study, info: dict[str, Any]) -> str | None:
        """The study's parent run: reused when the study already has one, else created."""
        if not self._connect():
            return None
        try:
            run_id = study.user_attrs.get(PARENT_ATTR)
            if run_id:
                try:
                    self.client.get_run(run_id)
                    self.client.update_run(run_id, status="RUNNING")
                    self.parent_id = run_id
                    return run_id
                except Exception:  # noqa: BLE001 - deleted or another tracking server: start a new one
                    log.info("parent run %s not found on this tracking server; starting a new one", run_id)
            run = self.client.create_run(
                self.experiment_id,
                run_name=f"sweep {study.study_name}",
                tags={"texinspect.kind": "sweep", "optuna.study": study.study_name},
            )
            self.parent_id = run.info.run_id
            study.set_user_attr(PARENT_ATTR, self.parent_id)
            for key, value in info.items():
                self.client.log_param(self.parent_id, key, _param_value(value))
            return self.parent_id
        except Exception as exc:  # noqa: BLE001
            self._fail("creating the parent run", exc)
            return None

    def finish_parent(self, metrics: dict[str, float], files: list[Path], terminate: bool = True) -> None:
        """Log the study's results on the parent run; end it only when the study is complete."""
        if not self.enabled or self.parent_id is None:
            return
        try:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.client.log_metric(self.parent_id, key, float(value))
            for path in files:
                if Path(path).is_file():
                    self.client.log_artifact(self.parent_id, str(path))
            if terminate:
                self.client.set_terminated(self.parent_id, status="FINISHED")
        except Exception as exc:  # noqa: BLE001
            self._fail("finishing the parent run", exc)

    # ------------------------------------------------------------------ children

    def start_trial(self, study: optuna.Study, number: int, params: dict[str, Any]) -> str | None:
        if not self._connect():
            return None
        parent = self.parent_id or study.user_attrs.get(PARENT_ATTR)
        try:
            tags = {"texinspect.kind": "sweep-trial", "optuna.study": study.study_name, "optuna.trial": str(number)}
            if parent:
                tags[PARENT_TAG] = parent
            run = self.client.create_run(self.experiment_id, run_name=f"trial {number}", tags=tags)
            for key, value in params.items():
                self.client.log_param(run.info.run_id, key, _param_value(value))
            return run.info.run_id
        except Exception as exc:  # noqa: BLE001
            self._fail("creating a trial run", exc)
            return None

    def log_metric(self, run_id: str | None, key: str, value: float, step: int | None = None) -> None:
        if not self.enabled or run_id is None or not math.isfinite(value):
            return
        try:
            self.client.log_metric(run_id, key, float(value), step=step or 0)
        except Exception as exc:  # noqa: BLE001
            self._fail("logging a metric", exc)

    def finish_trial(self, run_id: str | None, state: str, metrics: dict[str, float] | None = None, note: str = "") -> None:
        """End a child run; ``state`` is the Optuna state (COMPLETE, PRUNED, FAIL)."""
        if not self.enabled or run_id is None:
            return
        try:
            for key, value in (metrics or {}).items():
                self.log_metric(run_id, key, value)
            self.client.set_tag(run_id, "optuna.state", state)
            if note:
                self.client.set_tag(run_id, "optuna.note", note[:4000])
            status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(state, "FAILED")
            self.client.set_terminated(run_id, status=status)
        except Exception as exc:  # noqa: BLE001
            self._fail("finishing a trial run", exc)
