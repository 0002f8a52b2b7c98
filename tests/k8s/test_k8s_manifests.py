"""k8s/: every overlay builds with kustomize, every object validates offline, pods are locked down.

Core kinds are checked with ``kubernetes-validate --strict`` (the API server's schemas, unknown
fields rejected); KServe kinds with the kserve SDK's model classes (texinspect's strict checker).
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from texinspect.errors import ConfigError
from texinspect.pipeline.deploy import VARIANTS, render_inference_service
from texinspect.pipeline.manifest_schema import validate_kserve

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = ("cpu", "gpu")
K8S_VERSION = "1.32.0"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "DaemonSet", "CronJob"}


def _kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail(
            "kubectl is not on PATH: it is needed to build the kustomize overlays (kubectl kustomize)"
        )
    return path


_BUILDS: dict[str, list[dict[str, Any]]] = {}


def build(overlay: str) -> list[dict[str, Any]]:
    """``kubectl kustomize k8s/overlays/<overlay>`` as a list of objects (cached per session)."""
    if overlay not in _BUILDS:
        proc = subprocess.run(
            [_kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, f"kustomize build of {overlay} failed:\n{proc.stderr}"
        _BUILDS[overlay] = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return _BUILDS[overlay]


def by_kind(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_and_every_object_validates(overlay: str) -> None:
    from kubernetes_validate.utils import validate

    docs = build(overlay)
    kinds = {d["kind"] for d in docs}
    expected = {
        "Namespace", "ConfigMap", "ServiceAccount", "Role", "RoleBinding", "Service", "Deployment",
        "StatefulSet", "PersistentVolumeClaim", "Job", "ServingRuntime", "InferenceService",
    }  # fmt: skip
    assert expected <= kinds, f"missing kinds: {expected - kinds}"
    for doc in docs:
        where = f"{overlay}:{doc['kind']}/{doc['metadata']['name']}"
        if doc["apiVersion"].startswith("serving.kserve.io/"):
            validate_kserve(doc, where)
        else:
            validate(doc, K8S_VERSION, strict=True)
        assert doc["metadata"].get("namespace", "texinspect") == "texinspect" or doc["kind"] == "Namespace", (
            where
        )


def test_validators_reject_typos() -> None:
    """The checks above can fail: a misspelt field is caught by both validators."""
    from kubernetes_validate.utils import ValidationError, validate

    docs = build("cpu")
    deployment = copy.deepcopy(by_kind(docs, "Deployment", "mlflow")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(ValidationError):
        validate(deployment, K8S_VERSION, strict=True)
    isvc = copy.deepcopy(by_kind(docs, "InferenceService")[0])
    isvc["spec"]["predictor"]["minReplica"] = 1
    with pytest.raises(ConfigError, match="minReplica"):
        validate_kserve(isvc)
    isvc = copy.deepcopy(by_kind(docs, "InferenceService")[0])
    isvc["spec"]["predictor"]["maxReplicas"] = "four"
    with pytest.raises(ConfigError, match="maxReplicas"):
        validate_kserve(isvc)
    runtime = copy.deepcopy(by_kind(docs, "ServingRuntime")[0])
    del runtime["spec"]["containers"][0]["name"]
    with pytest.raises(ConfigError, match="name"):
        validate_kserve(runtime)


def _pod_specs(doc: dict[str, Any]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(pod-level spec, containers) of a workload, a ServingRuntime or an InferenceService."""
    kind = doc["kind"]
    if kind in WORKLOAD_KINDS:
        spec = doc["spec"]["template"]["spec"]
        return [(spec, spec.get("initContainers", []) + spec["containers"])]
    if kind == "InferenceService":
        predictor = doc["spec"]["predictor"]
        return [(predictor, [predictor["model"]])]
    if kind == "ServingRuntime":
        return [({}, doc["spec"]["containers"])]
    return []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_locked_down(overlay: str) -> None:
    checked = 0
    for doc in build(overlay):
        for pod, containers in _pod_specs(doc):
            pod_sc = pod.get("securityContext", {})
            for c in containers:
                where = f"{overlay}:{doc['kind']}/{doc['metadata']['name']}/{c.get('name', 'model')}"
                sc = c.get("securityContext", {})
                assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, f"{where}: may run as root"
                assert sc.get("allowPrivilegeEscalation") is False, f"{where}: privilege escalation allowed"
                assert sc.get("readOnlyRootFilesystem") is True, f"{where}: writable root filesystem"
                assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities not dropped"
                res = c.get("resources", {})
                for part in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(res.get(part, {})), f"{where}: no cpu/memory {part}"
                checked += 1
            if doc["kind"] != "ServingRuntime":
                assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", doc["metadata"][
                    "name"
                ]
    assert checked >= 8


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_inference_service_matches_the_deploy_step(overlay: str) -> None:
    """What `kubectl apply -k` creates and what the pipeline's deploy step creates are the same."""
    (isvc,) = by_kind(build(overlay), "InferenceService")
    storage = isvc["spec"]["predictor"]["model"]["storageUri"]
    assert storage.startswith("pvc://texinspect-models/")
    rendered = render_inference_service("texinspect", storage, overlay, namespace="texinspect")
    labels = dict(isvc["metadata"]["labels"])
    labels.pop("app.kubernetes.io/part-of")  # added by kustomize to every object
    assert labels == rendered["metadata"]["labels"]
    assert isvc["metadata"]["annotations"] == rendered["metadata"]["annotations"]
    assert yaml.safe_load(yaml.safe_dump(isvc["spec"])) == yaml.safe_load(yaml.safe_dump(rendered["spec"]))
    bounds = isvc["spec"]["predictor"]
    assert 1 <= bounds["minReplicas"] <= bounds["maxReplicas"] == VARIANTS[overlay]["maxReplicas"]
    assert bounds["model"]["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    gpu = bounds["model"]["resources"]["limits"].get("nvidia.com/gpu")
    assert (gpu == "1") == (overlay == "gpu")


def test_gpu_overlay_uses_the_cuda_image_and_deploys_the_gpu_variant() -> None:
    docs = build("gpu")
    images = {
        c["image"]
        for d in docs
        for _, containers in _pod_specs(d)
        for c in containers
        if "texinspect" in c.get("image", "")
    }
    assert images == {"ghcr.io/texinspect/texinspect:0.1.0-cuda"}
    (job,) = by_kind(docs, "Job", "texinspect-schedule")
    assert "--param=deploy_variant=gpu" in job["spec"]["template"]["spec"]["containers"][0]["args"]
    (cpu_job,) = by_kind(build("cpu"), "Job", "texinspect-schedule")
    assert "--param=deploy_variant=cpu" in cpu_job["spec"]["template"]["spec"]["containers"][0]["args"]


def test_recurring_run_job_arguments_are_a_valid_schedule_command() -> None:
    """The Job's arguments parse with the real CLI and name a 6-field cron and the shipped package."""
    import argparse

    from texinspect.pipeline.cli import add_parser
    from texinspect.pipeline.schedule import check_cron

    (job,) = by_kind(build("cpu"), "Job", "texinspect-schedule")
    container = job["spec"]["template"]["spec"]["containers"][0]
    parser = argparse.ArgumentParser(prog="texinspect")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(container["args"])
    assert args.pipeline_command == "schedule" and args.host.startswith("http")
    assert check_cron(args.cron) == args.cron
    assert args.package == "/app/pipelines/texinspect-training.yaml"
    assert (REPO / "pipelines" / Path(args.package).name).is_file()
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    token = volumes["kfp-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert token["audience"] == "pipelines.kubeflow.org"


def test_serving_runtime_runs_the_real_serve_command() -> None:
    """The runtime's command line parses with `texinspect serve` and serves /mnt/models on 8080."""
    import argparse

    from texinspect.serving.cli import add_parser as add_serve

    (runtime,) = by_kind(build("cpu"), "ServingRuntime")
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container" and container["command"] == ["texinspect"]
    parser = argparse.ArgumentParser(prog="texinspect")
    add_serve(parser.add_subparsers(dest="command"))
    args = parser.parse_args(container["args"])
    assert args.command == "serve" and args.model == ["texinspect=/mnt/models"]
    assert args.host == "0.0.0.0" and args.port == container["ports"][0]["containerPort"] == 8080
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    (isvc,) = by_kind(build("cpu"), "InferenceService")
    assert isvc["spec"]["predictor"]["model"]["modelFormat"]["name"] in formats
    assert isvc["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]
