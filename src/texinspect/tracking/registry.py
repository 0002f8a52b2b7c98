"""Model Registry with a quality gate: the alias ``champion`` moves only to a better model.

``register_and_gate(run_id, metrics, config)`` registers the run's model as a new version of
``tracking.registered_model`` and compares ``metrics[tracking.gate_metric]`` (higher is better,
e.g. image AUROC) with the value recorded for the current champion. The new version takes the
alias only if it is strictly better (or there is no champion yet). Either way the decision and
its reason are written to the model version's tags, to the run's tags and to the run's
``gate/decision.json``, so "why is v7 not champion?" has an answer in the UI.

Registering the same run again reuses its version (safe to retry a pipeline step).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from texinspect.config import Config, TrackingConfig
from texinspect.storage import SOURCE_FILE
from texinspect.tracking import backend as _backend
from texinspect.tracking.backend import Backend, TrackingError, TrackingUnavailable
from texinspect.tracking.runs import read_json

log = logging.getLogger(__name__)

CHAMPION = "champion"
MODEL_URI_TAG = "texinspect.model_uri"


@dataclass(frozen=True)
class GateDecision:
    """The outcome of one registration."""

    promoted: bool
    reason: str
    model_name: str
    version: str
    metric: str
    value: float | None
    champion_version: str | None  # the champion before this decision
    champion_value: float | None
    run_id: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _as_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def decide(
    metric: str, value: float | None, champion_version: str | None, champion_value: float | None
) -> tuple[bool, str]:
    """The gate itself: (promote?, reason). Higher ``metric`` is better; ties keep the champion."""
    if value is None:
        return False, f"no finite {metric} for this model: not eligible for {CHAMPION}"
    if champion_version is None:
        return True, f"no {CHAMPION} yet: first model with {metric}={value:.4f} becomes {CHAMPION}"
    if champion_value is None:
        return False, (
            f"current {CHAMPION} v{champion_version} has no recorded {metric}: cannot compare, alias left "
            f"in place (move it by hand if intended)"
        )
    if value > champion_value:
        return True, f"{metric} {value:.4f} > {champion_value:.4f} of {CHAMPION} v{champion_version}"
    return (
        False,
        f"{metric} {value:.4f} <= {champion_value:.4f} of {CHAMPION} v{champion_version}: {CHAMPION} kept",
    )


def _connect(config: Config) -> tuple[Backend, Any]:
    _backend.apply_http_defaults()
    backend = _backend.resolve_backend(config.tracking)
    _backend.probe(backend)
    return backend, _backend.client(backend)


def _model_uri(client: Any, run_id: str) -> str:
    """The ``models:/`` URI of the model logged by ``run_id``."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise TrackingError(f"MLflow run {run_id} not found: {exc.message}") from exc
    uri = run.data.tags.get(MODEL_URI_TAG)
    if uri:
        return str(uri)
    models = client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    if models:
        return str(models[0].model_uri)
    raise TrackingError(f"MLflow run {run_id} has no logged model: log it with track_training_run first")


def _champion(client: Any, name: str, metric: str) -> tuple[str | None, float | None]:
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None, None
    value = _as_float(version.tags.get("gate.value")) if version.tags.get("gate.metric") == metric else None
    if value is None and version.run_id:
        try:
            value = _as_float(client.get_run(version.run_id).data.metrics.get(metric))
        except MlflowException:
            value = None
    return str(version.version), value


def _existing_version(client: Any, name: str, run_id: str) -> Any | None:
    versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return max(versions, key=lambda v: int(v.version)) if versions else None


def register_and_gate(
    run_id: str,
    metrics: dict[str, Any] | str | Path | None,
    config: Config,
) -> GateDecision:
    """Register the run's model and move ``champion`` to it only if it beats the current one.

    ``metrics``: the evaluation's metrics (a dict or the path of ``metrics.json``); None reads
    them from the run's logged metrics. Raises TrackingUnavailable if the server is unreachable.
    """
    from mlflow.exceptions import MlflowException

    backend, client = _connect(config)
    if isinstance(metrics, (str, Path)):
        metrics = read_json(metrics, "metrics file")
    try:
        return _gate(backend, client, run_id, metrics)
    except TrackingError:
        raise
    except MlflowException as exc:
        raise TrackingError(
            f"registration of run {run_id} as '{backend.registered_model}' failed: {exc.message}"
        ) from exc
    except Exception as exc:
        if _is_connection_error(exc):
            raise TrackingUnavailable(
                f"tracking server {backend.tracking_uri} stopped answering: {exc}"
            ) from exc
        raise


