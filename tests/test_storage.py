"""texinspect.storage against a real S3 server (SeaweedFS on loopback, see tests/s3_server.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tests.s3_server import SeaweedS3, free_ports, s3_bucket_fixture, s3_env_fixture, seaweed_s3_fixture  # noqa: F401

from texinspect import storage
from texinspect.models.artifact import CARD_FILE, WEIGHTS_FILE
from texinspect.storage import StorageError

MODEL_FILES = (CARD_FILE, WEIGHTS_FILE)  # what makes a downloaded prefix a model folder


def _folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "model.yaml").write_text("family: fake\n")
    (root / "weights.pt").write_bytes(bytes(range(256)) * 64)
    (root / "sub" / "notes.txt").write_text("nested file\n")
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.name != storage.SOURCE_FILE
    }


def test_settings_come_from_the_environment() -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://store:9000",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "K",
    }
    settings = storage.s3_settings(env)
    assert settings.endpoint_url == "http://store:9000"
    assert settings.region == "eu-west-1"
    assert storage.s3_settings({"MLFLOW_S3_ENDPOINT_URL": "http://m:1"}).endpoint_url == "http://m:1"
    specific = {"AWS_ENDPOINT_URL_S3": "http://s3only:1", "AWS_ENDPOINT_URL": "http://general:2"}
    assert storage.s3_settings(specific).endpoint_url == "http://s3only:1"
    assert storage.s3_settings({}).endpoint_url is None
    assert storage.s3_settings({}).region == storage.DEFAULT_REGION


def test_parse_s3_uri() -> None:
    assert storage.parse_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b")
    assert storage.parse_s3_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(StorageError, match="not an S3 URI"):
        storage.parse_s3_uri("/local/path")
    with pytest.raises(StorageError, match="names no bucket"):
        storage.parse_s3_uri("s3:///key")


def test_upload_then_download_round_trips(s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path) -> None:
    src = _folder(tmp_path / "src")
    uri = f"s3://{s3_bucket}/models/v1"
    assert storage.upload_dir(src, uri) == 3
    assert s3_env.keys(s3_bucket) == [
        "models/v1/model.yaml",
        "models/v1/sub/notes.txt",
        "models/v1/weights.pt",
    ]
    listed = storage.list_objects(uri)
    assert set(listed) == {"model.yaml", "sub/notes.txt", "weights.pt"}
    assert listed["weights.pt"]["size"] == 256 * 64
    out = storage.download_prefix(uri, tmp_path / "out")
    assert _files(out) == _files(src)
    manifest = json.loads((out / storage.SOURCE_FILE).read_text())
    assert manifest["uri"] == uri and manifest["endpoint"] == s3_env.endpoint


def test_download_refuses_to_overwrite_unless_asked(
    s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path
) -> None:
    uri = f"s3://{s3_bucket}/m"
    storage.upload_dir(_folder(tmp_path / "src"), uri)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    with pytest.raises(StorageError, match="already exists"):
        storage.download_prefix(uri, tmp_path / "out")
    storage.download_prefix(uri, tmp_path / "out", overwrite=True)
    assert not (tmp_path / "out" / "old.txt").exists()
    assert (tmp_path / "out" / "weights.pt").is_file()


def test_wrong_secret_is_a_clear_error(
    s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"s3://{s3_bucket}/m"
    storage.upload_dir(_folder(tmp_path / "src"), uri)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(StorageError, match="refused the credentials") as info:
        storage.download_prefix(uri, tmp_path / "out")
    assert "AWS_SECRET_ACCESS_KEY" in str(info.value)
    assert s3_env.access_key in str(info.value)  # names the key id that was used, never the secret
    assert "not-the-secret" not in str(info.value)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.glob(".out.partial-*")) == []
    with pytest.raises(StorageError, match="refused the credentials"):
        storage.upload_dir(tmp_path / "src", f"s3://{s3_bucket}/other")


def test_unreachable_endpoint_is_a_clear_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (closed,) = free_ports(1)  # nothing listens here
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "K")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "S")
    t0 = time.monotonic()
    with pytest.raises(StorageError, match="cannot reach the S3 endpoint") as info:
        storage.download_prefix("s3://bucket/model", tmp_path / "out")
    assert time.monotonic() - t0 < 30
    assert "AWS_ENDPOINT_URL" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no folder, complete or partial
    with pytest.raises(StorageError, match="cannot reach the S3 endpoint"):
        storage.fetch_model("s3://bucket/model", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_failure_midway_removes_the_partial_copy(s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path) -> None:
    uri = f"s3://{s3_bucket}/m"
    storage.upload_dir(_folder(tmp_path / "src"), uri)

    class FailingClient:
        """Lists for real, then loses the connection after the first object."""

        def __init__(self) -> None:
            self.real = s3_env.client()
            self.calls = 0

        def get_paginator(self, name: str):  # noqa: ANN201
            return self.real.get_paginator(name)

        def download_file(self, bucket: str, key: str, filename: str) -> None:
            self.calls += 1
            if self.calls > 1:
                from botocore.exceptions import EndpointConnectionError

                raise EndpointConnectionError(endpoint_url=s3_env.endpoint)
            self.real.download_file(bucket, key, filename)

    with pytest.raises(StorageError, match="cannot reach"):
        storage.download_prefix(uri, tmp_path / "out", client=FailingClient())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_missing_prefix_and_bucket(s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no objects under"):
        storage.download_prefix(f"s3://{s3_bucket}/nothing-here", tmp_path / "out")
    with pytest.raises(StorageError, match="does not exist"):
        storage.list_objects("s3://no-such-bucket-texinspect/x")


def test_fetch_model_downloads_once_and_refreshes_on_change(
    s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path
) -> None:
    src = _folder(tmp_path / "src")
    uri = f"s3://{s3_bucket}/registry/model"
    storage.upload_dir(src, uri)
    cache = tmp_path / "cache"
    first = storage.fetch_model(uri, cache)
    assert _files(first) == _files(src)
    marker = first / "local-marker"
    marker.write_text("kept while the remote is unchanged")
    assert storage.fetch_model(uri, cache) == first and marker.exists()
    (src / "weights.pt").write_bytes(b"new weights")
    storage.upload_dir(src, uri)
    again = storage.fetch_model(uri, cache)
    assert (again / "weights.pt").read_bytes() == b"new weights"
    assert not marker.exists()


def test_fetch_model_rejects_a_prefix_without_a_model(
    s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "readme.txt").write_text("not a model")
    storage.upload_dir(tmp_path / "src", f"s3://{s3_bucket}/notamodel")
    with pytest.raises(StorageError, match="model.yaml, weights.pt missing"):
        storage.fetch_model(f"s3://{s3_bucket}/notamodel", tmp_path / "cache", required=MODEL_FILES)
    assert not (tmp_path / "cache").exists()


def test_fetch_model_passes_local_folders_through(tmp_path: Path) -> None:
    assert storage.fetch_model(tmp_path) == tmp_path
    with pytest.raises(StorageError, match="does not exist"):
        storage.fetch_model(tmp_path / "missing", required=MODEL_FILES)
