"""A loopback server speaking the KFP v2beta1 REST paths ``kfp.Client`` uses: experiments,
runs, recurring runs. Import the fixture where needed::

    from tests.kubeflow.fake_kfp import FakeKFP, kfp_host_fixture  # noqa: F401
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest


class FakeKFP(BaseHTTPRequestHandler):
    experiments: dict[str, dict[str, Any]] = {}
    recurring: dict[str, dict[str, Any]] = {}
    runs: dict[str, dict[str, Any]] = {}
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
        elif self.path == "/apis/v2beta1/runs":
            body["run_id"] = f"run-{len(self.runs) + 1}"
            self.runs[body["run_id"]] = body
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


@pytest.fixture(name="kfp_host")
def kfp_host_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("HOME", str(tmp_path))  # kfp.Client reads ~/.config/kfp/context.json
    FakeKFP.experiments, FakeKFP.recurring, FakeKFP.runs, FakeKFP.deleted = {}, {}, {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKFP)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
