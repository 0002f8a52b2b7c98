"""One tracked run: ``with tracking.run(config, "name", kind="train", run_dir=out) as tr: ...``.

The tracker never stops the work it records. When the tracking server cannot be reached at the
start, or stops answering midway, the tracker logs one warning, writes
``RUN_DIR/tracking_offline.json`` (what was not logged, and how to log it later with
``texinspect register --run RUN_DIR``) and turns every further call into a no-op; the run folder
keeps the model and every file that would have been uploaded.

``RUN_DIR/mlflow_run.json`` remembers the MLflow run id of a folder, so that logging the folder
again later (``track_training_run``) adds to the same run instead of making a second one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import texinspect
from texinspect.config import Config
from texinspect.tracking import backend as _backend
from texinspect.tracking.backend import Backend, TrackingUnavailable
from texinspect.tracking.provenance import dataset_version, git_info

log = logging.getLogger(__name__)

OFFLINE_FILE = "tracking_offline.json"
RUN_FILE = "mlflow_run.json"
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value
BATCH = 100  # MLflow accepts at most 100 params per batch call
T = TypeVar("T")


def read_run_file(run_dir: str | Path | None) -> dict[str, Any]:
    """``RUN_DIR/mlflow_run.json`` as a dict ({} when absent or unreadable)."""
    if run_dir is None:
        return {}
    path = Path(run_dir) / RUN_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _stringify(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:MAX_PARAM_LENGTH]


class Tracker:
    """Logs to one MLflow run, or records locally what it could not log."""

    def __init__(self, backend: Backend | None, run_dir: str | Path | None, kind: str, run_name: str) -> None:
        self.backend = backend
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.kind = kind
        self.run_name = run_name
        self.client: Any = None
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.offline_reason: str | None = None
        self.skipped: set[str] = set()  # what was not logged while offline
        self.model_uri: str | None = None

    # ------------------------------------------------------------------ state

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    @property
    def online(self) -> bool:
        return self.enabled and self.client is not None and self.offline_reason is None

    def go_offline(self, reason: str) -> None:
        """Stop talking to the server; say so once, and leave a note in the run folder."""
        if self.offline_reason is not None:
            return
        self.offline_reason = reason
        where = f"; the run folder {self.run_dir} keeps the model and all outputs" if self.run_dir else ""
        log.warning(
            "MLflow tracking is offline for this %s run (%s)%s. Log it later with `texinspect register --run %s`.",
            self.kind,
            reason,
            where,
            self.run_dir or "RUN_DIR",
        )
        self._write_offline_note()

    def _write_offline_note(self) -> None:
        if self.run_dir is None or self.offline_reason is None:
            return
        note = {
            "tracking_uri": self.backend.tracking_uri if self.backend else None,
            "reason": self.offline_reason,
            "when": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "kind": self.kind,
            "run_name": self.run_name,
            "run_id": self.run_id,
            "not_logged": sorted(self.skipped),
            "retry": f"texinspect register --run {self.run_dir}",
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / OFFLINE_FILE).write_text(json.dumps(note, indent=2) + "\n")

    def _call(self, what: str, fn: Callable[[], T]) -> T | None:
        """Run one MLflow call (``fn``); on any failure go offline instead of raising."""
        if not self.online:
            if self.enabled and what not in self.skipped:
                self.skipped.add(what)
                self._write_offline_note()
            return None
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - tracking must never stop training
            log.debug("MLflow call %s failed", what, exc_info=True)
            self.skipped.add(what)
            self.go_offline(f"{what} failed: {type(exc).__name__}: {_first_line(exc)}")
            return None

    def _update_run_file(self, **fields: Any) -> None:
        if self.run_dir is None or self.run_id is None:
            return
        state = read_run_file(self.run_dir)
        if state.get("run_id") != self.run_id:
            state = {}
        state.update(
            run_id=self.run_id,
            experiment_id=self.experiment_id,
            tracking_uri=self.backend.tracking_uri if self.backend else None,
            kind=self.kind,
            **fields,
        )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / RUN_FILE).write_text(json.dumps(state, indent=2) + "\n")

    # ------------------------------------------------------------------ logging

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), _stringify(v)) for k, v in params.items()]
        for start in range(0, len(items), BATCH):
            chunk = items[start : start + BATCH]
            self._call("params", lambda chunk=chunk: self.client.log_batch(self.run_id, params=chunk))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(str(k), _stringify(v)) for k, v in tags.items()]
        for start in range(0, len(items), BATCH):
            chunk = items[start : start + BATCH]
            self._call("tags", lambda chunk=chunk: self.client.log_batch(self.run_id, tags=chunk))

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Numeric, finite values only (NaN/inf and text are skipped: MLflow cannot plot them)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(str(k), float(v), now, int(step or 0))
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
        ]
        for start in range(0, len(items), 1000):
            chunk = items[start : start + 1000]
            self._call("metrics", lambda chunk=chunk: self.client.log_batch(self.run_id, metrics=chunk))

    def log_losses(self, phase: str, step: int, row: Mapping[str, float]) -> None:
        """Same signature as ``run_phase(on_log=...)``: metrics ``<phase>/<loss>`` at ``step``."""
        self.log_metrics({f"{phase}/{k}": v for k, v in row.items() if k != "step"}, step=step)

    def log_history(self, phase: str, rows: list[Mapping[str, float]]) -> None:
        """A whole loss history (rows with a ``step`` key), e.g. from ``train_summary.json``.

        Steps already in the run (streamed live, or logged before a connection loss) are skipped,
        so logging a folder again never duplicates points.
        """
        from mlflow.entities import Metric

        if not self.online:
            self._call("loss history", lambda: None)
            return
        keys = sorted({k for row in rows for k in row if k != "step"})
        done = self._call("loss history", lambda: {k: self._last_step(f"{phase}/{k}") for k in keys}) or {}
        now = int(time.time() * 1000)
        items = [
            Metric(f"{phase}/{k}", float(v), now, int(row.get("step", i)))
            for i, row in enumerate(rows)
            for k, v in row.items()
            if k != "step"
            and isinstance(v, (int, float))
            and math.isfinite(float(v))
            and int(row.get("step", i)) > done.get(k, -1)
        ]
        for start in range(0, len(items), 1000):
            chunk = items[start : start + 1000]
            self._call("loss history", lambda chunk=chunk: self.client.log_batch(self.run_id, metrics=chunk))

    def _last_step(self, key: str) -> int:
        history = self.client.get_metric_history(self.run_id, key)
        return max((int(m.step) for m in history), default=-1)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if Path(path).is_file():
            self._call(
                f"artifact {Path(path).name}",
                lambda: self.client.log_artifact(self.run_id, str(path), artifact_path),
            )

    def log_artifacts(
        self, directory: str | Path, artifact_path: str | None = None, exclude: tuple[str, ...] = ()
    ) -> None:
        """Every file under ``directory`` except paths starting with one of ``exclude``."""
        base = Path(directory)
        if not base.is_dir():
            return
        if not exclude:
            self._call(
                f"artifacts {base.name}/",
                lambda: self.client.log_artifacts(self.run_id, str(base), artifact_path),
            )
            return
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            rel = path.relative_to(base)
            if any(rel.as_posix() == e or rel.as_posix().startswith(e.rstrip("/") + "/") for e in exclude):
                continue
            sub = "/".join(part for part in (artifact_path, rel.parent.as_posix()) if part and part != ".")
            self.log_artifact(path, sub or None)

    def log_dict(self, data: Mapping[str, Any], file_name: str) -> None:
        self._call(f"artifact {file_name}", lambda: self.client.log_dict(self.run_id, dict(data), file_name))

    def log_model(self, model_dir: str | Path) -> str | None:
        """Log the texinspect model folder as a pyfunc model; returns its ``models:/`` URI."""
        uri = self._call("model", lambda: self._log_model(Path(model_dir)))
        if uri:
            self.model_uri = uri
            self.set_tags({"texinspect.model_uri": uri})
            self._update_run_file(model_uri=uri)
        return uri

    def _log_model(self, model_dir: Path) -> str:
        import mlflow

        from texinspect.tracking.pyfunc import log_model  # deferred: mlflow.pyfunc is slow to import

        assert self.backend is not None and self.run_id is not None
        with _backend.fluent(self.backend):
            active = mlflow.active_run()
            if active is not None and active.info.run_id == self.run_id:
                info = log_model(model_dir)
            else:
                with mlflow.start_run(run_id=self.run_id, nested=active is not None):
                    info = log_model(model_dir)
        return str(info.model_uri)

    def log_dataset(self, root: str | Path) -> dict[str, Any]:
        """Log the dataset's DVC hash as params and as an MLflow dataset input."""
        version = dataset_version(root)
        if not version:
            return version
        self.log_params(
            {k: v for k, v in version.items() if k in ("dataset.md5", "dataset.dvc_md5", "dataset.path")}
        )
        self.set_tags(
            {k: v for k, v in version.items() if k not in ("dataset.md5", "dataset.dvc_md5", "dataset.path")}
        )
        if self.online:
            from mlflow.entities import Dataset, DatasetInput, InputTag

            dataset = Dataset(
                name=Path(str(root)).name or str(root),
                digest=str(version["dataset.md5"]).removesuffix(".dir")[:36],
                source_type="local",
                source=json.dumps({"uri": str(Path(root).resolve()), "dvc_md5": version["dataset.md5"]}),
            )
            tags = [InputTag("mlflow.data.context", "train" if self.kind == "train" else self.kind)]
            self._call(
                "dataset input",
                lambda: self.client.log_inputs(self.run_id, datasets=[DatasetInput(dataset, tags)]),
            )
        return version

    def finish(self, status: str = "FINISHED") -> None:
        if self.online:
            self._call("end of run", lambda: self.client.set_terminated(self.run_id, status))
        if self.online and self.run_dir is not None:  # logged in full now: an old note is stale
            (self.run_dir / OFFLINE_FILE).unlink(missing_ok=True)
        elif self.offline_reason is not None:
            self._write_offline_note()


