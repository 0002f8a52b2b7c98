"""The logged model works in a fresh Python process from its artifact alone (real RB-AE network)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from texinspect import tracking
from texinspect.config import Config, load_config, save_config
from texinspect.data.images import load_image
from texinspect.models import family_module
from texinspect.models.artifact import ModelCard, save_detector
from texinspect.prediction import score_images
from texinspect.tracking.backend import fluent, resolve_backend
from texinspect.tracking.pyfunc import encode_images

ROOT = Path(__file__).resolve().parents[2]

PREDICT = """
import json, sys
import pandas as pd
import mlflow.pyfunc
model = mlflow.pyfunc.load_model(sys.argv[1])
import texinspect  # imported by the model's own code/ copy
table = pd.read_json(sys.argv[2], orient="split")
result = {"texinspect": texinspect.__file__}
for n in (1, 4):
    result[str(n)] = model.predict(table.iloc[:n])["score"].tolist()
print("RESULT " + json.dumps(result))
"""


def _rbae_run(tmp_path: Path, tracking_config: Config) -> tuple[Path, Config]:
    """A real (untrained, smoke-sized) RB-AE saved as trainers save it."""
    config = load_config(ROOT / "params.yaml", profile="smoke")
    config.tracking = tracking_config.tracking
    config.data.root = tracking_config.data.root
    torch.manual_seed(0)
    net = family_module("rbae").build(config)
    size = config.data.image_size
    net.set_reference(torch.rand(1, config.data.channels, size, size))
    net.eval()
    card = ModelCard(
        family="rbae", config=config.to_dict(), image_size=size, channels=config.data.channels, threshold=0.5
    )
    run_dir = tmp_path / "rbae-run"
    save_detector(net, card, run_dir / "model")
    save_config(config, run_dir / "config.yaml")
    return run_dir, config


def test_rbae_pyfunc_predicts_in_a_fresh_process_from_the_artifact_alone(
    tmp_path: Path, tracking_config: Config, data_root: Path
) -> None:
    run_dir, config = _rbae_run(tmp_path, tracking_config)
    files = sorted(data_root.rglob("*.png"))[:4]
    from texinspect.models.artifact import load_detector

    detector, card = load_detector(run_dir / "model")
    batch = torch.from_numpy(np.stack([load_image(f, card.image_size, card.channels) for f in files]))
    _, expected = score_images(detector, card, batch)

    run_id = tracking.track_training_run(config, run_dir)
    model_uri = MlflowClient(config.tracking.tracking_uri).get_run(run_id).data.tags["texinspect.model_uri"]
    with fluent(resolve_backend(config.tracking)):
        artifact = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path / "artifact")))
    shutil.rmtree(run_dir)
    inputs = tmp_path / "inputs.json"
    encode_images(files).to_json(inputs, orient="split")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHONPATH"))}
    done = subprocess.run(
        [sys.executable, "-c", PREDICT, str(artifact), str(inputs)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert Path(result["texinspect"]).resolve().is_relative_to(artifact.resolve() / "code")
    assert result["1"] == pytest.approx(expected[:1].tolist(), rel=1e-4)
    assert result["4"] == pytest.approx(expected.tolist(), rel=1e-4)
