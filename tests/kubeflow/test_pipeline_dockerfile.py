"""The Dockerfile, read statically (no container engine here): non-root, no secrets, a CUDA flavor,
and everything the components and manifests expect from the image is put there."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

import yaml

from texinspect.kubeflow.build import FLAVOR_SETTINGS, PIPELINE_FILE
from texinspect.kubeflow.settings import CUDA_IMAGE, DEFAULT_IMAGE
from texinspect.kubeflow.steps import PARAMS_ENV

FLAVORS = ("cpu", "cuda")

REPO = Path(__file__).resolve().parents[2]
SECRET_WORDS = re.compile(r"(PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE|CREDENTIAL|API_KEY)", re.I)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        buffer += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            word, _, rest = buffer.partition(" ")
            out.append((word.upper(), rest.strip()))
            buffer = ""
    return out


DOCKERFILE = instructions((REPO / "Dockerfile").read_text())


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for ins in DOCKERFILE:
        if ins[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(ins)
    return found


def test_final_stage_runs_as_a_fixed_non_root_user() -> None:
    final = stages()[-1]
    users = [args for word, args in final if word == "USER"]
    assert users, "the final stage sets no USER (it would run as root)"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root") and user.isdigit(), "use a numeric uid so runAsNonRoot can verify it"
    assert int(user) == 1000  # the uid the manifests and the pipeline's security context use
    assert [w for w, _ in final].index("USER") > max(
        i for i, (w, _) in enumerate(final) if w in ("RUN", "COPY")
    )


def test_cuda_flavor_is_a_build_arg() -> None:
    args = [a for w, a in DOCKERFILE if w == "ARG"]
    assert any(a.startswith("TORCH_FLAVOR=cpu") for a in args), "CPU by default"
    assert any(a.startswith("BASE_IMAGE=") for a in args)
    run = " ".join(a for w, a in DOCKERFILE if w == "RUN")
    assert "cuda)" in run and "cpu)" in run, "both flavors are handled where torch is installed"
    assert DOCKERFILE[0][0] == "ARG" and any(w == "FROM" and "${BASE_IMAGE}" in a for w, a in DOCKERFILE)


def test_no_secret_is_baked_in() -> None:
    for word, args in DOCKERFILE:
        if word in ("ENV", "ARG", "LABEL"):
            assert not SECRET_WORDS.search(args), (
                f"{word} {args}: secrets come from Kubernetes Secrets at run time"
            )
        if word in ("COPY", "ADD"):
            assert not re.search(r"\.env\b|\.aws|\.kube|secret|\.pem|\.key\b", args, re.I), f"{word} {args}"
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for must in (".env", "*.env", ".venv", "data", "runs", ".git", ".aws", ".kube"):
        assert must in ignored, f".dockerignore should exclude {must}"


def _copied_sources() -> list[str]:
    sources: list[str] = []
    for word, args in DOCKERFILE:
        if word == "COPY" and "--from=" not in args:
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            sources += parts[:-1]
    return sources


def test_copied_files_exist_and_are_not_ignored() -> None:
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for pattern_src in _copied_sources():
        for src in {pattern_src.replace("${TORCH_FLAVOR}", flavor) for flavor in FLAVORS}:
            assert (REPO / src).exists(), f"COPY {src}: not in the repository"
            assert not any(fnmatch.fnmatch(src, pattern) for pattern in ignored), (
                f"COPY {src} is excluded by .dockerignore"
            )


def test_image_serves_what_components_and_manifests_expect() -> None:
    envs = " ".join(a for w, a in DOCKERFILE if w == "ENV")
    assert f"{PARAMS_ENV}=/app/params.yaml" in envs  # resolve-config finds the defaults here
    copies = [a for w, a in DOCKERFILE if w == "COPY"]
    assert any(a.split()[0] == "params.yaml" and a.endswith("params.yaml") for a in copies)
    # the scheduling Job uploads /app/pipelines/...: the YAML compiled for this image's flavor
    assert "pipelines/${TORCH_FLAVOR}/ ./pipelines/" in copies
    assert ("WORKDIR", "/app") in DOCKERFILE
    assert any(w == "ENTRYPOINT" and "texinspect" in a for w, a in DOCKERFILE)
    run = " ".join(a for w, a in DOCKERFILE if w == "RUN")
    assert "psycopg2" in run  # the MLflow server in k8s/base/mlflow.yaml talks to Postgres
    for extra in ("serve", "tracking", "pipelines"):
        assert extra in installed_extras()
    # the image tag the compiled pipeline names is the one the CPU overlay deploys
    overlay = yaml.safe_load((REPO / "k8s" / "overlays" / "cpu" / "kustomization.yaml").read_text())
    (image,) = overlay["images"]
    assert f"{image.get('newName', image['name'])}:{image['newTag']}" == DEFAULT_IMAGE


def installed_extras() -> set[str]:
    """The extras of ``pip install ".[a,b]"`` in the Dockerfile."""
    run = " ".join(a for w, a in DOCKERFILE if w == "RUN")
    match = re.search(r'"\.\[([^\]]+)\]"', run)
    assert match, 'the Dockerfile installs the project with extras: pip install ".[...]"'
    return {e.strip() for e in match.group(1).split(",")}


def test_image_installs_every_extra_a_component_imports() -> None:
    """Issue 19 (2): the extras are derived from what the components' code imports, not listed by hand."""
    from tests.kubeflow.import_closure import component_entry_modules, extras_needed, uncovered

    entry = component_entry_modules()
    needed = extras_needed(entry)
    assert {"hpo", "pipelines", "tracking"} <= needed  # optuna (sweep), kfp, mlflow: the derivation sees them
    missing = needed - installed_extras()
    assert not missing, f"Dockerfile: pip install .[...] lacks extra(s) {sorted(missing)} that components import"
    # and every module they import is brought by the core install or an installed extra
    lost = uncovered(entry, installed_extras())
    assert not lost, f"components import modules no installed extra provides (distribution: module): {lost}"


def test_each_image_flavor_carries_the_yaml_compiled_for_it() -> None:
    """Issue 19 (1): GPU tasks run the CUDA image, and the CPU image ships no GPU request."""
    assert FLAVOR_SETTINGS["cuda"].image == CUDA_IMAGE and FLAVOR_SETTINGS["cpu"].image == DEFAULT_IMAGE
    for flavor in FLAVORS:
        for name in (PIPELINE_FILE, "texinspect-sweep.yaml"):
            spec = next(yaml.safe_load_all((REPO / "pipelines" / flavor / name).read_text()))
            containers = [e["container"] for e in spec["deploymentSpec"]["executors"].values() if "container" in e]
            gpu = [c for c in containers if "accelerator" in c.get("resources", {})]
            images = {c["image"] for c in containers}
            if flavor == "cuda":
                assert gpu and images == {CUDA_IMAGE}, (flavor, name, images)
            else:
                assert not gpu and images == {DEFAULT_IMAGE}, (flavor, name, images)
    # the GPU overlay runs the CUDA image, whose /app/pipelines/ is pipelines/cuda/
    overlay = yaml.safe_load((REPO / "k8s" / "overlays" / "gpu" / "kustomization.yaml").read_text())
    (image,) = overlay["images"]
    assert f"{image.get('newName', image['name'])}:{image['newTag']}" == CUDA_IMAGE
