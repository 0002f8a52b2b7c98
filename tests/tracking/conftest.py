"""Fixtures for tracking tests: an isolated MLflow store, a fake model family, run folders."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `tests.*` imports work under plain `pytest` too
    sys.path.insert(0, str(ROOT))

from tests.s3_server import s3_bucket_fixture, s3_env_fixture, seaweed_s3_fixture  # noqa: E402, F401

from texinspect.config import Config, save_config  # noqa: E402
from texinspect.models import FAMILIES, FamilySpec, discover  # noqa: E402
from texinspect.models.artifact import ModelCard, save_detector  # noqa: E402

IMAGE_SIZE = 16


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No tracking server or S3 endpoint of the developer's shell leaks into a test."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.setenv("TEXINSPECT_TRACKING_PROBE_TIMEOUT", "3")
    discover()
    monkeypatch.setitem(FAMILIES, "fake", FamilySpec("fake", "tests.tracking.fake_family"))


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """A small folder of PNG files standing in for the dataset (its DVC hash is logged)."""
    root = tmp_path / "data" / "sample"
    rng = np.random.default_rng(0)
    for split in ("train/good", "test/good"):
        (root / split).mkdir(parents=True)
        for i in range(3):
            pixels = (rng.random((20, 20, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / split / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def mlflow_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow database: creating one takes seconds, copying it milliseconds."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_config(tmp_path: Path, data_root: Path, mlflow_db_template: Path) -> Config:
    """Config logging to a SQLite file and artifact folder inside ``tmp_path``."""
    shutil.copyfile(mlflow_db_template, tmp_path / "mlflow.db")
    return Config().with_overrides(
        {
            "tracking.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "tracking.artifact_location": str(tmp_path / "mlartifacts"),
            "tracking.experiment": "texinspect-test",
            "tracking.registered_model": "texinspect-test",
            "data.root": str(data_root),
            "data.image_size": IMAGE_SIZE,
            "train.batch_size": 4,
        }
    )


@dataclass
class FakeRun:
    """A finished run folder as the trainers and `texinspect evaluate` leave it."""

    run_dir: Path
    model_dir: Path
    metrics_path: Path
    metrics: dict[str, float]
    history: dict[str, list[dict[str, float]]]


def write_fake_run(root: Path, config: Config, image_auroc: float, seed: int = 0) -> FakeRun:
    """Run folder (model, checkpoints, memory bank, summary) plus an evaluation folder."""
    from tests.tracking.fake_family import FakeDetector

    torch.manual_seed(seed)
    run_dir = root / "run"
    detector = FakeDetector(config.data.channels)
    card = ModelCard(
        family="fake",
        config=config.to_dict(),
        image_size=IMAGE_SIZE,
        channels=config.data.channels,
        threshold=0.25,
        score_smoothing=1.0,
    )
    model_dir = save_detector(detector, card, run_dir / "model")
    save_config(config, run_dir / "config.yaml")
    (run_dir / "checkpoints").mkdir()
    torch.save({"step": 3, "w": torch.zeros(4)}, run_dir / "checkpoints" / "phase1_end.pt")
    torch.save({"memory": torch.ones(2, 3)}, run_dir / "memory_bank.pt")
    history = {
        "phase1": [{"loss": 1.0 / s, "rec": 0.5 / s, "step": float(s)} for s in (5, 10, 15)],
        "phase2": [{"loss": 2.0 / s, "seg": 0.1 * s, "step": float(s)} for s in (5, 10)],
    }
    summary = {
        "family": "fake",
        "phases": {"phase1": {"steps": 15, "seconds": 1.5}, "phase2": {"steps": 10, "seconds": 1.0}},
        "history": history,
        "parameters": 28,
        "device": "cpu",
    }
    (run_dir / "train_summary.json").write_text(json.dumps(summary))
    pred = root / "pred"
    (pred / "curves").mkdir(parents=True)
    (pred / "overlays" / "scratch").mkdir(parents=True)
    (pred / "maps" / "test" / "good").mkdir(parents=True)
    metrics = {"image_auroc": image_auroc, "pixel_auroc": 0.9, "aupro": 0.7, "f1": float("nan")}
    (pred / "metrics.json").write_text(json.dumps({**metrics, "threshold_source": "model"}))
    (pred / "per_type.csv").write_text("defect_type,n,image_auroc\nscratch,3,0.8\n")
    (pred / "curves" / "roc.csv").write_text("fpr,tpr,threshold\n0,0,1\n1,1,0\n")
    (pred / "curves" / "pr.csv").write_text("recall,precision,threshold\n1,0.5,0\n")
    for name in ("curves/roc.png", "curves/pr.png", "overlays/scratch/000.png", "overview.png"):
        Image.new("RGB", (8, 8)).save(pred / name)
    np.save(pred / "maps" / "test" / "good" / "000.png.npy", np.zeros((4, 4), np.float32))
    return FakeRun(run_dir, model_dir, pred / "metrics.json", metrics, history)


@pytest.fixture
def fake_run(tmp_path: Path, tracking_config: Config) -> Callable[..., FakeRun]:
    """Factory: ``fake_run("name", image_auroc=0.8, seed=0)`` writes a run under tmp_path/name."""

    def make(name: str = "run-a", image_auroc: float = 0.8, seed: int = 0) -> FakeRun:
        return write_fake_run(tmp_path / name, tracking_config, image_auroc, seed)

    return make
