"""Log a finished run folder (and its evaluation) to MLflow in one call.

``track_training_run(config, RUN, RUN/model, P/metrics.json)`` logs the resolved config as
params, the loss histories of ``train_summary.json`` as metric histories, the summary's numbers,
the dataset's DVC hash, the git commit, every file of the run folder (checkpoints, memory bank,
summaries) and of the evaluation folder (metrics, per-type table, ROC/PR curves and plots,
overview.png, overlays), and the model as a pyfunc. Calling it again for the same folder adds to the same run.
"""

from __future__ import annotations

import filecmp
import json
import logging
import math
from pathlib import Path
from typing import Any

from texinspect.config import Config, load_config
from texinspect.errors import ConfigError, DataError
from texinspect.tracking.backend import resolve_backend
from texinspect.tracking.session import Tracker, read_run_file, run
from texinspect.training.distributed import is_main_process
from texinspect.training.runs import TrainOutcome

log = logging.getLogger(__name__)

SUMMARY_FILE = "train_summary.json"
CONFIG_FILE = "config.yaml"
EVAL_EXCLUDE = ("maps", "mlflow_run.json", "tracking_offline.json")  # maps: large, reproducible
RUN_EXCLUDE = ("model", "mlflow_run.json", "tracking_offline.json")


def read_json(path: str | Path, what: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: {what} not found")
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{p}: {what} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{p}: {what} must be a JSON object, got {type(data).__name__}")
    return data


def loss_histories(summary: dict[str, Any]) -> dict[str, list[dict[str, float]]]:
    """Phase name -> logged loss rows, from either summary layout the trainers write.

    RB-AE writes ``{"history": {"phase1": [...], ...}}``; FMR-Net ``{"phases": {"phase1":
    {"history": [...]}}}``. Rows are dicts with a ``step`` key.
    """
    found: dict[str, list[dict[str, float]]] = {}
    history = summary.get("history")
    if isinstance(history, dict):
        for phase, rows in history.items():
            if isinstance(rows, list):
                found[str(phase)] = [r for r in rows if isinstance(r, dict)]
    phases = summary.get("phases")
    if isinstance(phases, dict):
        for phase, info in phases.items():
            if isinstance(info, dict) and isinstance(info.get("history"), list) and str(phase) not in found:
                found[str(phase)] = [r for r in info["history"] if isinstance(r, dict)]
    return found


def numeric_leaves(tree: Any, prefix: str = "", skip: tuple[str, ...] = ("history",)) -> dict[str, float]:
    """Dotted keys -> finite numbers in a nested dict (lists and text are left out)."""
    out: dict[str, float] = {}
    if not isinstance(tree, dict):
        return out
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if key in skip:
            continue
        if isinstance(value, dict):
            out.update(numeric_leaves(value, name + ".", skip))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value)):
            out[name] = float(value)
    return out


def run_config(run_dir: Path, config: Config) -> Config:
    """The config the run was trained with (``RUN/config.yaml``) if readable, else ``config``."""
    saved = run_dir / CONFIG_FILE
    if saved.is_file():
        try:
            return load_config(saved)
        except ConfigError as exc:
            log.warning(
                "%s does not load with this texinspect (%s): logging the given config instead", saved, exc
            )
    return config


def run_exclusions(folder: Path, model: Path, metrics_path: str | Path | None) -> tuple[str, ...]:
    """Paths of the run folder not logged under ``run/``: the model (logged as the model), an
    evaluation folder inside the run (logged under ``evaluation/``), and ``last.pt`` when it is
    a byte copy of a phase-end checkpoint (the case for a finished run)."""
    excluded = list(RUN_EXCLUDE)
    for inner in (model, Path(metrics_path).parent if metrics_path is not None else None):
        if (
            inner is not None
            and inner.resolve().is_relative_to(folder.resolve())
            and inner.resolve() != folder.resolve()
        ):
            excluded.append(inner.resolve().relative_to(folder.resolve()).as_posix())
    last = folder / "checkpoints" / "last.pt"
    if last.is_file() and any(filecmp.cmp(last, end, shallow=False) for end in last.parent.glob("*_end.pt")):
        excluded.append("checkpoints/last.pt")
    return tuple(excluded)


