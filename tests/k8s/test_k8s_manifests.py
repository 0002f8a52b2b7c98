"""k8s/: every overlay builds with kustomize, every object validates offline, pods are locked down.

Core kinds are checked with ``kubernetes-validate --strict`` (the API server's schemas, unknown
fields rejected); KServe and Kubeflow kinds against the operators' own CRD schemas (vendored,
``texinspect.kubeflow.crd_schemas``, equally strict).
"""

from __future__ import annotations

import copy
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from texinspect.errors import ConfigError
from texinspect.kubeflow.crd_schemas import validate_custom, validate_manifest
from texinspect.kubeflow.deploy import VARIANTS, render_inference_service

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
        "StatefulSet", "PersistentVolumeClaim", "Job", "ServingRuntime",
    }  # fmt: skip
    assert expected <= kinds, f"missing kinds: {expected - kinds}"
    for doc in docs:
        where = f"{overlay}:{doc['kind']}/{doc['metadata']['name']}"
        if doc["apiVersion"].startswith("serving.kserve.io/"):
            validate_custom(doc, where)
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
    isvc = render_inference_service("texinspect", "pvc://texinspect-models/texinspect/v1")
    isvc["spec"]["predictor"]["minReplica"] = 1
    with pytest.raises(ConfigError, match="minReplica"):
        validate_manifest(isvc)
    isvc = render_inference_service("texinspect", "pvc://texinspect-models/texinspect/v1")
    isvc["spec"]["predictor"]["maxReplicas"] = "four"
    with pytest.raises(ConfigError, match="maxReplicas"):
        validate_manifest(isvc)
    runtime = copy.deepcopy(by_kind(docs, "ServingRuntime")[0])
    del runtime["spec"]["containers"][0]["name"]
    with pytest.raises(ConfigError, match="name"):
        validate_manifest(runtime)


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
    if kind == "PyTorchJob":
        templates = [r["template"]["spec"] for r in doc["spec"]["pytorchReplicaSpecs"].values()]
        return [(spec, spec.get("initContainers", []) + spec["containers"]) for spec in templates]
    return []


