"""Where runs go: the tracking URI, registry URI and artifact location, and whether they answer.

Defaults come from ``tracking:`` in params.yaml (SQLite file ``mlflow.db`` and the local folder
``mlartifacts/``); ``MLFLOW_TRACKING_URI`` (and ``MLFLOW_REGISTRY_URI``) point them at a team's
server without touching the config. A server is probed with one short request before a run
starts, and MLflow's own HTTP retries are shortened, so a dead server costs seconds, not minutes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from texinspect.config import TrackingConfig
from texinspect.errors import TexinspectError

log = logging.getLogger(__name__)

# MLflow retries an unreachable server 7 times with exponential backoff (minutes); these defaults
# apply only where the variable is not set already.
HTTP_DEFAULTS: dict[str, str] = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
PROBE_TIMEOUT_VAR = "TEXINSPECT_TRACKING_PROBE_TIMEOUT"  # seconds for the reachability probe (default 5)
_REMOTE_SCHEMES = ("s3", "gs", "wasbs", "abfss", "hdfs", "mlflow-artifacts", "http", "https", "dbfs")


class TrackingUnavailable(TexinspectError):
    """The tracking server (or database) cannot be reached or refused the request."""


class TrackingError(TexinspectError):
    """A run, model or metric asked for does not exist in the tracking server."""


@dataclass(frozen=True)
class Backend:
    """Resolved tracking settings for one process."""

    tracking_uri: str
    registry_uri: str
    artifact_location: str | None  # for new experiments; None: the server decides
    experiment: str
    registered_model: str
    gate_metric: str

    @property
    def is_remote(self) -> bool:
        return urlparse(self.tracking_uri).scheme in ("http", "https")


def resolve_backend(config: TrackingConfig) -> Backend:
    """Config values, with ``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI`` taking precedence."""
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or config.tracking_uri
    registry_uri = os.environ.get("MLFLOW_REGISTRY_URI") or tracking_uri
    return Backend(
        tracking_uri=tracking_uri,
        registry_uri=registry_uri,
        artifact_location=artifact_location(config.artifact_location, tracking_uri),
        experiment=config.experiment,
        registered_model=config.registered_model,
        gate_metric=config.gate_metric,
    )


def artifact_location(configured: str, tracking_uri: str) -> str | None:
    """The artifact root for new experiments.

    A URI (``s3://bucket/prefix``) is used as is. A plain folder is made absolute for a local
    store (SQLite, file), and ignored for a tracking server, whose own ``--artifacts-destination``
    or ``--default-artifact-root`` then applies (a path on this machine means nothing to it).
    """
    if not configured:
        return None
    scheme = urlparse(configured).scheme
    if scheme in _REMOTE_SCHEMES or scheme == "file":
        return configured
    if urlparse(tracking_uri).scheme in ("http", "https", "databricks"):
        return None
    return Path(configured).expanduser().resolve().as_uri()


def apply_http_defaults() -> None:
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def probe(backend: Backend, timeout: float | None = None) -> None:
    """Raise TrackingUnavailable unless the tracking store can be used.

    A server must answer an HTTP request (any status: a 401 still proves it is there); for a
    SQLite file the folder must exist or be creatable.
    """
    uri = backend.tracking_uri
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        timeout = timeout if timeout is not None else float(os.environ.get(PROBE_TIMEOUT_VAR, "5"))
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 - the configured server
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingUnavailable(
                f"MLflow tracking server {uri} is unreachable ({reason}); check MLFLOW_TRACKING_URI "
                "and that the server is running"
            ) from exc
    elif parsed.scheme == "sqlite":
        db = sqlite_path(uri)
        if db is not None:
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise TrackingUnavailable(
                    f"cannot create the folder of the tracking database {db}: {exc}"
                ) from exc


def sqlite_path(uri: str) -> Path | None:
    """``sqlite:///rel.db`` -> rel.db, ``sqlite:////abs.db`` -> /abs.db; None for in-memory."""
    rest = uri[len("sqlite://") :]
    if not rest.startswith("/") or rest in ("/", "/:memory:"):
        return None
    return Path(rest[1:])


def client(backend: Backend) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=backend.tracking_uri, registry_uri=backend.registry_uri)


def experiment_id(mlflow_client: Any, backend: Backend) -> str:
    """The experiment's id, creating it (with the configured artifact root) on first use."""
    from mlflow.exceptions import MlflowException

    found = mlflow_client.get_experiment_by_name(backend.experiment)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            raise TrackingError(
                f"experiment '{backend.experiment}' is deleted in {backend.tracking_uri}: restore it "
                "(mlflow experiments restore) or choose another tracking.experiment"
            )
        return str(found.experiment_id)
    try:
        return str(
            mlflow_client.create_experiment(backend.experiment, artifact_location=backend.artifact_location)
        )
    except MlflowException:  # created by a parallel process in the meantime
        found = mlflow_client.get_experiment_by_name(backend.experiment)
        if found is None:
            raise
        return str(found.experiment_id)


@contextlib.contextmanager
def fluent(backend: Backend) -> Iterator[None]:
    """Point MLflow's module-level API at ``backend`` for a block (log_model needs it), then restore.

    ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` into the environment, so the
    previous module state and environment are both put back afterwards.
    """
    import mlflow
    from mlflow.tracking import _model_registry, _tracking_service

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved_env = {name: os.environ.get(name) for name in names}
    saved_tracking = _tracking_service.utils._tracking_uri
    saved_registry = _model_registry.utils._registry_uri
    mlflow.set_tracking_uri(backend.tracking_uri)
    mlflow.set_registry_uri(backend.registry_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_tracking)
        _model_registry.utils._registry_uri = saved_registry
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
