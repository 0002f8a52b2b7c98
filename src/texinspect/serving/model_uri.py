"""Where a served model comes from: a local folder, an MLflow URI, or S3, resolved to a local folder.

Accepted forms::

    path/to/model            the folder `texinspect train` wrote (or any folder holding one)
    file:///abs/path/model
    models:/NAME@ALIAS       MLflow Model Registry, e.g. models:/texinspect@champion
    models:/NAME/VERSION
    runs:/RUN_ID/PATH        an MLflow run's artifact
    s3://BUCKET/PREFIX       every object under the prefix (credentials and endpoint from the
                             usual AWS_* environment variables, see texinspect.storage)

Whatever the source, the model is found as the shallowest folder holding ``model.yaml``, so an
MLflow model logged with the artifact in a sub-folder resolves too.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from texinspect.errors import ModelError, TexinspectError
from texinspect.models.artifact import CARD_FILE, WEIGHTS_FILE
from texinspect.storage import fetch_model

log = logging.getLogger(__name__)

MLFLOW_SCHEMES = ("models", "runs", "mlflow-artifacts")


def resolve_model_uri(uri: str, cache_dir: str | Path | None = None, tracking_uri: str | None = None) -> Path:
    """Return a local model folder for ``uri`` (downloading into ``cache_dir`` when remote).

    S3 and MLflow downloads go through ``texinspect.storage.fetch_model`` (atomic, cached by ETag
    for S3) so serving, pipelines and the CLI share one implementation.
    """
    if not uri:
        raise ModelError("model URI is empty (pass a folder, models:/NAME@ALIAS, runs:/..., or s3://...)")
    scheme = urlparse(uri).scheme
    if scheme in MLFLOW_SCHEMES:
        if tracking_uri:
            os.environ["MLFLOW_TRACKING_URI"] = tracking_uri  # read by mlflow wherever the download runs
        return find_model_dir(_download_mlflow(uri, cache_dir, tracking_uri), uri)
    if scheme == "s3":

        dest = None if cache_dir is None else Path(cache_dir) / hashlib.sha256(uri.encode()).hexdigest()[:16]
        return find_model_dir(fetch_model(uri, dest, required=(CARD_FILE, WEIGHTS_FILE)), uri)
    if scheme == "file":
        return find_model_dir(Path(urlparse(uri).path), uri)
    if scheme and len(scheme) > 1:  # "C:" style drive letters are paths, other schemes are not supported
        raise ModelError(
            f"model URI '{uri}': unsupported scheme '{scheme}' (use a folder, models:/, runs:/, s3://)"
        )
    return find_model_dir(Path(uri), uri)


def find_model_dir(root: Path, uri: str = "") -> Path:
    """The shallowest folder under ``root`` (itself included) that holds ``model.yaml``."""
    name = uri or str(root)
    if not root.exists():
        raise ModelError(f"model '{name}': {root} does not exist")
    if root.is_file():
        root = root.parent
    if (root / CARD_FILE).is_file():
        return root
    found = sorted(root.rglob(CARD_FILE), key=lambda p: (len(p.parts), str(p)))
    if not found:
        raise ModelError(
            f"model '{name}': no {CARD_FILE} under {root} (is this a texinspect model artifact?)"
        )
    return found[0].parent


def _download_mlflow(uri: str, cache_dir: str | Path | None, tracking_uri: str | None) -> Path:
    """MLflow URI -> local folder, with ``texinspect.tracking.download_model`` (the pipeline's own
    reader of the models it logs); if that finds no model, the whole artifact is downloaded and
    searched for ``model.yaml``, so models logged in another layout still serve."""
    dest = None if cache_dir is None else Path(tempfile.mkdtemp(prefix="mlflow-", dir=_mkdir(cache_dir)))
    try:
        from texinspect.tracking import (
            download_model,  # deferred: mlflow (the tracking extra) is optional for serving
        )
    except ImportError:  # tracking extra not installed
        download_model = None
    first_error: TexinspectError | None = None
    if download_model is not None:
        try:
            return Path(download_model(uri, dest))
        except TexinspectError as exc:
            first_error = exc
            log.warning(
                "texinspect.tracking could not fetch %s (%s); trying the plain MLflow download", uri, exc
            )
    try:
        return _plain_mlflow_download(uri, dest, tracking_uri)
    except ModelError:
        if first_error is not None:
            raise first_error from None
        raise


def _plain_mlflow_download(uri: str, dest: Path | None, tracking_uri: str | None) -> Path:
    try:
        import mlflow
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException
    except ImportError as exc:  # pragma: no cover - the serve extra depends on the tracking extra
        raise ModelError(
            f"model '{uri}': mlflow is not installed (pip install 'texinspect[tracking]')"
        ) from exc
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    target = dest or Path(tempfile.mkdtemp(prefix="texinspect-model-"))
    log.info("downloading %s from MLflow (%s) into %s", uri, mlflow.get_tracking_uri(), target)
    try:
        root = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(target)))
    except MlflowException as exc:
        raise ModelError(f"model '{uri}': MLflow could not resolve it ({exc.message})") from None
    except OSError as exc:
        raise ModelError(f"model '{uri}': download failed ({exc})") from None
    return find_model_dir(root, uri)


def _mkdir(path: str | Path) -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out
