"""S3 object storage: endpoint and credentials from the environment, clear errors, no half copies.

Every part of texinspect that talks to S3 (this module, the DVC S3 remote, MLflow's S3 artifact
store) reads the same standard variables, so one set of exports points them all at a team's store:

``AWS_ENDPOINT_URL``        e.g. ``http://minio.data:9000`` (unset: AWS itself);
                            ``AWS_ENDPOINT_URL_S3`` and ``MLFLOW_S3_ENDPOINT_URL`` are honoured too
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (or any other boto3 credential source)
``AWS_DEFAULT_REGION``      optional (``us-east-1`` when unset)

Nothing here stores credentials in files. Downloads go to a temporary sibling folder that is
renamed into place only when every object arrived, so a failed copy never looks complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from texinspect.errors import TexinspectError

log = logging.getLogger(__name__)

ENDPOINT_VARS: tuple[str, ...] = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL")
DEFAULT_REGION = "us-east-1"
SOURCE_FILE = ".texinspect-source.json"  # written into a downloaded folder: where it came from
_CREDENTIAL_CODES = {
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "AccessDenied",
    "InvalidToken",
    "403",
    "Forbidden",
}
_MISSING_CODES = {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}


class StorageError(TexinspectError):
    """An object store is unreachable, refuses the credentials, or lacks the named object."""


@dataclass(frozen=True)
class S3Settings:
    """Where S3 requests go, read from the environment (credentials stay with boto3)."""

    endpoint_url: str | None
    region: str
    access_key_id: str | None  # only to name it in error messages; the secret is never kept

    def describe(self) -> str:
        return self.endpoint_url or "AWS S3 (no AWS_ENDPOINT_URL set)"


def s3_settings(env: Mapping[str, str] | None = None) -> S3Settings:
    """Read the endpoint and region from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    endpoint = next((env[name] for name in ENDPOINT_VARS if env.get(name)), None)
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    return S3Settings(endpoint_url=endpoint, region=region, access_key_id=env.get("AWS_ACCESS_KEY_ID"))


def s3_client(settings: S3Settings | None = None, connect_timeout: float = 5.0, attempts: int = 2) -> Any:
    """A boto3 S3 client with short connect timeouts, so an unreachable endpoint fails in seconds."""
    try:
        import boto3
        from botocore.config import Config as BotoConfig
    except ImportError as exc:  # pragma: no cover - boto3 comes with the `data` extra
        raise StorageError("S3 needs boto3: pip install 'texinspect[data]'") from exc
    settings = settings or s3_settings()
    config = BotoConfig(
        connect_timeout=connect_timeout,
        read_timeout=60,
        retries={"max_attempts": attempts, "mode": "standard"},
        s3={"addressing_style": "path"} if settings.endpoint_url else {},
    )
    # A new session each time: boto3's default session caches credentials from the first call,
    # so rotated keys (or a test's monkeypatched ones) would otherwise be ignored.
    session = boto3.session.Session()
    return session.client(
        "s3", endpoint_url=settings.endpoint_url, region_name=settings.region, config=config
    )


def is_s3_uri(uri: str | os.PathLike[str]) -> bool:
    return str(uri).startswith("s3://")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix"); the prefix has no leading slash."""
    if not is_s3_uri(uri):
        raise StorageError(f"'{uri}' is not an S3 URI (expected s3://bucket/prefix)")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise StorageError(f"'{uri}' names no bucket (expected s3://bucket/prefix)")
    return bucket, key.strip("/")


