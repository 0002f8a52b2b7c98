"""data.dvc on a fresh clone, and `dvc push`/`pull` through the local and the S3 remote.

The S3 remote is the one configured in .dvc/config (`s3`, bucket texinspect-dvc), pointed at a
real SeaweedFS server on 127.0.0.1 by environment variables only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from tests.dvc.dvc_repo import DvcRepo
from tests.s3_server import SeaweedS3, free_ports, seaweed_s3_fixture  # noqa: F401

from texinspect.tracking.provenance import dvc_dir_hash


@pytest.fixture(scope="module")
def data_repo(tmp_path_factory: pytest.TempPathFactory) -> DvcRepo:
    """A clone with data/ recreated by the documented command (shared: nothing here changes it)."""
    repo = DvcRepo.clone(tmp_path_factory.mktemp("dvc-data"))
    repo.make_sample_data()
    return repo


def _wipe_local(repo: DvcRepo) -> None:
    shutil.rmtree(repo.root / "data", ignore_errors=True)
    shutil.rmtree(repo.root / ".dvc" / "cache", ignore_errors=True)


def test_data_dvc_matches_the_sample_dataset_on_a_fresh_clone(data_repo: DvcRepo) -> None:
    recorded = yaml.safe_load((data_repo.root / "data.dvc").read_text())["outs"][0]
    workspace = dvc_dir_hash(data_repo.root / "data")
    assert (workspace["md5"], workspace["nfiles"], workspace["size"]) == (
        recorded["md5"],
        recorded["nfiles"],
        recorded["size"],
    )
    # DVC agrees: the workspace is not "modified", it is only not in this new clone's cache yet
    status = json.loads(data_repo.dvc("status", "--json", "data.dvc").stdout or "{}")
    assert status in ({}, {"data.dvc": [{"changed outs": {"data": "not in cache"}}]}), status


def test_push_and_pull_through_the_default_local_remote(data_repo: DvcRepo) -> None:
    remote = data_repo.root.parent / "texinspect-dvc-remote"  # ../../ from .dvc/, i.e. beside the repo
    data_repo.dvc("commit", "-f", "data.dvc")  # the clone's cache gets the data
    data_repo.dvc("push", "data.dvc")
    assert remote.is_dir() and any(p.is_file() for p in remote.rglob("*"))
    expected = dvc_dir_hash(data_repo.root / "data")
    _wipe_local(data_repo)
    data_repo.dvc("pull", "data.dvc")
    assert dvc_dir_hash(data_repo.root / "data") == expected


def _s3_env(server: SeaweedS3, secret: str | None = None) -> dict[str, str]:
    return server.env(secret_key=secret)


def test_s3_remote_round_trip_wrong_credentials_and_unreachable_endpoint(
    tmp_path: Path, seaweed_s3: SeaweedS3
) -> None:
    repo = DvcRepo.clone(tmp_path)
    repo.make_sample_data()
    repo.dvc("commit", "-f", "data.dvc")
    seaweed_s3.create_bucket("texinspect-dvc")
    prefix = "cache/"
    before = set(seaweed_s3.keys("texinspect-dvc", prefix))

    # unreachable endpoint: a clear error, and the remote is not recorded as having the data
    (closed,) = free_ports(1)
    unreachable = {**_s3_env(seaweed_s3), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed}"}
    failed = repo.dvc("push", "-r", "s3", "data.dvc", env=unreachable, check=False)
    assert failed.returncode != 0
    assert f"127.0.0.1:{closed}" in failed.output and "connect" in failed.output.lower(), failed.output
    status = repo.dvc("status", "-c", "-r", "s3", "data.dvc", env=_s3_env(seaweed_s3))
    assert "new:" in status.output and "data" in status.output, status.output

    # wrong secret: refused, with a message naming the cause
    denied = repo.dvc("push", "-r", "s3", "data.dvc", env=_s3_env(seaweed_s3, "wrong-secret"), check=False)
    assert denied.returncode != 0
    assert any(
        word in denied.output for word in ("403", "Forbidden", "SignatureDoesNotMatch", "AccessDenied")
    ), denied.output
    assert set(seaweed_s3.keys("texinspect-dvc", prefix)) == before

    # the real thing: push, wipe, pull, same bytes
    pushed = repo.dvc("push", "-r", "s3", "data.dvc", env=_s3_env(seaweed_s3))
    assert "pushed" in pushed.output
    assert len(set(seaweed_s3.keys("texinspect-dvc", prefix)) - before) >= 85
    expected = dvc_dir_hash(repo.root / "data")
    _wipe_local(repo)
    failed_pull = repo.dvc(
        "pull", "-r", "s3", "data.dvc", env=_s3_env(seaweed_s3, "wrong-secret"), check=False
    )
    assert failed_pull.returncode != 0 and not (repo.root / "data").exists()
    repo.dvc("pull", "-r", "s3", "data.dvc", env=_s3_env(seaweed_s3))
    assert dvc_dir_hash(repo.root / "data") == expected
    assert "in sync" in repo.dvc("status", "-c", "-r", "s3", "data.dvc", env=_s3_env(seaweed_s3)).output
