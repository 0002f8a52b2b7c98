"""Where a served model comes from: local folders, file://, MLflow `models:/NAME@champion` (a real
SQLite tracking store) and S3 (a real SeaweedFS server on loopback); each loaded model answers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import serving_toy_family as toy
from serving_helpers import b64, write_images
from tests.s3_server import SeaweedS3, s3_bucket_fixture, s3_env_fixture, seaweed_s3_fixture  # noqa: F401

from texinspect.errors import ModelError, TexinspectError
from texinspect.prediction import predict
from texinspect.serving.model_uri import resolve_model_uri
from texinspect.serving.predictor import TexinspectModel

SIZE = 16


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("model_uri")
    model = toy.write_model(root / "run" / "model", size=SIZE, threshold=0.2, pixel_threshold=0.3)
    images = write_images(root / "images", count=2, size=32)
    table = predict(model, root / "images", root / "pred", device="cpu").set_index("path")
    return {"root": root, "model": model, "images": images, "table": table}


def _answers_like_predict(local: Path, toy_model: dict[str, Any]) -> None:
    """Load the resolved folder as the server does and check one V1 request against `predict`."""
    model = TexinspectModel("toy", local, device="cpu")
    model.load()
    path = toy_model["images"][0]
    body = {"instances": [{"image_b64": b64(path.read_bytes())}]}
    response, _ = asyncio.run(model(body))
    assert response["predictions"][0]["score"] == pytest.approx(
        toy_model["table"].loc[path.name, "score"], abs=1e-6
    )
    model.stop()


def test_local_forms(toy_model: dict[str, Any]) -> None:
    model = toy_model["model"]
    assert resolve_model_uri(str(model)) == model
    assert resolve_model_uri(f"file://{model}") == model
    assert resolve_model_uri(str(model.parent)) == model  # the run folder that holds model/
    assert resolve_model_uri(str(model / "model.yaml")) == model


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("/no/such/folder", "does not exist"),
        ("ftp://host/model", "unsupported scheme 'ftp'"),
        ("", "model URI is empty"),
    ],
)
def test_bad_uris_name_the_problem(uri: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        resolve_model_uri(uri)


def test_folder_without_a_model(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no model here")
    with pytest.raises(ModelError, match="no model.yaml under"):
        resolve_model_uri(str(tmp_path))


def test_mlflow_registry_champion(
    toy_model: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Logged and registered the way the pipeline does it (texinspect.tracking), served by alias."""
    from texinspect import tracking
    from texinspect.config import Config

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)  # restored after the test
    config = Config().with_overrides(
        {
            "tracking.tracking_uri": store,
            "tracking.artifact_location": str(tmp_path / "artifacts"),
            "tracking.registered_model": "toy",
        }
    )
    run_dir = toy_model["model"].parent
    run_id = tracking.track_training_run(config, run_dir, toy_model["model"])
    assert run_id is not None
    assert tracking.register_and_gate(run_id, {config.tracking.gate_metric: 0.9}, config).promoted
    local = resolve_model_uri("models:/toy@champion", tmp_path / "cache", tracking_uri=store)
    assert (local / "model.yaml").read_bytes() == (toy_model["model"] / "model.yaml").read_bytes()
    _answers_like_predict(local, toy_model)
    with pytest.raises(TexinspectError, match="toy@nosuchalias"):
        resolve_model_uri("models:/toy@nosuchalias", tmp_path / "cache", tracking_uri=store)


def test_s3_prefix(
    toy_model: dict[str, Any],
    s3_env: SeaweedS3,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    from texinspect.storage import upload_dir

    upload_dir(toy_model["model"], f"s3://{s3_bucket}/models/toy")
    local = resolve_model_uri(f"s3://{s3_bucket}/models/toy", tmp_path / "cache")
    assert (local / "weights.pt").read_bytes() == (toy_model["model"] / "weights.pt").read_bytes()
    _answers_like_predict(local, toy_model)
    with pytest.raises(TexinspectError, match="no objects under"):
        resolve_model_uri(f"s3://{s3_bucket}/models/missing", tmp_path / "cache2")
