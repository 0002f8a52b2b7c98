"""``texinspect register`` on the command line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.s3_server import free_ports
from tests.tracking.conftest import FakeRun

from texinspect.cli import tracking as tracking_cli
from texinspect.config import Config
from texinspect.tracking import TrackingUnavailable


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="texinspect")
    tracking_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def _sets(config: Config) -> list[str]:
    t = config.tracking
    return [
        "--set",
        f"tracking.tracking_uri={t.tracking_uri}",
        "--set",
        f"tracking.artifact_location={t.artifact_location}",
        "--set",
        f"tracking.experiment={t.experiment}",
        "--set",
        f"tracking.registered_model={t.registered_model}",
        "--set",
        f"data.root={config.data.root}",
    ]


def test_register_logs_gates_and_reports(
    tracking_config: Config,
    fake_run: Callable[..., FakeRun],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = fake_run("good", image_auroc=0.85)
    out = tmp_path / "decision.json"
    assert (
        _run_cli(
            [
                "register",
                "--run",
                str(good.run_dir),
                "--metrics",
                str(good.metrics_path),
                "--out",
                str(out),
                *_sets(tracking_config),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "promoted to champion" in printed
    result = json.loads(out.read_text())
    assert result["gate"]["promoted"] is True and result["gate"]["version"] == "1" and result["run_id"]

    worse = fake_run("worse", image_auroc=0.6)
    assert (
        _run_cli(
            [
                "register",
                "--run",
                str(worse.run_dir),
                "--metrics",
                str(worse.metrics_path),
                "--out",
                str(out),
                *_sets(tracking_config),
            ]
        )
        == 0
    )
    assert "not promoted" in capsys.readouterr().out
    assert json.loads(out.read_text())["gate"]["champion_version"] == "1"


def test_register_without_a_server_is_an_error_naming_it(
    tracking_config: Config, fake_run: Callable[..., FakeRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    fr = fake_run()
    (port,) = free_ports(1)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    with pytest.raises(TrackingUnavailable, match=f"127.0.0.1:{port} is not reachable"):
        _run_cli(["register", "--run", str(fr.run_dir), *_sets(tracking_config)])
    assert (fr.model_dir / "weights.pt").is_file()


def test_register_no_gate_only_logs(
    tracking_config: Config, fake_run: Callable[..., FakeRun], capsys: pytest.CaptureFixture[str]
) -> None:
    fr = fake_run()
    assert _run_cli(["register", "--run", str(fr.run_dir), "--no-gate", *_sets(tracking_config)]) == 0
    printed = capsys.readouterr().out
    assert "logged" in printed and "champion" not in printed