def _previous_run_id(run_dir: Path, config: Config) -> str | None:
    """The MLflow run this folder was logged to before, if it is in the same tracking store."""

    state = read_run_file(run_dir)
    if not state.get("run_id"):
        return None
    if state.get("tracking_uri") != resolve_backend(config.tracking).tracking_uri:
        return None
    return str(state["run_id"])


def log_evaluation(
    tracker: Tracker, metrics_path: str | Path, artifact_path: str = "evaluation"
) -> dict[str, Any]:
    """Final metrics (numbers of metrics.json) and the evaluation folder's files."""
    metrics = read_json(metrics_path, "metrics file")
    tracker.log_metrics(numeric_leaves(metrics))
    text = {k: v for k, v in metrics.items() if isinstance(v, str)}
    if text:
        tracker.set_tags({f"eval.{k}": v for k, v in text.items()})
    tracker.log_artifacts(Path(metrics_path).parent, artifact_path, exclude=EVAL_EXCLUDE)
    return metrics


def track_training_run(
    config: Config,
    run_dir: str | Path,
    model_dir: str | Path | None = None,
    metrics_path: str | Path | None = None,
    run_name: str | None = None,
) -> str | None:
    """Log a completed run folder; returns the MLflow run id (None when tracking is off/offline).

    ``config`` decides where to log (``tracking:``); the params logged are those the model was
    trained with (``RUN/config.yaml``). Loss steps already in the run (streamed during training
    with ``on_log``, or logged before a connection loss) are not logged twice.
    """
    folder = Path(run_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: run folder not found")
    model = Path(model_dir) if model_dir is not None else folder / "model"
    trained = run_config(folder, config)
    trained.tracking = config.tracking
    previous = _previous_run_id(folder, config)
    state = read_run_file(folder) if previous else {}
    with run(trained, run_name or folder.name, kind="train", run_dir=folder, run_id=previous) as tracker:
        summary_path = folder / SUMMARY_FILE
        if summary_path.is_file():
            summary = read_json(summary_path, "training summary")
            for phase, rows in loss_histories(summary).items():
                tracker.log_history(phase, rows)  # skips steps the run has already
            tracker.log_metrics({f"train.{k}": v for k, v in numeric_leaves(summary).items()})
        else:
            log.warning("%s has no %s: no loss history logged", folder, SUMMARY_FILE)
        tracker.log_artifacts(folder, "run", exclude=run_exclusions(folder, model, metrics_path))
        if model.is_dir() and not state.get("model_uri"):
            tracker.log_model(model)
        elif not model.is_dir():
            log.warning("%s: model folder not found, no model logged", model)
        if metrics_path is not None:
            log_evaluation(tracker, metrics_path)
        return tracker.run_id if tracker.online else None


def track_evaluation(
    config: Config,
    pred_dir: str | Path,
    metrics_path: str | Path | None = None,
    model_run_id: str | None = None,
    run_name: str | None = None,
    data_root: str | Path | None = None,
) -> str | None:
    """An ``evaluate`` run of its own (e.g. a champion re-measured on new data)."""
    folder = Path(pred_dir)
    metrics_file = Path(metrics_path) if metrics_path is not None else folder / "metrics.json"
    tags = {"texinspect.model_run_id": model_run_id} if model_run_id else {}
    with run(
        config,
        run_name or f"evaluate-{folder.name}",
        kind="evaluate",
        run_dir=folder,
        tags=tags,
        data_root=data_root,
    ) as tracker:
        log_evaluation(tracker, metrics_file)
        return tracker.run_id if tracker.online else None


def log_finished_run(config: Config, outcome: TrainOutcome) -> None:
    """Log a run trained to its model to MLflow when tracking is on (rank 0 only under DDP);
    a phase-1 call logs nothing. ``texinspect train`` and the pipeline's training steps call it."""
    if outcome.phase == "1" or outcome.model_dir is None:
        return
    if config.tracking.enabled and is_main_process():  # DDP: rank 0 logs the run
        track_training_run(config, outcome.out, outcome.model_dir)
