"""docs/kubeflow.md, "From zero to first prediction on a cluster": every command, in order, either
run here (no cluster needed) or, for the few that need one, checked for the names and ports it
uses. A command the walk does not know fails the test, so the doc cannot grow an unchecked step.

Run here: ``kubectl create ...`` with ``--dry-run=client`` (what the Secrets hold is compared with
what the manifests and the pipeline read), ``kubectl apply -k`` as ``kubectl kustomize``, the data
push against SeaweedFS, the pipeline run and schedule against a loopback KFP API, the request
file and ``curl`` against a local ``texinspect serve``. Checked only: ``port-forward``,
``rollout status``, ``wait``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from tests.kubeflow.fake_kfp import FakeKFP, kfp_host_fixture  # noqa: F401
from tests.s3_server import s3_env_fixture, seaweed_s3_fixture  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "kubeflow.md"
MARKER = "<!-- zero-to-prediction -->"
sys.path.insert(0, str(REPO / "tests" / "serving"))


def doc_commands(text: str | None = None) -> list[str]:
    """The commands of the marked bash block: continuations joined, comments and blanks dropped."""
    text = DOC.read_text() if text is None else text
    assert MARKER in text, f"{DOC}: the zero-to-prediction block is not marked with {MARKER}"
    block = re.search(r"```bash\n(.*?)```", text[text.index(MARKER) :], re.S)
    assert block, f"{DOC}: no ```bash block after {MARKER}"
    commands, buffer = [], ""
    for line in block.group(1).splitlines():
        if not buffer and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buffer += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            commands.append(buffer)
            buffer = ""
    return commands


def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=120)


@dataclass
class Walk:
    """What the earlier commands established, for the later ones to be checked against."""

    tmp: Path
    kfp_host: str
    s3: Any
    namespace: str = ""
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    objects: list[dict[str, Any]] = field(default_factory=list)
    forwards: dict[int, tuple[str, str, int]] = field(default_factory=dict)  # local port -> (ns, svc, port)
    env: dict[str, str] = field(default_factory=dict)
    pushed: str = ""
    overlay: str = ""
    server_url: str = ""
    done: list[str] = field(default_factory=list)

    def find(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name]
        assert found, f"{kind}/{name} is not in the applied overlay"
        return found[0]

    # ------------------------------------------------------------------ kubectl

    def kubectl(self, argv: list[str], command: str) -> None:
        ns = ""
        if argv[1] == "-n":
            ns, argv = argv[2], [argv[0], *argv[3:]]
            assert ns in (self.namespace, "kubeflow"), f"{command}: namespace {ns}"
        verb = argv[1]
        if argv[1:3] == ["create", "namespace"]:
            out = kubectl(*argv[1:], "--dry-run=client", "-o", "yaml")
            assert out.returncode == 0, out.stderr
            self.namespace = yaml.safe_load(out.stdout)["metadata"]["name"]
            base = yaml.safe_load((REPO / "k8s" / "base" / "kustomization.yaml").read_text())
            assert self.namespace == base["namespace"], "the namespace the manifests use"
        elif argv[1:4] == ["create", "secret", "generic"]:
            out = kubectl("-n", ns, *argv[1:], "--dry-run=client", "-o", "yaml")
            assert out.returncode == 0, out.stderr
            secret = yaml.safe_load(out.stdout)
            data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
            self.secrets[secret["metadata"]["name"]] = data
        elif argv[1:3] == ["apply", "-k"]:
            out = kubectl("kustomize", str(REPO / argv[3]))
            assert out.returncode == 0, out.stderr
            self.objects = [d for d in yaml.safe_load_all(out.stdout) if d]
            self.overlay = Path(argv[3]).name
            self.check_secrets_cover_the_manifests()
        elif verb == "rollout":  # needs a cluster: the workload exists
            kind, _, name = argv[3].partition("/")
            self.find({"deployment": "Deployment", "statefulset": "StatefulSet"}[kind], name)
        elif verb == "wait":  # needs a cluster: the InferenceService the deploy step creates
            kind, _, name = argv[-2 if argv[-1].startswith("--timeout") else -1].partition("/")
            assert kind == "inferenceservice"
            from texinspect.kubeflow.training_pipeline import build_pipeline

            defaults = build_pipeline().component_spec.inputs
            assert name == defaults["service_name"].default, "the pipeline's default service_name"
        elif verb == "port-forward":  # needs a cluster: the Service and port exist
            svc = argv[2].removeprefix("svc/")
            local, remote = (int(p) for p in argv[3].split(":"))
            if ns == "kubeflow":
                assert svc == "ml-pipeline-ui" and remote == 80, "KFP's UI/API Service"
            elif svc.endswith("-predictor"):  # KServe RawDeployment: <isvc>-predictor, port 80
                assert remote == 80 and svc == "texinspect-predictor"
            else:
                ports = [p["port"] for p in self.find("Service", svc)["spec"]["ports"]]
                assert remote in ports, f"{command}: {svc} has ports {ports}"
            self.forwards[local] = (ns, svc, remote)
        else:
            pytest.fail(f"{DOC}: no check for `{command}`; add one to {Path(__file__).name}")

    def check_secrets_cover_the_manifests(self) -> None:
        """Every secretKeyRef / secretRef / launcher secretRef the overlay uses is created above."""
        text = yaml.safe_dump_all(self.objects)
        for ref in re.finditer(r"secretKeyRef:\s*\n\s*key: (\S+)\s*\n\s*name: (\S+)", text):
            assert ref.group(1) in self.secrets.get(ref.group(2), {}), f"secret {ref.group(2)} key {ref.group(1)}"
        launcher = yaml.safe_load(self.find("ConfigMap", "kfp-launcher")["data"]["providers"])
        ref = launcher["s3"]["default"]["credentials"]["secretRef"]
        assert {ref["accessKeyKey"], ref["secretKeyKey"]} <= set(self.secrets[ref["secretName"]])

    # ------------------------------------------------------------------ shell and texinspect

    def export(self, argv: list[str]) -> None:
        for item in argv[1:]:
            key, _, value = item.partition("=")
            self.env[key] = value
        s3 = self.secrets["texinspect-s3"]
        assert self.env["AWS_ACCESS_KEY_ID"] == s3["AWS_ACCESS_KEY_ID"]
        assert self.env["AWS_SECRET_ACCESS_KEY"] == s3["AWS_SECRET_ACCESS_KEY"]
        port = urlparse(self.env["AWS_ENDPOINT_URL"]).port
        assert self.forwards[port][1] == "object-store", "the endpoint is the forwarded object store"

    def texinspect(self, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
        from texinspect.cli import main

        args = argv[1:]
        if args[:2] == ["data", "push"]:
            from texinspect.data.sample import make_sample_dataset

            local = self.tmp / "dataset"
            make_sample_dataset(local, n_train=4, n_test_good=1, n_test_defect_per_type=1, size=32)
            bucket = urlparse(args[3]).netloc
            config = self.find("ConfigMap", "texinspect-config")
            assert bucket in config["data"]["BUCKETS"].split(","), "k8s/ creates the bucket"
            self.s3.create_bucket(bucket)
            for key, value in self.s3.env().items():  # the test server's endpoint and keys
                monkeypatch.setenv(key, value)
            assert main(["data", "push", str(local), args[3]]) == 0
            assert any(k.endswith(".texinspect-dataset.json") for k in self.s3.keys(bucket))
            self.pushed = args[3]
            return
        if args[:2] in (["pipeline", "run"], ["pipeline", "schedule"]):
            host = args[args.index("--host") + 1]
            assert self.forwards[urlparse(host).port][1] == "ml-pipeline-ui"
            args[args.index("--host") + 1] = self.kfp_host
            package = args[args.index("--package") + 1]
            assert Path(package).parent.name == self.overlay, "the pipeline of the applied overlay's image"
            assert args[args.index("--data") + 1] == self.pushed
            monkeypatch.chdir(REPO)
            assert main(args) == 0
            record = list((FakeKFP.runs if args[1] == "run" else FakeKFP.recurring).values())[-1]
            assert record["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "texinspect-training"
            assert record["runtime_config"]["parameters"]["data_uri"] == self.pushed
            return
        pytest.fail(f"no check for `texinspect {' '.join(args)}`")

    def shell(self, command: str) -> None:
        """printf / curl: run in bash in a folder holding tile.png, curl against a local server."""
        if command.startswith("curl"):
            url = shlex.split(command)[-1]
            parsed = urlparse(url)
            assert self.forwards[parsed.port][1] == "texinspect-predictor"
            runtime = self.find("ServingRuntime", "texinspect")
            args = runtime["spec"]["containers"][0]["args"]
            name = args[args.index("--model") + 1].partition("=")[0]
            assert parsed.path == f"/v1/models/{name}:predict", "the model name the runtime serves"
            command = command.replace(f"{parsed.scheme}://{parsed.netloc}", self.server_url)
        out = subprocess.run(["bash", "-c", command], cwd=self.tmp, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        if command.startswith("curl"):
            answer = json.loads(out.stdout)
            (prediction,) = answer["predictions"]
            assert {"score", "is_defect", "threshold"} <= set(prediction)


def test_the_path_from_zero_to_first_prediction(
    tmp_path: Path, kfp_host: str, seaweed_s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    import serving_toy_family as toy
    from PIL import Image
    from serving_helpers import running_server

    commands = doc_commands()
    walk = Walk(tmp_path, kfp_host, seaweed_s3)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "tile.png")
    model = toy.write_model(tmp_path / "model", threshold=0.5)
    with running_server([f"texinspect={model}"], tmp_path) as server:
        walk.server_url = server.base_url
        for command in commands:
            argv = shlex.split(command.removesuffix("&").strip())
            if argv[0] == "kubectl":
                walk.kubectl(argv, command)
            elif argv[0] == "export":
                walk.export(argv)
            elif argv[0] == "texinspect":
                walk.texinspect(argv, monkeypatch)
            elif argv[0] in ("printf", "curl"):
                walk.shell(command)
            else:
                pytest.fail(f"{DOC}: no check for `{command}`")
            walk.done.append(argv[0] + " " + argv[1])
    # the path covers the steps: namespace, secrets, launcher config (in the overlay),
    # data push, submit, schedule, first deploy, curl
    assert walk.secrets and walk.pushed and FakeKFP.runs and FakeKFP.recurring
    assert any(c.startswith("kubectl -n texinspect wait") for c in commands)
    assert walk.find("ConfigMap", "kfp-launcher")
    assert len(walk.done) == len(commands)


def test_the_block_parser_joins_continuations() -> None:
    text = f"{MARKER}\n```bash\n# c\nkubectl a \\\n    --b c\n\ncurl x\n```\n"
    assert doc_commands(text) == ["kubectl a --b c", "curl x"]
    assert os.path.basename(DOC) == "kubeflow.md"


def test_the_docs_name_only_apis_that_exist() -> None:
    """Issue 19 (8): no kfp-kubernetes operation the package lacks; TrainJob beside PyTorchJob."""
    import kfp.kubernetes

    text = "\n".join(p.read_text() for p in (REPO / "docs").glob("*.md"))
    for name in re.findall(r"kfp\.kubernetes\.(\w+)|kubernetes\.(\w+)\(", text):
        used = next(n for n in name if n)
        assert hasattr(kfp.kubernetes, used), f"docs name kfp.kubernetes.{used}, which kfp-kubernetes does not have"
    assert "resource step" not in text.replace("no generic resource step", "")
    kubeflow = DOC.read_text()
    assert "TrainJob" in kubeflow and "k8s/training/trainjob.yaml" in kubeflow
    assert re.search(r"\| more GPUs than a node holds, cluster has Kubeflow Trainer v2 \| `k8s/training/trainjob.yaml`", kubeflow)
