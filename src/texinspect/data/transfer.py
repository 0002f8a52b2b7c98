"""``texinspect data push DIR s3://bucket/prefix`` and ``data pull``: a dataset to and from S3.

The pipeline imports its dataset from S3 (``data_uri``), so something has to put it there: push
checks the folder is a dataset (MVTec layout), uploads it with boto3 (the client, endpoint and
credential variables of :mod:`texinspect.storage`, as everything else), removes objects under the prefix
that the folder no longer has (so the pipeline never imports a mix of old and new data), and
writes ``.texinspect-dataset.json`` there last, with the folder's content hash. Pull downloads a
prefix atomically and checks that hash.

The content hash (:func:`content_hash`) is also what the pipeline's ``dataset-fingerprint`` step
computes, so new data behind the same URI gets a new cache key and the same data is cached.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from texinspect.data.check import check_dataset
from texinspect.storage import (
    SOURCE_FILE,
    StorageError,
    _boto_errors,
    download_prefix,
    explain,
    list_objects,
    parse_s3_uri,
    s3_client,
    s3_settings,
    upload_files,
)

log = logging.getLogger(__name__)

DATASET_MANIFEST = ".texinspect-dataset.json"  # at the prefix root: hash and file count
IGNORED = frozenset({SOURCE_FILE, DATASET_MANIFEST})  # bookkeeping, not data


def dataset_files(folder: str | Path) -> list[Path]:
    """Every data file under ``folder`` (bookkeeping files left out), sorted by relative path."""
    root = Path(folder)
    return sorted(
        (p for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() not in IGNORED),
        key=lambda p: p.relative_to(root).as_posix(),
    )


def content_hash(folder: str | Path) -> str:
    """SHA-256 over every file's relative path and bytes: equal iff the datasets are equal."""
    root = Path(folder)
    if not root.is_dir():
        raise StorageError(f"{root}: not a folder, no dataset to hash")
    total = hashlib.sha256()
    for path in dataset_files(root):
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        total.update(f"{path.relative_to(root).as_posix()}\0{digest.hexdigest()}\n".encode())
    return f"sha256:{total.hexdigest()}"


@dataclass(frozen=True)
class PushResult:
    uri: str
    files: int
    removed: int
    content_hash: str


def push(folder: str | Path, uri: str, check: bool = True, client: Any = None) -> PushResult:
    """Upload ``folder`` to ``uri`` so the prefix holds exactly the folder, then the manifest."""
    root = Path(folder)
    if check:
        report = check_dataset(root)
        if not report.ok:
            raise StorageError(
                f"{root} is not a clean dataset, not pushed (see `texinspect data check {root}`; "
                f"--no-check pushes anyway):\n{report.summary(max_problems=10)}"
            )
    settings = s3_settings()
    client = client or s3_client(settings)
    bucket, prefix = parse_s3_uri(uri)
    digest = content_hash(root)
    local = {p.relative_to(root).as_posix() for p in dataset_files(root)}
    stale = sorted(set(list_objects(uri, client, settings)) - local - {DATASET_MANIFEST})
    # the manifest goes first (deleted) and last (written): a half push has no manifest
    _delete(client, bucket, prefix, [DATASET_MANIFEST, *stale], settings)
    count = _upload(client, root, bucket, prefix, settings)
    manifest = {"content_hash": digest, "files": count}
    key = f"{prefix}/{DATASET_MANIFEST}" if prefix else DATASET_MANIFEST
    try:
        client.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest, indent=2).encode())
    except _boto_errors() as exc:
        raise explain(exc, f"s3://{bucket}/{key}", settings) from exc
    log.info("pushed %s to %s (%d files, %d stale removed, %s)", root, uri, count, len(stale), digest)
    return PushResult(uri=uri, files=count, removed=len(stale), content_hash=digest)


def _upload(client: Any, root: Path, bucket: str, prefix: str, settings: Any) -> int:
    files = dataset_files(root)
    upload_files(client, root, files, bucket, prefix, settings)
    return len(files)


def _delete(client: Any, bucket: str, prefix: str, rels: list[str], settings: Any) -> None:
    keys = [f"{prefix}/{rel}" if prefix else rel for rel in rels]
    for start in range(0, len(keys), 1000):  # the S3 API's batch limit
        batch = [{"Key": k} for k in keys[start : start + 1000]]
        try:
            client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        except _boto_errors() as exc:
            raise explain(exc, f"s3://{bucket}/{prefix}", settings) from exc


def pull(uri: str, dest: str | Path, overwrite: bool = False, client: Any = None) -> tuple[Path, str]:
    """Download ``uri`` into ``dest`` (all or nothing); returns (folder, content hash).

    When the prefix has a push manifest, the downloaded files must hash to it.
    """
    target = download_prefix(uri, dest, overwrite=overwrite, client=client)
    digest = content_hash(target)
    manifest_path = target / DATASET_MANIFEST
    if manifest_path.is_file():
        expected = json.loads(manifest_path.read_text()).get("content_hash")
        if expected and expected != digest:
            raise StorageError(
                f"{uri}: the files hash to {digest} but {DATASET_MANIFEST} says {expected}: "
                "the prefix changed during the pull or was edited without `texinspect data push`"
            )
    return target, digest
