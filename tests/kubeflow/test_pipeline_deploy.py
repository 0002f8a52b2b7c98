"""The deploy step: model store layout, the rendered InferenceService (checked against KServe's CRD
schema), and server-side apply against a Kubernetes API (a loopback HTTP server that speaks the
custom-objects REST paths and apply PATCHes)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from texinspect.errors import ConfigError
from texinspect.kubeflow import deploy
from texinspect.kubeflow.crd_schemas import validate_custom

PATH = "/apis/serving.kserve.io/v1beta1/namespaces/factory/inferenceservices"


def _model(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.yaml").write_text("family: rbae\n")
    (model / "weights.pt").write_bytes(b"\x00" * 16)
    return model


def test_stage_model_versions_and_is_idempotent(tmp_path: Path) -> None:
    model, store = _model(tmp_path), tmp_path / "store"
    rel = deploy.stage_model(model, store, "texinspect", "3")
    assert rel == "texinspect/v3"
    assert (store / rel / "weights.pt").read_bytes() == b"\x00" * 16
    (model / "weights.pt").write_bytes(b"changed")
    assert deploy.stage_model(model, store, "texinspect", "3") == rel  # a retried task keeps v3 as it was
    assert (store / rel / "weights.pt").read_bytes() == b"\x00" * 16
    assert not list(store.rglob("*.partial"))
    assert deploy.stage_model(model, store, "texinspect", "").startswith(
        "texinspect/t"
    )  # no version: a timestamp
    with pytest.raises(ConfigError, match="no model.yaml"):
        deploy.stage_model(tmp_path, store, "texinspect", "4")


@pytest.mark.parametrize("variant", sorted(deploy.VARIANTS))
def test_rendered_service_is_valid_kserve(variant: str) -> None:
    manifest = deploy.render_inference_service("ti", "pvc://texinspect-models/ti/v2", variant, "factory", "2")
    validate_custom(manifest)  # KServe's CRD schema, unknown fields rejected
    predictor = manifest["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == "pvc://texinspect-models/ti/v2"
    assert predictor["model"]["runtime"] == "texinspect" and predictor["model"]["modelFormat"]["name"] == "texinspect"
    assert predictor["minReplicas"] >= 1 and predictor["maxReplicas"] >= predictor["minReplicas"]
    assert predictor["model"]["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert predictor["model"]["securityContext"]["readOnlyRootFilesystem"] is True
    assert ("nvidia.com/gpu" in predictor["model"]["resources"]["limits"]) == (variant == "gpu")
    assert manifest["metadata"]["annotations"]["texinspect.io/model-version"] == "2"
    with pytest.raises(ConfigError, match="tpu"):
        deploy.render_inference_service("ti", "pvc://x/y", "tpu")


class FakeKube(BaseHTTPRequestHandler):
    """Just enough of the API server: GET and server-side apply (PATCH) on namespaced
    inferenceservices; any other write is an error (the step must not create or replace)."""

    objects: dict[str, dict[str, Any]] = {}
    calls: list[tuple[str, str]] = []
    managers: list[str] = []

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def do_GET(self) -> None:  # noqa: N802
        self.calls.append(("GET", self.path))
        name = self.path.rsplit("/", 1)[-1]
        if self.path.startswith(PATH + "/") and name in self.objects:
            self._send(200, self.objects[name])
        else:
            self._send(
                404,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "NotFound",
                    "code": 404,
                },
            )

    def do_PATCH(self) -> None:  # noqa: N802
        from urllib.parse import parse_qs, urlsplit

        url = urlsplit(self.path)
        self.calls.append(("PATCH", url.path))
        query = parse_qs(url.query)
        if self.headers["Content-Type"] != "application/apply-patch+yaml" or "fieldManager" not in query:
            self._send(415, {"kind": "Status", "code": 415, "reason": "UnsupportedMediaType"})
            return
        self.managers.append(query["fieldManager"][0])
        name = url.path.rsplit("/", 1)[-1]
        body = self._body()
        assert url.path == f"{PATH}/{name}" and body["metadata"]["name"] == name
        created = name not in self.objects
        version = 1 if created else int(self.objects[name]["metadata"]["resourceVersion"]) + 1
        body["metadata"]["resourceVersion"] = str(version)
        self.objects[name] = body
        self._send(201 if created else 200, body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeKube]]:
    FakeKube.objects, FakeKube.calls, FakeKube.managers = {}, [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKube)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "fake", "user": {"token": "test"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        "current-context": "fake",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    yield FakeKube
    server.shutdown()


def test_first_deploy_creates_the_service_and_later_ones_update_it(tmp_path: Path, kube: type[FakeKube]) -> None:
    """Issue 19 (4): the InferenceService appears with the first promoted model, by server-side apply."""
    model, store = _model(tmp_path), tmp_path / "store"
    first = deploy.deploy(model, "1", "texinspect", "factory", store, "cpu", True, tmp_path / "m1.yaml")
    assert first["action"] == "created" and first["storage_uri"] == "pvc://texinspect-models/texinspect/v1"
    assert [c[0] for c in kube.calls] == ["PATCH"]
    second = deploy.deploy(model, "2", "texinspect", "factory", store, "gpu", True, tmp_path / "m2.yaml")
    assert second["action"] == "updated"
    assert [c[0] for c in kube.calls] == ["PATCH", "PATCH"]
    assert kube.managers == [deploy.FIELD_MANAGER] * 2
    live = kube.objects["texinspect"]
    assert live["spec"]["predictor"]["model"]["storageUri"] == "pvc://texinspect-models/texinspect/v2"
    assert live["metadata"]["resourceVersion"] == "2"
    assert live["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    written = yaml.safe_load((tmp_path / "m2.yaml").read_text())
    assert written["metadata"]["namespace"] == "factory"
    validate_custom(written)
    assert sorted(p.name for p in (store / "texinspect").iterdir()) == ["v1", "v2"]


def test_deploy_without_apply_only_renders(tmp_path: Path, kube: type[FakeKube]) -> None:
    result = deploy.deploy(
        _model(tmp_path), "5", "svc", "factory", tmp_path / "s", "cpu", False, tmp_path / "m.yaml"
    )
    assert result["action"] == "rendered" and kube.calls == []
    assert yaml.safe_load((tmp_path / "m.yaml").read_text())["spec"]["predictor"]["model"][
        "storageUri"
    ].endswith("svc/v5")


def test_an_invalid_service_is_refused_before_the_cluster_sees_it(
    tmp_path: Path, kube: type[FakeKube], monkeypatch: pytest.MonkeyPatch
) -> None:
    render = deploy.render_inference_service

    def typo(*args: Any, **kwargs: Any) -> dict[str, Any]:
        manifest = render(*args, **kwargs)
        manifest["spec"]["predictor"]["minReplica"] = 1
        return manifest

    monkeypatch.setattr(deploy, "render_inference_service", typo)
    with pytest.raises(ConfigError, match="minReplica"):
        deploy.deploy(_model(tmp_path), "1", "svc", "factory", tmp_path / "s", "cpu", True, tmp_path / "m.yaml")
    assert kube.calls == []
