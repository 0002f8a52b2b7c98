"""``texinspect pipeline compile``: both pipelines' YAML and one component YAML per stage.

``pipelines/<flavor>/texinspect-training.yaml`` (and ``texinspect-sweep.yaml``, the Optuna sweep
that retrains its best configuration) is what you upload to Kubeflow (UI or ``kfp.Client``):
``cuda`` requests GPUs and names the CUDA image, ``cpu`` neither;
``components/<stage>.yaml`` are the same components on their own, for other pipelines
(``kfp.components.load_component_from_file``). Both are checked in and CI recompiles them to
make sure they match the code (``texinspect pipeline compile --check``).
"""

from __future__ import annotations

import difflib
import tempfile
from pathlib import Path

import yaml
from kfp import compiler

from texinspect.kubeflow import sweep_pipeline
from texinspect.kubeflow.components import build_components
from texinspect.kubeflow.settings import FLAVOR_SETTINGS
from texinspect.kubeflow.sweep_pipeline import SweepClusterSettings, compile_sweep_pipeline
from texinspect.kubeflow.training_pipeline import PIPELINE_NAME, ClusterSettings, build_pipeline

PIPELINE_FILE = f"{PIPELINE_NAME}.yaml"
SWEEP_WORKERS = SweepClusterSettings().workers
# Component YAMLs are for reuse in other pipelines; their training stages want a GPU.
COMPONENT_SETTINGS = FLAVOR_SETTINGS["cuda"]


def pipeline_path(pipelines_dir: str | Path, settings: ClusterSettings) -> Path:
    """``<pipelines_dir>/<flavor>/texinspect-training.yaml`` for the settings' accelerator."""
    return Path(pipelines_dir) / settings.flavor / PIPELINE_FILE


def compile_pipeline(path: str | Path, settings: ClusterSettings | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(settings), str(path))
    return path


def compile_components(out_dir: str | Path, settings: ClusterSettings | None = None) -> list[Path]:
    settings = settings or COMPONENT_SETTINGS
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, component in build_components(settings.image).items():
        path = out / f"{name}.yaml"
        compiler.Compiler().compile(component, str(path))
        written.append(path)
    return written


def compile_all(
    pipelines_dir: str | Path = "pipelines",
    components_dir: str | Path = "components",
    settings: ClusterSettings | None = None,
    sweep_workers: int = SWEEP_WORKERS,
) -> list[Path]:
    """Write both pipelines' YAML and every component YAML; returns the paths written.

    Without ``settings``: each pipeline once per flavor (``pipelines/cpu/``, ``pipelines/cuda/``);
    with them: the one flavor they describe. ``sweep_workers``: the sweep's parallel workers.
    """
    targets = [settings] if settings else list(FLAVOR_SETTINGS.values())
    written = []
    for target in targets:
        written.append(compile_pipeline(pipeline_path(pipelines_dir, target), target))
        sweep_path = Path(pipelines_dir) / target.flavor / sweep_pipeline.PIPELINE_FILE
        written.append(compile_sweep_pipeline(sweep_path, SweepClusterSettings(target, workers=sweep_workers)))
    return written + compile_components(components_dir, settings)


def stale_files(
    pipelines_dir: str | Path = "pipelines",
    components_dir: str | Path = "components",
    settings: ClusterSettings | None = None,
    sweep_workers: int = SWEEP_WORKERS,
) -> list[str]:
    """Checked-in YAML files that differ from a fresh compile (empty: up to date), with diffs."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        fresh_p, fresh_c = Path(tmp) / "p", Path(tmp) / "c"
        for path in compile_all(fresh_p, fresh_c, settings, sweep_workers):
            if path.is_relative_to(fresh_p):
                kept = Path(pipelines_dir) / path.relative_to(fresh_p)
            else:
                kept = Path(components_dir) / path.relative_to(fresh_c)
            if not kept.is_file():
                problems.append(f"{kept}: missing (run `texinspect pipeline compile`)")
                continue
            if list(yaml.safe_load_all(kept.read_text())) != list(yaml.safe_load_all(path.read_text())):
                diff = difflib.unified_diff(
                    kept.read_text().splitlines(),
                    path.read_text().splitlines(),
                    str(kept),
                    "compiled",
                    lineterm="",
                    n=1,
                )
                problems.append(
                    f"{kept}: differs from the code (run `texinspect pipeline compile`)\n"
                    + "\n".join(list(diff)[:40])
                )
    return problems
