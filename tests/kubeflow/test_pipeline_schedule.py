"""Scheduled retraining through ``kfp.Client`` against a loopback server speaking the KFP v2beta1
REST API: the request body must carry the cron, one run at a time, no catch-up, and the compiled
caching (cache keys follow the dataset's content, issue 19)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from tests.kubeflow.fake_kfp import FakeKFP, kfp_host_fixture  # noqa: F401

from texinspect.cli.pipeline import add_parser
from texinspect.errors import ConfigError
from texinspect.kubeflow.schedule import check_cron, create_recurring_run, make_client

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "pipelines" / "cuda" / "texinspect-training.yaml"


def test_recurring_run_request(kfp_host: str) -> None:
    client = make_client(kfp_host)
    params = {"data_uri": "s3://datasets/tiles", "model": "fmrnet", "overrides": '{"train.batch_size": 16}'}
    run_id = create_recurring_run(
        client, PACKAGE, params, cron="0 30 2 * * *", service_account="pipeline-runner"
    )
    body = FakeKFP.recurring[run_id]
    assert body["display_name"] == "texinspect-retrain"
    assert body["trigger"] == {"cron_schedule": {"cron": "0 30 2 * * *"}}
    assert int(body["max_concurrency"]) == 1
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["service_account"] == "pipeline-runner"
    assert body["runtime_config"]["parameters"] == params
    spec = body["pipeline_spec"]
    assert spec["pipeline_spec"]["pipelineInfo"]["name"] == "texinspect-training"
    assert "kubernetes" in spec["platform_spec"]["platforms"]  # GPU tolerations, PVC, secrets travel along
    tasks = spec["pipeline_spec"]["root"]["dag"]["tasks"]
    # the same data is cached (the fingerprint feeds every key), new data retrains; the
    # fingerprint and the registry are never cached
    assert tasks["train-phase1"]["cachingOptions"].get("enableCache") is True
    assert not tasks["dataset-fingerprint"]["cachingOptions"].get("enableCache")
    assert not tasks["register-model"]["cachingOptions"].get("enableCache")
    assert FakeKFP.experiments[body["experiment_id"]]["display_name"] == "texinspect"

    # scheduling again replaces the recurring run of the same name, in the same experiment
    second = create_recurring_run(make_client(kfp_host), PACKAGE, params)
    assert FakeKFP.deleted == [run_id] and list(FakeKFP.recurring) == [second]
    assert len(FakeKFP.experiments) == 1


def test_schedule_command(kfp_host: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="texinspect")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["pipeline", "schedule", "--host", kfp_host, "--package", str(PACKAGE), "--data", "s3://d/x",
         "--model", "rbae", "--set", "train.batch_size=4", "--param", "max_minutes=30", "--name", "nightly"]
    )  # fmt: skip
    assert args.func(args) == 0
    (body,) = FakeKFP.recurring.values()
    assert body["display_name"] == "nightly"
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 0"
    parameters = body["runtime_config"]["parameters"]
    assert parameters["max_minutes"] == 30 and parameters["data_uri"] == "s3://d/x"
    assert json.loads(parameters["overrides"]) == {"train.batch_size": 4}
    assert "nightly" in capsys.readouterr().out
    bad = parser.parse_args(["pipeline", "schedule", "--host", kfp_host, "--data", "x", "--param", "nope=1"])
    with pytest.raises(ConfigError, match="'nope' is not a pipeline parameter"):
        bad.func(bad)


def test_schedule_input_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="6 with seconds first"):
        check_cron("0 3 * * 0")
    with pytest.raises(ConfigError, match="pipeline package not found"):
        create_recurring_run(object(), tmp_path / "none.yaml", {"data_uri": "x"})
    with pytest.raises(ConfigError, match="data_uri"):
        create_recurring_run(object(), PACKAGE, {})