def _check_locked_down(doc: dict[str, Any], where_prefix: str) -> int:
    """Assert every container of ``doc`` is locked down; returns how many were checked."""
    checked = 0
    for pod, containers in _pod_specs(doc):
        pod_sc = pod.get("securityContext", {})
        for c in containers:
            where = f"{where_prefix}:{doc['kind']}/{doc['metadata']['name']}/{c.get('name', 'model')}"
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
            assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", doc["metadata"]["name"]
    return checked


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_locked_down(overlay: str) -> None:
    checked = sum(_check_locked_down(doc, overlay) for doc in build(overlay))
    assert checked >= 7  # the InferenceService is rendered by the deploy step (checked there)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_inference_service_is_shipped_before_a_model_exists(overlay: str) -> None:
    """Issue 19 (4): nothing in k8s/ points a predictor at a model the store does not hold yet;
    the deploy step creates the InferenceService after the first promotion."""
    docs = build(overlay)
    assert not by_kind(docs, "InferenceService")
    assert not [d for d in docs if "pvc://" in yaml.safe_dump(d)]
    (role,) = by_kind(docs, "Role", "texinspect-deployer")
    (rule,) = [r for r in role["rules"] if "inferenceservices" in r["resources"]]
    assert {"create", "patch"} <= set(rule["verbs"])  # what a server-side apply needs


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_inference_service_fits_the_crd_and_the_runtime(variant: str) -> None:
    docs = build("cpu")
    isvc = render_inference_service("texinspect", "pvc://texinspect-models/texinspect/v1", variant, "texinspect")
    validate_manifest(isvc, variant)
    (runtime,) = by_kind(docs, "ServingRuntime")
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert _check_locked_down(isvc, variant) == 1
    gpu = model["resources"]["limits"].get("nvidia.com/gpu")
    assert (gpu == "1") == (variant == "gpu")


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

    from texinspect.cli.pipeline import add_parser
    from texinspect.kubeflow.schedule import check_cron

    (job,) = by_kind(build("cpu"), "Job", "texinspect-schedule")
    container = job["spec"]["template"]["spec"]["containers"][0]
    parser = argparse.ArgumentParser(prog="texinspect")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(container["args"])
    assert args.pipeline_command == "schedule" and args.host.startswith("http")
    assert check_cron(args.cron) == args.cron
    assert args.package == "/app/pipelines/texinspect-training.yaml"
    # the image copies pipelines/<its flavor>/ to /app/pipelines/
    for flavor in ("cpu", "cuda"):
        assert (REPO / "pipelines" / flavor / Path(args.package).name).is_file()
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    token = volumes["kfp-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert token["audience"] == "pipelines.kubeflow.org"


def _kubelet_expand(args: list[str], env: dict[str, str]) -> list[str]:
    """``$(VAR)`` in a container's args, replaced as the kubelet does from the container's env."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in env, f"$({name}) in the args but {name} is not in the container's env"
        return env[name]

    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, a) for a in args]


def _downward_env(container: dict[str, Any], limits: dict[str, str]) -> dict[str, str]:
    """The container's env with ``resourceFieldRef`` values resolved against ``limits``."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif "resourceFieldRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["resourceFieldRef"]
            kind, resource = ref["resource"].split(".")
            assert kind == "limits" and resource == "cpu", ref
            divisor = float(ref.get("divisor", "1"))
            env[var["name"]] = str(math.ceil(_cores(limits[resource]) / divisor))
    return env


def _cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


@pytest.mark.parametrize(("overlay", "threads"), [("cpu", 2), ("gpu", 4)])
def test_serving_runtime_runs_the_real_serve_command(overlay: str, threads: int) -> None:
    """The runtime's command line parses with `texinspect serve`, serves /mnt/models on 8080, and
    gives torch as many threads as the predictor's CPU limit (KServe's pod takes its resources
    from the InferenceService)."""
    import argparse

    from texinspect.cli.serving import add_parser as add_serve

    docs = build(overlay)
    (runtime,) = by_kind(docs, "ServingRuntime")
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container" and container["command"] == ["texinspect"]
    isvc = render_inference_service("texinspect", "pvc://texinspect-models/texinspect/v1", overlay)  # the deploy step's
    limits = isvc["spec"]["predictor"]["model"]["resources"]["limits"]
    args_in_pod = _kubelet_expand(container["args"], _downward_env(container, limits))
    parser = argparse.ArgumentParser(prog="texinspect")
    add_serve(parser.add_subparsers(dest="command"))
    args = parser.parse_args(args_in_pod)
    assert args.command == "serve" and args.model == ["texinspect=/mnt/models"]
    assert args.host == "0.0.0.0" and args.port == container["ports"][0]["containerPort"] == 8080
    assert args.threads == threads == math.ceil(_cores(limits["cpu"]))
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert isvc["spec"]["predictor"]["model"]["modelFormat"]["name"] in formats
    assert isvc["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]


# --------------------------------------------------------------------------- images, MLflow


def _image_refs(node: Any) -> list[str]:
    """Every value of an ``image`` field anywhere in a manifest."""
    if isinstance(node, dict):
        found = [node["image"]] if isinstance(node.get("image"), str) else []
        return found + [ref for value in node.values() for ref in _image_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _image_refs(value)]
    return []


def _pinned(ref: str) -> bool:
    """``repo/name:tag`` or ``repo/name@sha256:...``, and the tag is not ``latest``."""
    if "@sha256:" in ref:
        return True
    last = ref.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("", "latest")


def _all_manifests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((str(path.relative_to(REPO)), doc))
    return out


def test_pinned_checker_rejects_floating_images() -> None:
    assert _pinned("ghcr.io/texinspect/texinspect:0.1.0") and _pinned("postgres:16-alpine")
    assert _pinned("registry:5000/team/app@sha256:" + "a" * 64)
    for ref in ("texinspect", "postgres:latest", "registry:5000/team/app", "ghcr.io/x/y:"):
        assert not _pinned(ref), ref


def test_every_image_is_pinned() -> None:
    """No ``:latest`` and no untagged image: in every file under k8s/ and in the built overlays."""
    refs = [(f"{path}:{doc['kind']}", ref) for path, doc in _all_manifests() for ref in _image_refs(doc)]
    refs += [(f"overlay {o}:{d['kind']}", ref) for o in OVERLAYS for d in build(o) for ref in _image_refs(d)]
    assert len(refs) >= 20
    floating = [(where, ref) for where, ref in refs if not _pinned(ref)]
    assert not floating, f"images without a pinned tag: {floating}"
    for path, doc in _all_manifests():  # kustomize image rewrites pin a tag too
        for image in doc.get("images", []) if doc.get("kind") == "Kustomization" else []:
            tag = image.get("newTag") or image.get("digest")
            assert tag and tag != "latest", f"{path}: image rewrite {image} pins no tag"


def test_mlflow_server_starts_no_job_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    """mlflow 3.x starts a huey job runner beside a database-backed server unless told not to."""
    from mlflow.environment_variables import MLFLOW_SERVER_ENABLE_JOB_EXECUTION as flag

    (deployment,) = by_kind(build("cpu"), "Deployment", "mlflow")
    (server,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert any(
        a.startswith("--backend-store-uri=postgresql") for a in server["args"]
    )  # the case that starts it
    monkeypatch.delenv(flag.name, raising=False)
    assert flag.get() is True  # mlflow's default: on
    monkeypatch.setenv(flag.name, env[flag.name])
    assert flag.get() is False


# --------------------------------------------------------------------------- PyTorchJob


PYTORCHJOB = K8S / "training" / "pytorchjob.yaml"


def _training_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(PYTORCHJOB.read_text()) if d]


def _operator_env(job: dict[str, Any], replica: str, index: int) -> dict[str, str]:
    """What the training operator (v1.7+, pkg/controller.v1/pytorch) puts in a pod's env."""
    specs = job["spec"]["pytorchReplicaSpecs"]
    pods = sum(int(r["replicas"]) for r in specs.values())
    nproc = job["spec"]["nprocPerNode"]
    node_rank = index + (1 if replica == "Worker" else 0)
    (master,) = specs["Master"]["template"]["spec"]["containers"]
    (port,) = [p["containerPort"] for p in master["ports"] if p["name"] == "pytorchjob-port"]
    return {
        "MASTER_ADDR": f"{job['metadata']['name']}-master-0",
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(pods * int(nproc)),
        "RANK": str(node_rank),
        "PET_NPROC_PER_NODE": nproc,
        "PET_NODE_RANK": str(node_rank),
        "PET_NNODES": str(pods),
    }


def test_pytorchjob_pods_validate_and_are_locked_down() -> None:
    from kubernetes_validate.utils import validate

    docs = _training_docs()
    assert [d["kind"] for d in docs] == ["PersistentVolumeClaim", "PyTorchJob"]
    pvc, job = docs
    validate(pvc, K8S_VERSION, strict=True)
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]  # every pod mounts the run folder
    assert job["apiVersion"] == "kubeflow.org/v1"
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert set(specs) == {"Master", "Worker"} and specs["Master"]["replicas"] == 1
    for name, spec in specs.items():
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"texinspect-train-{name.lower()}-0"}}
        pod["spec"] = spec["template"]["spec"]
        validate(pod, K8S_VERSION, strict=True)
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes["workspace"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
        assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert _check_locked_down(job, "training") == 2


@pytest.mark.parametrize(("replica", "index"), [("Master", 0), ("Worker", 0)])
def test_pytorchjob_runs_torchrun_over_the_real_train_command(replica: str, index: int) -> None:
    """With the operator's env, the args are a valid torchrun call whose processes run
    `texinspect train`: one process per GPU, the world size pods x GPUs, rendezvous at Master."""
    from torch.distributed.run import get_args_parser

    from texinspect.cli import build_parser
    from texinspect.cli.common import config_from_args

    job = _training_docs()[1]
    (container,) = job["spec"]["pytorchReplicaSpecs"][replica]["template"]["spec"]["containers"]
    assert container["name"] == "pytorch" and container["command"] == ["torchrun"]
    env = _operator_env(job, replica, index)
    args = get_args_parser().parse_args(_kubelet_expand(container["args"], env))
    gpus = int(container["resources"]["limits"]["nvidia.com/gpu"])
    assert args.nproc_per_node == str(gpus) == job["spec"]["nprocPerNode"]
    assert args.nnodes == "2" and args.node_rank == int(env["PET_NODE_RANK"])
    assert args.master_addr == "texinspect-train-master-0" and args.master_port == 23456
    assert int(args.nnodes) * gpus == int(env["WORLD_SIZE"]) == 8
    assert args.module and args.training_script == "texinspect"
    assert "texinspect:" in container["image"] and container["image"].endswith("-cuda")
    parsed = build_parser().parse_args(args.training_script_args)
    assert parsed.command == "train" and parsed.phase == "all"
    assert parsed.out.startswith("/workspace/") and parsed.data.startswith("/workspace/")
    assert parsed.config == "/app/params.yaml"  # the image's copy (TEXINSPECT_PARAMS)
    parsed.config = str(REPO / "params.yaml")
    config = config_from_args(parsed, [f"model={parsed.model}"])  # the --set keys exist, types fit
    assert config.model == parsed.model and config.train.max_minutes > 0


TRAINJOB = K8S / "training" / "trainjob.yaml"


def test_training_jobs_validate_against_the_operators_crds() -> None:
    """Issue 19 (6, 8): both distributed APIs' manifests fit the real CRD schemas (vendored)."""
    from texinspect.kubeflow.crd_schemas import validate_manifest

    docs = [*_training_docs(), *(d for d in yaml.safe_load_all(TRAINJOB.read_text()) if d)]
    assert [d["kind"] for d in docs] == ["PersistentVolumeClaim", "PyTorchJob", "TrainJob"]
    for doc in docs:
        validate_manifest(doc, doc["kind"])
    (trainjob,) = [d for d in docs if d["kind"] == "TrainJob"]
    typo = copy.deepcopy(trainjob)
    typo["spec"]["trainer"]["numProcsPerNode"] = 4
    with pytest.raises(ConfigError, match="numProcsPerNode"):
        validate_manifest(typo)


def test_trainjob_puts_one_rank_on_each_gpu_and_runs_the_real_train_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 19 (6): torchrun, reading the PET_* env Trainer v2 injects, starts one process per GPU."""
    from torch.distributed.run import get_args_parser

    from texinspect.cli import build_parser

    (job,) = yaml.safe_load_all(TRAINJOB.read_text())
    trainer = job["spec"]["trainer"]
    gpus = int(trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"])
    assert trainer["numProcPerNode"] == gpus == int(trainer["resourcesPerNode"]["requests"]["nvidia.com/gpu"])
    assert job["spec"]["runtimeRef"]["name"] == "torch-distributed"
    assert trainer["image"].endswith("-cuda")
    # what the torch plugin of Trainer v2 sets in each node's env (pkg/runtime/framework/plugins/torch)
    env = {
        "PET_NNODES": str(trainer["numNodes"]),
        "PET_NPROC_PER_NODE": str(trainer["numProcPerNode"]),
        "PET_NODE_RANK": "1",
        "PET_MASTER_ADDR": "texinspect-train-node-0-0.texinspect-train",
        "PET_MASTER_PORT": "29400",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert trainer["command"] == ["torchrun"]
    args = get_args_parser().parse_args(trainer["args"])
    assert args.nproc_per_node == str(gpus) and args.nnodes == str(trainer["numNodes"])
    assert args.module and args.training_script == "texinspect"
    parsed = build_parser().parse_args(args.training_script_args)
    assert parsed.command == "train" and parsed.config == "/app/params.yaml"
    pod = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    pod_spec = pod["template"]["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    assert container["name"] == "node" and container["securityContext"]["runAsNonRoot"] is True
    assert {v["name"] for v in pod_spec["volumes"]} >= {"workspace", "dshm"}


# The fields of kubeflow/pipelines backend/src/v2/config/s3.go (S3ProviderConfig and friends).
LAUNCHER_S3_FIELDS = {
    "default": {"endpoint", "credentials", "region", "disableSSL", "forcePathStyle", "maxRetries"},
    "credentials": {"fromEnv", "secretRef"},
    "secretRef": {"secretName", "accessKeyKey", "secretKeyKey"},
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kfp_launcher_reads_the_dataset_bucket_with_the_s3_secret(overlay: str) -> None:
    """Issue 19 (3): the launcher can download s3://datasets/... : endpoint, keys, bucket."""
    docs = build(overlay)
    (launcher,) = by_kind(docs, "ConfigMap", "kfp-launcher")
    providers = yaml.safe_load(launcher["data"]["providers"])
    assert set(providers) == {"s3"}
    default = providers["s3"]["default"]
    assert set(default) <= LAUNCHER_S3_FIELDS["default"]
    assert set(default["credentials"]) <= LAUNCHER_S3_FIELDS["credentials"]
    ref = default["credentials"]["secretRef"]
    assert default["credentials"]["fromEnv"] is False and set(ref) == LAUNCHER_S3_FIELDS["secretRef"]
    # the same Secret and keys the object store's identity is written from
    (store,) = by_kind(docs, "StatefulSet", "object-store")
    (init,) = store["spec"]["template"]["spec"]["initContainers"]
    assert {"secretRef": {"name": ref["secretName"]}} in init["envFrom"]
    assert {ref["accessKeyKey"], ref["secretKeyKey"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    # the endpoint is the object store's Service, by its cluster DNS name (the launcher may run elsewhere)
    (service,) = by_kind(docs, "Service", "object-store")
    host, port = default["endpoint"].split(":")
    assert host == f"object-store.{service['metadata']['namespace']}.svc.cluster.local"
    assert int(port) == service["spec"]["ports"][0]["port"] and default["disableSSL"] is True
    # the bucket the pipeline imports from (the scheduling Job's --data) is created in k8s/
    (config,) = by_kind(docs, "ConfigMap", "texinspect-config")
    (job,) = by_kind(docs, "Job", "texinspect-schedule")
    data_uri = next(a for a in job["spec"]["template"]["spec"]["containers"][0]["args"] if a.startswith("--data="))
    bucket = data_uri.removeprefix("--data=s3://").split("/")[0]
    assert bucket in config["data"]["BUCKETS"].split(",")
