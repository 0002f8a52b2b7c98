"""An unreachable tracking server: training finishes, says so, and loses no files."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from tests.s3_server import free_ports
from tests.tracking.conftest import FakeRun
from torch import nn

from texinspect import tracking
from texinspect.config import Config
from texinspect.training.checkpoint import Checkpointer
from texinspect.training.loop import run_phase


@pytest.fixture
def dead_server(monkeypatch: pytest.MonkeyPatch) -> str:
    """MLFLOW_TRACKING_URI pointing at a loopback port nobody listens on."""
    (port,) = free_ports(1)
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def _tiny_training(out: Path, on_log: Callable[[str, int, dict[str, float]], None]) -> int:
    """A real run_phase over a one-parameter model: what a trainer does with on_log."""
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(batch: torch.Tensor) -> dict[str, float]:
        opt.zero_grad()
        loss = (model(batch) - 1.0).pow(2).mean()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    def batches(start: int) -> Iterator[torch.Tensor]:
        while True:
            yield torch.ones(4, 1)

    result = run_phase(
        "phase1",
        step,
        batches,
        {"m": model},
        {"sgd": opt},
        Checkpointer(out / "checkpoints"),
        max_steps=12,
        checkpoint_every=6,
        log_every=3,
        progress=False,
        on_log=on_log,
    )
    return result.steps


def test_training_finishes_when_the_server_is_unreachable(
    tracking_config: Config, tmp_path: Path, dead_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING), tracking.run(tracking_config, "offline", run_dir=run_dir) as tr:
        steps = _tiny_training(run_dir, tr.log_losses)
        (run_dir / "model").mkdir()
        (run_dir / "model" / "weights.pt").write_bytes(b"weights")
        tr.log_artifacts(run_dir / "checkpoints", "checkpoints")
        assert tr.log_model(run_dir / "model") is None
    elapsed = time.monotonic() - t0
    assert steps == 12
    assert elapsed < 20, f"an unreachable server cost {elapsed:.1f} s"
    assert not tr.online and tr.run_id is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("offline" in w and dead_server in w for w in warnings), warnings
    assert len([w for w in warnings if "offline" in w]) == 1  # said once, not per step
    note = json.loads((run_dir / tracking.OFFLINE_FILE).read_text())
    assert dead_server in note["tracking_uri"] and "unreachable" in note["reason"]
    assert {"metrics", "model", "params"} <= set(note["not_logged"])
    assert note["retry"] == f"texinspect register --run {run_dir}"
    # nothing was lost: checkpoints and model are where training put them
    assert (run_dir / "checkpoints" / "phase1_end.pt").is_file()
    assert (run_dir / "model" / "weights.pt").read_bytes() == b"weights"


def test_track_training_run_offline_returns_none_and_registry_raises(
    tracking_config: Config, fake_run: Callable[..., FakeRun], dead_server: str
) -> None:
    fr = fake_run()
    t0 = time.monotonic()
    assert tracking.track_training_run(tracking_config, fr.run_dir, fr.model_dir, fr.metrics_path) is None
    assert (fr.run_dir / tracking.OFFLINE_FILE).is_file()
    assert (fr.model_dir / "weights.pt").is_file()
    with pytest.raises(tracking.TrackingUnavailable, match="unreachable"):
        tracking.register_and_gate("0" * 32, fr.metrics_path, tracking_config)
    assert time.monotonic() - t0 < 20


def test_offline_run_is_logged_later_with_the_same_folder(
    tracking_config: Config, fake_run: Callable[..., FakeRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    fr = fake_run()
    (port,) = free_ports(1)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    assert tracking.track_training_run(tracking_config, fr.run_dir, fr.model_dir, fr.metrics_path) is None
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the server is back (here: the SQLite store)
    run_id = tracking.track_training_run(tracking_config, fr.run_dir, fr.model_dir, fr.metrics_path)
    assert run_id is not None
    assert not (fr.run_dir / tracking.OFFLINE_FILE).exists()  # the note is gone once logged
    assert tracking.register_and_gate(run_id, fr.metrics_path, tracking_config).promoted


def test_store_failing_midway_switches_to_offline_without_raising(
    tracking_config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.WARNING), tracking.run(tracking_config, "midway", run_dir=run_dir) as tr:
        assert tr.online
        tr.log_losses("phase1", 1, {"loss": 1.0})

        def broken(*args: object, **kwargs: object) -> None:
            raise ConnectionError("connection reset by peer")

        tr.client.log_batch = broken  # the server goes away between two steps
        tr.log_losses("phase1", 2, {"loss": 0.5})
        tr.log_losses("phase1", 3, {"loss": 0.25})
        steps = _tiny_training(run_dir, tr.log_losses)
    assert steps == 12 and not tr.online
    note = json.loads((run_dir / tracking.OFFLINE_FILE).read_text())
    assert "connection reset by peer" in note["reason"] and note["run_id"] == tr.run_id
    assert sum("offline" in r.getMessage() for r in caplog.records) == 1


def test_history_is_completed_without_duplicates_after_a_connection_loss(
    tracking_config: Config, fake_run: Callable[..., FakeRun]
) -> None:
    from mlflow import MlflowClient

    fr = fake_run()
    with tracking.run(tracking_config, "partial", run_dir=fr.run_dir) as tr:
        tr.log_losses("phase1", 5, fr.history["phase1"][0])  # streamed live, then the link breaks

        def broken(*args: object, **kwargs: object) -> None:
            raise ConnectionError("connection reset by peer")

        tr.client.log_batch = broken
        tr.log_losses("phase1", 10, fr.history["phase1"][1])
    assert tracking.track_training_run(tracking_config, fr.run_dir, fr.model_dir) == tr.run_id
    history = MlflowClient(tracking_config.tracking.tracking_uri).get_metric_history(tr.run_id, "phase1/loss")
    assert sorted(int(m.step) for m in history) == [5, 10, 15]
    assert not (fr.run_dir / tracking.OFFLINE_FILE).exists()
