"""The team setup on one machine: `mlflow/serve.sh` with S3 artifacts (SeaweedFS), used over HTTP.

Starts the real MLflow server (SQLite backend, ``--artifacts-destination s3://...``) on a free
loopback port through the repository's script, logs and registers runs through it with
``MLFLOW_TRACKING_URI`` only (clients hold no S3 keys: the server proxies artifacts), checks the
objects landed in the bucket, then kills the server in the middle of a run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.s3_server import SeaweedS3, free_ports
from tests.tracking.conftest import FakeRun

from texinspect import tracking
from texinspect.config import Config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BUCKET = "mlflow-artifacts"


@dataclass
class Server:
    uri: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session: the server and its workers
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def mlflow_server(
    tmp_path_factory: pytest.TempPathFactory, seaweed_s3: SeaweedS3, mlflow_db_template: Path
) -> Iterator[Server]:
    seaweed_s3.create_bucket(BUCKET)
    work = tmp_path_factory.mktemp("mlflow-server")
    shutil.copyfile(mlflow_db_template, work / "server.db")
    (port,) = free_ports(1)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))},
        **seaweed_s3.env(),
        "MLFLOW_PORT": str(port),
        "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{work / 'server.db'}",
        "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{BUCKET}/mlartifacts",
    }
    log = work / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(REPO / "mlflow" / "serve.sh")],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow/serve.sh exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(server.uri + "/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        server.stop()
        pytest.fail(f"MLflow server did not answer within 240 s:\n{log.read_text()[-3000:]}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client_env(mlflow_server: Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A client that knows only the server's URL (no S3 endpoint or keys)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    return mlflow_server.uri


def test_runs_and_registry_through_the_server_with_s3_artifacts(
    client_env: str,
    tracking_config: Config,
    fake_run: Callable[..., FakeRun],
    seaweed_s3: SeaweedS3,
    tmp_path: Path,
) -> None:
    first = fake_run("first", image_auroc=0.8)
    run1 = tracking.track_training_run(tracking_config, first.run_dir, first.model_dir, first.metrics_path)
    assert run1 is not None
    assert json.loads((first.run_dir / tracking.RUN_FILE).read_text())["tracking_uri"] == client_env
    assert tracking.register_and_gate(run1, first.metrics_path, tracking_config).promoted
    worse = fake_run("worse", image_auroc=0.6)
    run2 = tracking.track_training_run(tracking_config, worse.run_dir, worse.model_dir, worse.metrics_path)
    decision = tracking.register_and_gate(run2, worse.metrics_path, tracking_config)
    assert not decision.promoted and decision.champion_version == "1"
    # artifacts are objects in the bucket, written by the server
    keys = seaweed_s3.keys(BUCKET, "mlartifacts/")
    assert any(k.endswith("evaluation/metrics.json") for k in keys)
    assert any(k.endswith("run/checkpoints/phase1_end.pt") for k in keys)
    assert any(k.endswith("artifacts/model/weights.pt") for k in keys)
    # and the champion comes back through the server for serving
    folder = tracking.download_model(
        tracking.champion_uri(tracking_config), tmp_path / "served", tracking_config
    )
    assert (folder / "weights.pt").read_bytes() == (first.model_dir / "weights.pt").read_bytes()


def test_server_dying_midway_leaves_training_running(
    client_env: str, mlflow_server: Server, tracking_config: Config, tmp_path: Path
) -> None:
    run_dir = tmp_path / "midway"
    with tracking.run(tracking_config, "midway", run_dir=run_dir) as tr:
        assert tr.online
        tr.log_losses("phase1", 1, {"loss": 1.0})
        mlflow_server.stop()
        t0 = time.monotonic()
        for step in range(2, 6):
            tr.log_losses("phase1", step, {"loss": 1.0 / step})
        (run_dir / "model").mkdir()
        (run_dir / "model" / "weights.pt").write_bytes(b"kept")
        assert tr.log_model(run_dir / "model") is None
        assert time.monotonic() - t0 < 60
    assert not tr.online
    note = json.loads((run_dir / tracking.OFFLINE_FILE).read_text())
    assert note["run_id"] == tr.run_id and note["tracking_uri"] == client_env
    assert "model" in note["not_logged"]
    assert (run_dir / "model" / "weights.pt").read_bytes() == b"kept"
