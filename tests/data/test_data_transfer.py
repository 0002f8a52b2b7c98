"""Issue 19 (3, 7): ``texinspect data push`` / ``pull`` against a real S3 server (SeaweedFS), and the
content hash that keys the pipeline's cache by what the dataset holds, not by its URI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.s3_server import s3_bucket_fixture, s3_env_fixture, seaweed_s3_fixture  # noqa: F401

from texinspect.cli import main as data_main
from texinspect.data.sample import make_sample_dataset
from texinspect.data.transfer import DATASET_MANIFEST, content_hash, pull, push
from texinspect.storage import StorageError


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    make_sample_dataset(root, n_train=4, n_test_good=2, n_test_defect_per_type=1, size=32, seed=3)
    return root


def test_content_hash_follows_the_bytes_not_the_place(dataset: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "elsewhere"
    shutil.copytree(dataset, copy)
    assert content_hash(copy) == content_hash(dataset)
    first = sorted((copy / "train" / "good").iterdir())[0]
    first.write_bytes(first.read_bytes() + b"\0")
    assert content_hash(copy) != content_hash(dataset)
    first.rename(first.with_name("renamed.png"))
    assert content_hash(copy) != content_hash(dataset)


def test_push_then_pull_round_trips_with_the_hash(
    s3_env: object, s3_bucket: str, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"s3://{s3_bucket}/magnetic_tile"
    assert data_main(["data", "push", str(dataset), uri]) == 0
    digest = content_hash(dataset)
    assert digest in capsys.readouterr().out
    assert data_main(["data", "pull", uri, str(tmp_path / "back")]) == 0
    assert digest in capsys.readouterr().out
    assert content_hash(tmp_path / "back") == digest
    assert json.loads((tmp_path / "back" / DATASET_MANIFEST).read_text())["content_hash"] == digest


def test_push_leaves_exactly_the_folder_under_the_prefix(
    seaweed_s3: object, s3_env: object, s3_bucket: str, dataset: Path, tmp_path: Path
) -> None:
    uri = f"s3://{s3_bucket}/ds"
    push(dataset, uri)
    removed = sorted((dataset / "train" / "good").iterdir())[0]
    removed.unlink()
    result = push(dataset, uri)
    assert result.removed == 1
    keys = set(seaweed_s3.keys(s3_bucket, "ds/"))
    assert f"ds/train/good/{removed.name}" not in keys and f"ds/{DATASET_MANIFEST}" in keys
    folder, digest = pull(uri, tmp_path / "again")
    assert digest == content_hash(dataset) == result.content_hash


def test_pull_detects_a_prefix_edited_behind_the_manifest(
    seaweed_s3: object, s3_env: object, s3_bucket: str, dataset: Path, tmp_path: Path
) -> None:
    push(dataset, f"s3://{s3_bucket}/ds")
    seaweed_s3.client().put_object(Bucket=s3_bucket, Key="ds/train/good/extra.png", Body=b"not the pushed data")
    with pytest.raises(StorageError, match="edited without `texinspect data push`"):
        pull(f"s3://{s3_bucket}/ds", tmp_path / "x")


def test_push_refuses_a_folder_that_is_not_a_dataset(s3_env: object, s3_bucket: str, tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("hello")
    with pytest.raises(StorageError, match="not a clean dataset"):
        push(tmp_path / "notes", f"s3://{s3_bucket}/x")


def test_push_with_wrong_credentials_names_the_variables(
    seaweed_s3: object, monkeypatch: pytest.MonkeyPatch, s3_bucket: str, dataset: Path
) -> None:
    for key, value in seaweed_s3.env(secret_key="wrong").items():
        monkeypatch.setenv(key, value)
    with pytest.raises(StorageError, match="AWS_SECRET_ACCESS_KEY"):
        push(dataset, f"s3://{s3_bucket}/x")
