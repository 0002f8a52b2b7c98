"""The KServe deployment step: stage the model on the model store, render and apply the service.

The predictor runs the project image through the ``texinspect`` ServingRuntime
(``k8s/base/serving-runtime.yaml``); KServe's storage initializer mounts the model folder at
``/mnt/models`` from ``pvc://<claim>/<service>/v<version>``. Each promoted version gets its
own folder, so a rollout never overwrites files a running pod may still read.

Nothing in ``k8s/`` ships an InferenceService: a predictor pointing at a model that is not on
the store yet would never become Ready. This step creates it after the first promotion and
updates it after every later one, with a server-side apply (one PATCH that creates or updates,
the field manager ``texinspect-deploy`` owning the fields it sets). The object is validated
against KServe's own CRD schema (vendored, :mod:`texinspect.kubeflow.crd_schemas`) first.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from texinspect.errors import ConfigError
from texinspect.kubeflow.crd_schemas import validate_custom

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
RUNTIME = "texinspect"  # ServingRuntime name and model format (k8s/base/serving-runtime.yaml)
MODEL_PVC = "texinspect-models"
PREDICTOR_SERVICE_ACCOUNT = "texinspect-predictor"
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
RUN_AS = 1000
FIELD_MANAGER = "texinspect-deploy"  # server-side apply: who owns the fields this step sets

# Autoscaling bounds and resources per variant; the GPU variant also tolerates GPU node taints.
VARIANTS: dict[str, dict[str, Any]] = {
    "cpu": {
        "minReplicas": 1,
        "maxReplicas": 4,
        "scaleMetric": "cpu",
        "scaleTarget": 70,
        "resources": {
            "requests": {"cpu": "1", "memory": "2Gi"},
            "limits": {"cpu": "2", "memory": "4Gi"},
        },
    },
    "gpu": {
        "minReplicas": 1,
        "maxReplicas": 2,
        "scaleMetric": "cpu",
        "scaleTarget": 70,
        "resources": {
            "requests": {"cpu": "1", "memory": "4Gi", "nvidia.com/gpu": "1"},
            "limits": {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "1"},
        },
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    },
}


def storage_uri(pvc: str, rel: str) -> str:
    return f"pvc://{pvc}/{rel.strip('/')}"


def render_inference_service(
    name: str,
    storage: str,
    variant: str = "cpu",
    namespace: str = "",
    model_version: str = "",
) -> dict[str, Any]:
    """The predictor's InferenceService (RawDeployment: a Deployment + HPA, no Knative needed)."""
    if variant not in VARIANTS:
        raise ConfigError(f"deployment variant '{variant}' is not one of {sorted(VARIANTS)}")
    v = copy.deepcopy(VARIANTS[variant])
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {"app.kubernetes.io/name": "texinspect", "app.kubernetes.io/component": "predictor"},
        "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"},
    }
    if namespace:
        metadata["namespace"] = namespace
    if model_version:
        metadata["annotations"]["texinspect.io/model-version"] = str(model_version)
    predictor: dict[str, Any] = {
        "serviceAccountName": PREDICTOR_SERVICE_ACCOUNT,
        "minReplicas": v["minReplicas"],
        "maxReplicas": v["maxReplicas"],
        "scaleMetric": v["scaleMetric"],
        "scaleTarget": v["scaleTarget"],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "model": _model_spec(storage, v["resources"]),
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}],
    }
    if "tolerations" in v:
        predictor["tolerations"] = v["tolerations"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {"predictor": predictor},
    }

def _model_spec(storage: str, resources: dict[str, Any]) -> dict[str, Any]:
    """The predictor's model container: the runtime, where the model is, probes, a locked-down context."""
    return {
        "modelFormat": {"name": RUNTIME},
        "runtime": RUNTIME,
        "storageUri": storage,
        "resources": resources,
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": 8080},
            "initialDelaySeconds": 5,
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": 8080},
            "initialDelaySeconds": 30,
            "periodSeconds": 20,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def stage_model(model_dir: str | Path, store_root: str | Path, service_name: str, version: str) -> str:
    """Copy the model folder to ``STORE/<service>/v<version>``; returns that path relative to STORE.

    Copied under a temporary name and renamed, so a reader never sees half a model; a folder
    that already exists (a retried task) is kept as it is.
    """
    model_dir, store_root = Path(model_dir), Path(store_root)
    if not (model_dir / "model.yaml").is_file():
        raise ConfigError(f"{model_dir}: not a texinspect model folder (no model.yaml)")
    tag = f"v{version}" if version else _dt.datetime.now(_dt.UTC).strftime("t%Y%m%d%H%M%S")
    rel = f"{service_name}/{tag}"
    target = store_root / rel
    if target.is_dir():
        log.info("model store already holds %s; keeping it", target)
        return rel
    tmp = target.with_name(f".{tag}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(model_dir, tmp)
    tmp.rename(target)
    return rel


def current_namespace(default: str = "default") -> str:
    if SA_NAMESPACE_FILE.is_file():
        return SA_NAMESPACE_FILE.read_text().strip() or default
    return default


def apply_inference_service(manifest: dict[str, Any], namespace: str) -> str:
    """Server-side apply of the InferenceService: created the first time, updated after.

    One PATCH (``application/apply-patch+yaml``) instead of get + create/replace: no race with
    another writer's resourceVersion, and fields other managers own (KServe's defaults, an
    operator's annotations) are kept. ``force`` takes over fields an earlier hand-made apply owned.
    """
    from kubernetes import client
    from kubernetes import config as kube_config

    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        kube_config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))  # read now, not at import
    name = manifest["metadata"]["name"]
    body = copy.deepcopy(manifest)
    body["metadata"]["namespace"] = namespace
    _, status, _ = client.ApiClient().call_api(
        f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{PLURAL}/{{name}}",
        "PATCH",
        path_params={"namespace": namespace, "name": name},
        query_params=[("fieldManager", FIELD_MANAGER), ("force", True)],
        header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
        body=body,
        response_type="object",
        auth_settings=["BearerToken"],
        _return_http_data_only=False,
    )
    action = "created" if status == 201 else "updated"
    log.info("%s InferenceService %s/%s (server-side apply)", action, namespace, name)
    return action


def deploy(
    model_dir: str | Path,
    version: str,
    service_name: str,
    namespace: str,
    model_store: str | Path,
    variant: str,
    apply: bool,
    manifest_path: str | Path,
    pvc: str = MODEL_PVC,
) -> dict[str, Any]:
    """Stage the model, render + validate the InferenceService, write it, apply it if asked."""
    rel = stage_model(model_dir, model_store, service_name, version)
    uri = storage_uri(pvc, rel)
    namespace = namespace or current_namespace()
    manifest = render_inference_service(service_name, uri, variant, namespace, version)
    validate_custom(manifest, "rendered InferenceService")
    out = Path(manifest_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(manifest, sort_keys=False))
    action = apply_inference_service(manifest, namespace) if apply else "rendered"
    result = {
        "service": service_name,
        "namespace": namespace,
        "variant": variant,
        "storage_uri": uri,
        "model_version": version,
        "action": action,
    }
    log.info("deploy: %s", json.dumps(result))
    return result