def explain(exc: Exception, what: str, settings: S3Settings) -> StorageError:
    """Turn a botocore exception into a StorageError that says what to check."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    where = settings.describe()
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        return StorageError(
            f"cannot reach the S3 endpoint {where} while accessing {what}: {exc}. "
            "Check AWS_ENDPOINT_URL and that the object store is running."
        )
    if isinstance(exc, ReadTimeoutError):
        return StorageError(f"the S3 endpoint {where} stopped answering while accessing {what}: {exc}")
    if isinstance(exc, NoCredentialsError):
        return StorageError(
            f"no S3 credentials for {what} at {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in _CREDENTIAL_CODES or status == "403":
            key = settings.access_key_id or "<unset>"
            return StorageError(
                f"the S3 endpoint {where} refused the credentials for {what} ({code or status}: "
                f"{error.get('Message', '')}). Check AWS_ACCESS_KEY_ID (now {key}) and AWS_SECRET_ACCESS_KEY."
            )
        if code in _MISSING_CODES or status == "404":
            return StorageError(f"{what} does not exist at {where} ({code or status})")
        return StorageError(f"S3 error for {what} at {where}: {code or status} {error.get('Message', '')}")
    return StorageError(f"S3 error for {what} at {where}: {exc}")


def _boto_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def list_objects(
    uri: str, client: Any = None, settings: S3Settings | None = None
) -> dict[str, dict[str, Any]]:
    """Keys under the prefix of ``uri`` (relative to it) -> {"size", "etag"}."""
    settings = settings or s3_settings()
    client = client or s3_client(settings)
    bucket, prefix = parse_s3_uri(uri)
    base = f"{prefix}/" if prefix else ""
    found: dict[str, dict[str, Any]] = {}
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
            for item in page.get("Contents", []):
                rel = item["Key"][len(base) :]
                if rel and not rel.endswith("/"):
                    found[rel] = {"size": int(item["Size"]), "etag": str(item.get("ETag", "")).strip('"')}
    except _boto_errors() as exc:
        raise explain(exc, uri, settings) from exc
    return found


def upload_files(client: Any, root: Path, files: list[Path], bucket: str, prefix: str, settings: Any) -> None:
    """Upload ``files`` (under ``root``) to ``s3://bucket/prefix/<path relative to root>``, in order;
    a failure names the object and, for S3 errors, the endpoint and what to check."""
    for path in files:
        rel = path.relative_to(root).as_posix()
        key = f"{prefix}/{rel}" if prefix else rel
        try:
            client.upload_file(str(path), bucket, key)
        except _boto_errors() as exc:
            raise explain(exc, f"s3://{bucket}/{key}", settings) from exc
        except Exception as exc:  # boto3's S3UploadFailedError wraps the ClientError
            cause = exc.__cause__ or exc.__context__
            if cause is not None and isinstance(cause, _boto_errors()):
                raise explain(cause, f"s3://{bucket}/{key}", settings) from exc
            raise StorageError(f"upload of {path} to s3://{bucket}/{key} failed: {exc}") from exc


def upload_dir(local_dir: str | Path, uri: str, client: Any = None) -> int:
    """Copy every file under ``local_dir`` to ``uri`` (keys keep relative paths); returns the count.

    ``model.yaml`` and other top-level cards go last, so a reader that waits for the card never
    sees weights missing.
    """
    src = Path(local_dir)
    if not src.is_dir():
        raise StorageError(f"{src}: not a folder, nothing to upload")
    settings = s3_settings()
    client = client or s3_client(settings)
    bucket, prefix = parse_s3_uri(uri)
    files = sorted((p for p in src.rglob("*") if p.is_file()), key=lambda p: (p.suffix == ".yaml", str(p)))
    upload_files(client, src, files, bucket, prefix, settings)
    log.info("uploaded %d files from %s to %s", len(files), src, uri)
    return len(files)


def download_prefix(uri: str, dest: str | Path, overwrite: bool = False, client: Any = None) -> Path:
    """Copy every object under ``uri`` into ``dest``, atomically: all of it or nothing.

    Objects land in a temporary sibling folder first; only when the last one arrived is it renamed
    to ``dest``. A failure (unreachable endpoint, wrong credentials, missing prefix) removes the
    temporary folder and leaves ``dest`` as it was.
    """
    settings = s3_settings()
    client = client or s3_client(settings)
    target = Path(dest)
    if target.exists() and not overwrite:
        raise StorageError(f"{target} already exists (pass overwrite=True to replace it)")
    objects = list_objects(uri, client, settings)
    if not objects:
        raise StorageError(f"no objects under {uri} at {settings.describe()}")
    bucket, prefix = parse_s3_uri(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        for rel in sorted(objects):
            key = f"{prefix}/{rel}" if prefix else rel
            out = partial / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                client.download_file(bucket, key, str(out))
            except _boto_errors() as exc:
                raise explain(exc, f"s3://{bucket}/{key}", settings) from exc
        manifest = {"uri": uri, "endpoint": settings.endpoint_url, "objects": objects}
        (partial / SOURCE_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if target.exists():
            shutil.rmtree(target)
        partial.replace(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log.info("downloaded %d objects from %s to %s", len(objects), uri, target)
    return target


def cache_dir() -> Path:
    """Where downloaded models are kept (``TEXINSPECT_CACHE`` or ``~/.cache/texinspect``)."""
    root = os.environ.get("TEXINSPECT_CACHE") or Path.home() / ".cache" / "texinspect"
    return Path(root) / "models"


def fetch_model(uri: str | os.PathLike[str], dest: str | Path | None = None, required: Sequence[str] = ()) -> Path:
    """A local copy of the model folder at ``uri``, which must hold the ``required`` files.

    ``uri`` may be a local folder (returned as is) or ``s3://bucket/prefix`` (downloaded, and
    reused while the objects' ETags are unchanged). MLflow URIs are resolved one level up, by
    :func:`texinspect.serving.model_uri.resolve_model_uri`, which knows the tracking server.
    ``required`` is what makes a folder a model (the artifact's ``model.yaml`` and ``weights.pt``):
    a prefix without them is refused and its download removed.
    """
    text = str(uri)
    if not is_s3_uri(text):
        path = Path(text)
        if not path.is_dir():
            raise StorageError(f"model folder {path} does not exist (expected a folder or s3://)")
        return path
    target = Path(dest) if dest is not None else cache_dir() / hashlib.sha256(text.encode()).hexdigest()[:16]
    settings = s3_settings()
    client = s3_client(settings)
    source = target / SOURCE_FILE
    if source.is_file():
        try:
            previous = json.loads(source.read_text())
        except (OSError, json.JSONDecodeError):
            previous = {}
        if previous.get("uri") == text and previous.get("objects") == list_objects(text, client, settings):
            log.info("model %s unchanged since the last download: using %s", text, target)
            _check_model_folder(target, text, required)
            return target
    download_prefix(text, target, overwrite=True, client=client)
    try:
        _check_model_folder(target, text, required)
    except StorageError:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def _check_model_folder(folder: Path, uri: str, required: Sequence[str]) -> None:
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        raise StorageError(
            f"{uri} is not a texinspect model folder: {', '.join(missing)} missing "
            f"(point at the prefix that holds {' and '.join(required)})"
        )
