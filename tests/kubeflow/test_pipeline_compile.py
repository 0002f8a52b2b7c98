"""The compiled pipeline: one command, every stage, GPUs on the training stages, the deploy gate.

Also checks that the YAML checked in under pipelines/ and components/ is what the code compiles
to, so an edit to a component without recompiling fails CI.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from texinspect.cli.pipeline import add_parser
from texinspect.kubeflow.build import PIPELINE_FILE, compile_all, compile_pipeline, stale_files
from texinspect.kubeflow.components import STAGES
from texinspect.kubeflow.settings import CUDA_IMAGE, DEFAULT_IMAGE
from texinspect.kubeflow.training_pipeline import TRAINING_STAGES, ClusterSettings

REPO = Path(__file__).resolve().parents[2]


def _load(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    spec, platform = list(yaml.safe_load_all(path.read_text()))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    return _load(compile_pipeline(tmp_path_factory.mktemp("p") / PIPELINE_FILE))


def test_every_stage_is_in_the_pipeline(compiled: tuple[dict[str, Any], dict[str, Any]]) -> None:
    spec, _ = compiled
    executors = spec["deploymentSpec"]["executors"]
    for stage in STAGES:
        assert f"exec-{stage}" in executors, stage
    assert any("importer" in e for e in executors.values()), "the dataset is imported as an artifact"
    root_tasks = spec["root"]["dag"]["tasks"]
    assert {"resolve-config", "synthesize-defects", "train-phase1", "build-memory-bank", "train-phase2",
            "evaluate-model", "register-model"} <= set(root_tasks)  # fmt: skip
    # the training chain is ordered through artifacts (and synthesis runs before phase 1)
    assert "synthesize-defects" in root_tasks["train-phase1"]["dependentTasks"]
    assert root_tasks["train-phase2"]["inputs"]["artifacts"]["bank"]["taskOutputArtifact"][
        "producerTask"
    ] == ("build-memory-bank")


def test_gpu_requests_are_on_the_training_stages_only(
    compiled: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    spec, k8s = compiled
    for stage in STAGES:
        resources = spec["deploymentSpec"]["executors"][f"exec-{stage}"]["container"]["resources"]
        accelerator = resources.get("accelerator")
        if stage in TRAINING_STAGES:
            assert accelerator["resourceType"] == "nvidia.com/gpu" and accelerator["resourceCount"] == "1", (
                stage
            )
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in k8s[
                f"exec-{stage}"
            ]["tolerations"]
            assert any(m["mountPath"] == "/dev/shm" for m in k8s[f"exec-{stage}"]["emptyDirMounts"])
        else:
            assert accelerator is None, stage
        for key in ("resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest", "resourceMemoryLimit"):
            assert key in resources, (stage, key)


def test_deploy_runs_only_when_the_gate_promotes(compiled: tuple[dict[str, Any], dict[str, Any]]) -> None:
    spec, k8s = compiled
    (condition,) = [t for t in spec["root"]["dag"]["tasks"].values() if t["taskInfo"]["name"] == "promoted"]
    assert (
        condition["triggerPolicy"]["condition"]
        == "inputs.parameter_values['pipelinechannel--register-model-Output'] == true"
    )
    inner = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]
    assert set(inner) == {"deploy-model"}
    assert "deploy-model" not in spec["root"]["dag"]["tasks"]
    assert k8s["exec-deploy-model"]["pvcMount"][0]["mountPath"] == "/mnt/model-store"
    assert k8s["exec-register-model"]["configMapAsEnv"][0]["configMapName"] == "texinspect-config"


def test_components_use_the_project_image_and_install_nothing(
    compiled: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    spec, k8s = compiled
    for stage in STAGES:
        container = spec["deploymentSpec"]["executors"][f"exec-{stage}"]["container"]
        assert container["image"] == CUDA_IMAGE  # the default compile requests GPUs
        text = " ".join(container["command"])
        assert "pip install" not in text and "pip3 install" not in text, stage
        assert k8s[f"exec-{stage}"]["securityContext"]["runAsNonRoot"] is True


def test_every_hyper_parameter_reaches_the_pipeline(compiled: tuple[dict[str, Any], dict[str, Any]]) -> None:
    from texinspect.kubeflow.steps import TYPED_PARAMETERS

    params = compiled[0]["root"]["inputDefinitions"]["parameters"]
    assert {"data_uri", "model", "profile", "overrides", "deploy_variant"} <= set(params)
    assert set(TYPED_PARAMETERS) <= set(params)
    assert params["overrides"]["parameterType"] == "STRING"  # a JSON object of any params.yaml keys
    assert params["batch_size"]["parameterType"] == "NUMBER_INTEGER"


def test_cpu_only_compile_has_no_accelerators(tmp_path: Path) -> None:
    spec, _ = _load(
        compile_pipeline(tmp_path / "cpu.yaml", ClusterSettings(gpus=0, image="registry.local/ti:1"))
    )
    for executor in spec["deploymentSpec"]["executors"].values():
        if "container" in executor:
            assert "accelerator" not in executor["container"].get("resources", {})
            assert executor["container"]["image"] == "registry.local/ti:1"


def test_checked_in_yaml_is_up_to_date() -> None:
    problems = stale_files(REPO / "pipelines", REPO / "components")
    assert not problems, "\n".join(problems)


def test_compile_command_writes_pipeline_and_components(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="texinspect")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "pipeline",
            "compile",
            "--pipelines-dir",
            str(tmp_path / "p"),
            "--components-dir",
            str(tmp_path / "c"),
        ]
    )
    assert args.func(args) == 0
    assert (tmp_path / "p" / "cpu" / PIPELINE_FILE).is_file() and (tmp_path / "p" / "cuda" / PIPELINE_FILE).is_file()
    assert sorted(p.stem for p in (tmp_path / "c").glob("*.yaml")) == sorted(STAGES)
    # each component spec is self-contained and loadable by other pipelines
    from kfp import components

    comp = components.load_component_from_file(str(tmp_path / "c" / "train-phase1.yaml"))
    assert set(comp.component_spec.inputs) == {"config", "data", "world_size"}
    args = parser.parse_args(
        [
            "pipeline",
            "compile",
            "--check",
            "--pipelines-dir",
            str(tmp_path / "p"),
            "--components-dir",
            str(tmp_path / "c"),
        ]
    )
    assert args.func(args) == 0
    (tmp_path / "c" / "deploy-model.yaml").write_text("# edited by hand\n{}\n")
    assert args.func(args) == 1
    assert "deploy-model.yaml: differs" in capsys.readouterr().out


def test_compile_all_returns_every_file(tmp_path: Path) -> None:
    """Both pipelines (training and sweep) in each flavor, and every component."""
    from texinspect.kubeflow import sweep_pipeline

    paths = compile_all(tmp_path / "p", tmp_path / "c")
    assert len(paths) == 4 + len(STAGES) and all(p.stat().st_size > 0 for p in paths)
    assert {p.relative_to(tmp_path / "p").as_posix() for p in paths if p.is_relative_to(tmp_path / "p")} == {
        f"cpu/{PIPELINE_FILE}",
        f"cuda/{PIPELINE_FILE}",
        f"cpu/{sweep_pipeline.PIPELINE_FILE}",
        f"cuda/{sweep_pipeline.PIPELINE_FILE}",
    }


@pytest.mark.parametrize(("gpus", "image"), [(0, DEFAULT_IMAGE), (1, CUDA_IMAGE), (4, CUDA_IMAGE)])
def test_the_image_follows_the_accelerator(tmp_path: Path, gpus: int, image: str) -> None:
    """Issue 19 (1): a GPU compile names the CUDA image, a CPU compile the CPU one."""
    spec, _ = _load(compile_pipeline(tmp_path / "x.yaml", ClusterSettings(gpus=gpus)))
    for stage in STAGES:
        assert spec["deploymentSpec"]["executors"][f"exec-{stage}"]["container"]["image"] == image, stage


@pytest.mark.parametrize("gpus", [0, 1, 2, 4])
def test_ranks_per_pod_equal_the_gpus_per_pod(tmp_path: Path, gpus: int) -> None:
    """Issue 19 (6): world_size is fixed with the GPU request, so no two NCCL ranks share a GPU."""
    spec, _ = _load(compile_pipeline(tmp_path / "x.yaml", ClusterSettings(gpus=gpus)))
    assert "world_size" not in spec["root"]["inputDefinitions"]["parameters"]
    for stage in TRAINING_STAGES:
        task = spec["root"]["dag"]["tasks"][stage]["inputs"]["parameters"]["world_size"]
        ranks = task["runtimeValue"]["constant"]
        resources = spec["deploymentSpec"]["executors"][f"exec-{stage}"]["container"]["resources"]
        gpus_in_pod = int(resources.get("accelerator", {}).get("resourceCount", 0))
        assert ranks == max(1, gpus_in_pod) and gpus_in_pod == gpus, stage


def test_world_size_parameter_points_at_compile_time() -> None:
    from texinspect.cli.pipeline import pipeline_params
    from texinspect.errors import ConfigError

    parser = argparse.ArgumentParser(prog="texinspect")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["pipeline", "run", "--host", "http://x", "--data", "s3://d/x", "--param", "world_size=2"])
    with pytest.raises(ConfigError, match="compile --gpus"):
        pipeline_params(args)


def test_run_sweep_takes_the_sweep_pipelines_parameters_and_yaml() -> None:
    """``pipeline run --sweep`` checks --param against the sweep pipeline and submits its YAML."""
    from texinspect.cli.pipeline import _package, pipeline_params
    from texinspect.errors import ConfigError

    parser = argparse.ArgumentParser(prog="texinspect")
    add_parser(parser.add_subparsers(dest="command"))
    base = ["pipeline", "run", "--host", "http://x", "--data", "s3://d/x", "--flavor", "cpu"]
    args = parser.parse_args([*base, "--sweep", "--param", "trials=7"])
    params, _ = pipeline_params(args)
    assert params["trials"] == 7 and _package(args) == Path("pipelines/cpu/texinspect-sweep.yaml")
    with pytest.raises(ConfigError, match="not a pipeline parameter"):
        pipeline_params(parser.parse_args([*base, "--param", "trials=7"]))  # training has no trials
    assert _package(parser.parse_args(base)) == Path("pipelines/cpu") / PIPELINE_FILE


def test_cache_keys_follow_the_dataset_content(compiled: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """Issue 19 (7): the never-cached content hash feeds resolve-config, whose config every
    cached stage takes, so new data behind the same URI retrains and the same data is cached."""
    spec, _ = compiled
    tasks = spec["root"]["dag"]["tasks"]
    fingerprint = tasks["dataset-fingerprint"]
    assert fingerprint["cachingOptions"].get("enableCache") is not True
    assert fingerprint["inputs"]["artifacts"]["data"]["taskOutputArtifact"]["producerTask"].startswith("importer")
    data_hash = tasks["resolve-config"]["inputs"]["parameters"]["data_hash"]["taskOutputParameter"]
    assert data_hash == {"outputParameterKey": "Output", "producerTask": "dataset-fingerprint"}
    # every cached stage that reads the data also reads the config (so its key holds the hash)
    for name, task in tasks.items():
        artifacts = task.get("inputs", {}).get("artifacts", {})
        if "data" in artifacts and name != "dataset-fingerprint":
            assert task["cachingOptions"].get("enableCache") is True, name
            producer = artifacts["config"]["taskOutputArtifact"]["producerTask"]
            assert producer == "resolve-config", name


def test_fingerprint_step_hashes_the_imported_folder(tmp_path: Path) -> None:
    from texinspect.data.transfer import content_hash
    from texinspect.kubeflow import steps

    (tmp_path / "train" / "good").mkdir(parents=True)
    (tmp_path / "train" / "good" / "a.png").write_bytes(b"1")
    first = steps.dataset_fingerprint(tmp_path)
    assert first == content_hash(tmp_path) and first.startswith("sha256:")
    (tmp_path / "train" / "good" / "a.png").write_bytes(b"2")
    assert steps.dataset_fingerprint(tmp_path) != first


def test_evaluation_outputs_classification_metrics(compiled: tuple[dict[str, Any], dict[str, Any]]) -> None:
    spec, _ = compiled
    outputs = spec["components"]["comp-evaluate-model"]["outputDefinitions"]["artifacts"]
    assert outputs["classification"]["artifactType"]["schemaTitle"] == "system.ClassificationMetrics"
    assert outputs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
