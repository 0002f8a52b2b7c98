"""Scheduled retraining through ``kfp.Client`` against a loopback server speaking the KFP v2beta1
REST API: the request body must carry the cron, one run at a time, no catch-up, no caching."""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from texinspect.errors import ConfigError
from texinspect.pipeline.cli import add_parser
from texinspect.pipeline.schedule import check_cron, create_recurring_run, make_client

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "pipelines" / "texinspect-training.yaml"


class FakeKFP(BaseHTTPRequestHandler):
    experiments: dict[str, dict[str, Any]] = {}
    recurring: dict[str, dict[str, Any]] = {}
    deleted: list[str] = []

    def _send(self, body: dict[str, Any], code: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")

    def do_GET(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path == "/apis/v2beta1/healthz":
            self._send({"multi_user": False})
        elif url.path == "/apis/v2beta1/experiments":
            wanted = (
                json.loads(query["filter"][0])["predicates"][0]["stringValue"] if "filter" in query else None
            )
            found = [e for e in self.experiments.values() if wanted in (None, e["display_name"])]
            self._send({"experiments": found, "total_size": len(found)} if found else {})
        elif url.path == "/apis/v2beta1/recurringruns":
            exp = query.get("experiment_id", [None])[0]
            runs = [r for r in self.recurring.values() if exp in (None, r["experiment_id"])]
            self._send({"recurringRuns": runs, "total_size": len(runs)})
        else:
            self._send({"error": f"unexpected GET {self.path}"}, 404)

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        if self.path == "/apis/v2beta1/experiments":
            body["experiment_id"] = f"exp-{len(self.experiments) + 1}"
            self.experiments[body["experiment_id"]] = body
            self._send(body)
        elif self.path == "/apis/v2beta1/recurringruns":
            body["recurring_run_id"] = f"rr-{len(self.recurring) + len(self.deleted) + 1}"
            self.recurring[body["recurring_run_id"]] = body
            self._send(body)
        else:
            self._send({"error": f"unexpected POST {self.path}"}, 404)

    def do_DELETE(self) -> None:  # noqa: N802
        run_id = self.path.rsplit("/", 1)[-1]
        self.recurring.pop(run_id)
        self.deleted.append(run_id)
        self._send({})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def kfp_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("HOME", str(tmp_path))  # kfp.Client reads ~/.config/kfp/context.json
    FakeKFP.experiments, FakeKFP.recurring, FakeKFP.deleted = {}, {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKFP)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


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
    assert all(
        not t.get("cachingOptions", {}).get("enableCache")
        for t in spec["pipeline_spec"]["root"]["dag"]["tasks"].values()
    )
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
         "--model", "rbae", "--set", "train.batch_size=4", "--param", "world_size=2", "--name", "nightly"]
    )  # fmt: skip
    assert args.func(args) == 0
    (body,) = FakeKFP.recurring.values()
    assert body["display_name"] == "nightly"
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 0"
    parameters = body["runtime_config"]["parameters"]
    assert parameters["world_size"] == 2 and parameters["data_uri"] == "s3://d/x"
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