def _run_exists(mlflow_client: Any, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_run(run_id).info.lifecycle_stage != "deleted"
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


def start(
    config: Config,
    run_name: str | None = None,
    kind: str = "train",
    run_dir: str | Path | None = None,
    tags: Mapping[str, Any] | None = None,
    parent_run_id: str | None = None,
    run_id: str | None = None,
    log_config: bool = True,
    data_root: str | Path | None = None,
) -> Tracker:
    """Open (or reopen, with ``run_id``) an MLflow run; offline Tracker if that is impossible."""
    name = run_name or (Path(run_dir).name if run_dir is not None else kind)
    if not config.tracking.enabled:
        log.info("MLflow tracking disabled (tracking.enabled: false)")
        return Tracker(None, run_dir, kind, name)
    _backend.apply_http_defaults()
    backend = _backend.resolve_backend(config.tracking)
    tracker = Tracker(backend, run_dir, kind, name)
    try:
        reopened = _open_run(tracker, backend, parent_run_id, run_id)
    except TrackingUnavailable as exc:
        tracker.skipped.update(["run", "params", "tags", "dataset"])
        tracker.go_offline(str(exc))
        return tracker
    except Exception as exc:  # noqa: BLE001 - a broken store must not stop training
        log.debug("could not open an MLflow run", exc_info=True)
        tracker.skipped.update(["run", "params", "tags", "dataset"])
        tracker.go_offline(
            f"cannot open a run in {backend.tracking_uri}: {type(exc).__name__}: {_first_line(exc)}"
        )
        return tracker
    tracker._update_run_file()
    log.info("MLflow run %s (%s) in %s, experiment '%s'", tracker.run_id, name, backend.tracking_uri, backend.experiment)
    git = git_info()
    context_tags = {**git, "model.family": config.model}
    if "git.commit" in git:
        context_tags["mlflow.source.git.commit"] = git["git.commit"]
    tracker.set_tags({**context_tags, **(dict(tags or {}))})
    if log_config and not reopened:
        tracker.log_params(config.flat())
        tracker.log_dict(config.to_dict(), "config/resolved_config.json")
    if not reopened:
        tracker.log_dataset(data_root if data_root is not None else config.data.root)
    return tracker


def _open_run(tracker: Tracker, backend: Backend, parent_run_id: str | None, run_id: str | None) -> bool:
    """Connect ``tracker`` and reopen ``run_id`` if the store still has it, else create a run;
    True when an existing run was reopened (its params and dataset are logged already)."""
    _backend.probe(backend)
    tracker.client = _backend.client(backend)
    tracker.experiment_id = _backend.experiment_id(tracker.client, backend)
    if run_id is not None and not _run_exists(tracker.client, run_id):
        log.warning("MLflow run %s (from %s) is not in %s: starting a new run", run_id, RUN_FILE, backend.tracking_uri)
        run_id = None
    if run_id is not None:
        tracker.run_id = run_id
        tracker.client.update_run(run_id, status="RUNNING")
        return True
    run_tags = {"texinspect.kind": tracker.kind, "texinspect.version": texinspect.__version__}
    if parent_run_id:
        run_tags["mlflow.parentRunId"] = parent_run_id
    created = tracker.client.create_run(tracker.experiment_id, run_name=tracker.run_name, tags=run_tags)
    tracker.run_id = created.info.run_id
    return False


@contextlib.contextmanager
def run(config: Config, *args: Any, **kwargs: Any) -> Iterator[Tracker]:
    """Context manager around :func:`start` (the same arguments): the run ends FINISHED, or
    FAILED/KILLED on an error."""
    tracker = start(config, *args, **kwargs)
    try:
        yield tracker
    except KeyboardInterrupt:
        tracker.finish("KILLED")
        raise
    except BaseException:
        tracker.finish("FAILED")
        raise
    tracker.finish("FINISHED")