def _gate(backend: Backend, client: Any, run_id: str, metrics: dict[str, Any] | None) -> GateDecision:
    """The registration and the gate themselves; :func:`register_and_gate` turns errors into ours."""
    import mlflow

    metric, name = backend.gate_metric, backend.registered_model
    if metrics is None:
        metrics = dict(client.get_run(run_id).data.metrics)
    value = _as_float(metrics.get(metric))
    model_uri = _model_uri(client, run_id)
    champion_version, champion_value = _champion(client, name, metric)
    existing = _existing_version(client, name, run_id)
    if existing is not None and champion_version == str(existing.version):
        log.info("run %s is %s v%s already", run_id, name, existing.version)
        return GateDecision(
            True, f"v{existing.version} is {CHAMPION} already", name, str(existing.version),
            metric, value, champion_version, champion_value, run_id,
        )
    if existing is not None:
        version = existing
        log.info("run %s is registered as %s v%s already: gating that version", run_id, name, version.version)
    else:
        with _backend.fluent(backend):
            version = mlflow.register_model(model_uri, name, tags={"gate.metric": metric})
    promoted, reason = decide(metric, value, champion_version, champion_value)
    decision = GateDecision(
        promoted, reason, name, str(version.version), metric, value, champion_version, champion_value, run_id
    )
    _record(client, decision)
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, str(version.version))
    log.info("%s v%s: %s (%s)", name, decision.version, "promoted to champion" if promoted else "not promoted", reason)
    return decision


def _record(client: Any, decision: GateDecision) -> None:
    """Write the decision where people look: model version tags, run tags, a run artifact."""
    status = "promoted" if decision.promoted else "rejected"
    version_tags = {
        "gate.metric": decision.metric,
        "gate.value": "" if decision.value is None else repr(decision.value),
        "gate.decision": status,
        "gate.reason": decision.reason,
        "gate.previous_champion": decision.champion_version or "",
    }
    for key, value in version_tags.items():
        client.set_model_version_tag(decision.model_name, decision.version, key, value)
    client.update_model_version(
        decision.model_name, decision.version, description=f"quality gate: {decision.reason}"
    )
    for key, value in {
        "gate.decision": status,
        "gate.reason": decision.reason,
        "registry.model": decision.model_name,
        "registry.version": decision.version,
    }.items():
        client.set_tag(decision.run_id, key, value)
    client.log_dict(decision.run_id, decision.to_dict(), "gate/decision.json")


def _is_connection_error(exc: BaseException) -> bool:
    names = {type(e).__name__ for e in _chain(exc)}
    return bool(
        names & {"ConnectionError", "MaxRetryError", "NewConnectionError", "ConnectTimeout", "ReadTimeout"}
    )


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def champion_uri(config: Config) -> str:
    """``models:/<registered_model>@champion`` for serving."""
    return f"models:/{config.tracking.registered_model}@{CHAMPION}"


def download_model(uri: str, dest: str | Path | None = None, config: Config | None = None) -> Path:
    """A texinspect model folder (model.yaml + weights.pt) from a ``models:/`` or ``runs:/`` URI.

    The tracking server comes from ``MLFLOW_TRACKING_URI`` (or ``config``'s tracking section).
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from texinspect.tracking.pyfunc import MODEL_DIR_ARTIFACT  # deferred: mlflow.pyfunc is slow to import

    backend = _backend.resolve_backend(config.tracking if config is not None else TrackingConfig())
    _backend.apply_http_defaults()
    _backend.probe(backend)
    target = Path(dest) if dest is not None else Path(tempfile.mkdtemp(prefix="texinspect-model-"))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        with _backend.fluent(backend):
            root = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(partial)))
        found = _find_model_dir(root, MODEL_DIR_ARTIFACT)
        if found is None:
            raise TrackingError(
                f"{uri} holds no texinspect model (no '{MODEL_DIR_ARTIFACT}' artifact with model.yaml)"
            )
        if target.exists():
            shutil.rmtree(target)
        found.replace(target)
    except MlflowException as exc:
        raise TrackingError(f"cannot download {uri} from {backend.tracking_uri}: {exc.message}") from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    (target / SOURCE_FILE).write_text(json.dumps({"uri": uri, "tracking_uri": backend.tracking_uri}) + "\n")
    return target


def _find_model_dir(root: Path, artifact: str) -> Path | None:
    """The texinspect folder inside a downloaded pyfunc, located through its ``MLmodel`` file."""
    import yaml

    mlmodel = root / "MLmodel"
    if mlmodel.is_file():
        spec = yaml.safe_load(mlmodel.read_text()) or {}
        entry = spec.get("flavors", {}).get("python_function", {}).get("artifacts", {}).get(artifact, {})
        if entry.get("path") and (root / entry["path"] / "model.yaml").is_file():
            return root / entry["path"]
    if (root / "model.yaml").is_file():  # a runs:/.../artifacts/<folder> URI pointing at the folder itself
        return root
    return None
