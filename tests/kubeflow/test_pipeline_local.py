"""The whole Kubeflow pipeline on one machine (kfp.local), end to end, on the procedural sample data.

Every stage runs for real in its own subprocess: config, synthesis, phase 1, the step between
the phases, phase 2, predict + evaluate, MLflow registration behind the champion gate (SQLite in
the output folder), and the gated deploy step (model staged on the model store, InferenceService
rendered and validated, not applied). RB-AE takes the open gate (first model in an empty registry
becomes champion, so it is deployed); FMR-Net runs with tracking off, where the gate cannot
decide, so the deploy step must not run. Tiny step counts keep each run to a few minutes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from texinspect.config import load_config
from texinspect.data.sample import make_sample_dataset
from texinspect.kubeflow.crd_schemas import validate_custom
from texinspect.kubeflow.local import run_local, summary

REPO = Path(__file__).resolve().parents[2]
TINY = {
    "train.max_steps_phase1": 6,
    "train.max_steps_phase2": 6,
    "train.checkpoint_every": 3,
    "train.progress": False,
    "synthesis.count": 4,
    "eval.overlays": 1,
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "sample"
    make_sample_dataset(root, n_train=16, n_test_good=4, n_test_defect_per_type=2, size=64, seed=3)
    return root


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(("family", "tracking"), [("rbae", True), ("fmrnet", False)])
def test_local_pipeline_end_to_end(
    family: str, tracking: bool, sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(REPO)  # relative paths in params.yaml (the texture pool) resolve as for the CLI
    params = {"model": family, "profile": "smoke", "params_file": str(REPO / "params.yaml"), "seed": 1}
    run = run_local(sample, tmp_path, params, {**TINY, "tracking.enabled": tracking})

    # the resolved config every stage read: profile, overrides and typed parameters applied
    config = load_config(run.artifact("resolve-config", "config"))
    assert config.model == family and config.seed == 1
    assert (
        config.train.max_steps_phase1 == 6
        and config.data.image_size == load_config(REPO / "params.yaml", profile="smoke").data.image_size
    )
    # synthesis: the sample of artificial defects with its preview
    synthetic = run.artifact("synthesize-defects", "synthetic")
    assert (synthetic / "preview.png").is_file() and len(list((synthetic / "masks").glob("*.png"))) == 4
    # phase 1 left its checkpoint; the step between the phases kept it and added its own output
    assert list((run.artifact("train-phase1", "checkpoints") / "checkpoints").glob("*.pt"))
    bank = run.artifact("build-memory-bank", "bank")
    if family == "fmrnet":
        assert (bank / "memory_bank.pt").is_file()
    # phase 2: the same model artifact `texinspect train` writes
    model = run.artifact("train-phase2", "model")
    assert (model / "model.yaml").is_file() and (model / "weights.pt").is_file()
    assert yaml.safe_load((model / "model.yaml").read_text())["family"] == family
    # evaluation: the metrics contract, also as KFP metrics
    evaluation = run.artifact("evaluate-model", "evaluation")
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert 0.0 <= metrics["image_auroc"] <= 1.0 and (evaluation / "scores.csv").is_file()
    assert run.metrics == metrics
    assert "image_auroc" in run.artifact("evaluate-model", "report").read_text()
    if not tracking:  # no registry: not promoted, and the deploy step is skipped by dsl.If
        assert run.registration["promoted"] is False and "tracking is off" in run.registration["reason"]
        assert not run.deployed and not (tmp_path / "model-store").exists()
        assert "skipped (not promoted)" in summary(run)
        return
    # registration: the first model in an empty registry becomes champion, so it is deployed
    assert (tmp_path / "mlflow.db").is_file()
    assert run.registration["promoted"] is True and str(run.registration["version"]) == "1"
    assert run.deployed
    manifest = yaml.safe_load(run.artifact("deploy-model", "manifest").read_text())
    validate_custom(manifest)
    assert manifest["spec"]["predictor"]["model"]["storageUri"] == "pvc://texinspect-models/texinspect/v1"
    staged = tmp_path / "model-store" / "texinspect" / "v1"
    assert sorted(p.name for p in staged.iterdir()) == sorted(p.name for p in model.iterdir())
    text = summary(run)
    assert "image_auroc" in text and "rendered" in text
