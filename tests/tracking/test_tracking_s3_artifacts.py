"""SQLite tracking with artifacts straight to S3 (tracking.artifact_location: s3://...)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mlflow.pyfunc
from tests.s3_server import SeaweedS3
from tests.tracking.conftest import FakeRun

from texinspect import tracking
from texinspect.config import Config
from texinspect.tracking.backend import fluent, resolve_backend
from texinspect.tracking.pyfunc import encode_images


def test_artifacts_and_model_go_to_the_bucket(
    s3_env: SeaweedS3, s3_bucket: str, tracking_config: Config, fake_run: Callable[..., FakeRun]
) -> None:
    config = tracking_config.with_overrides({"tracking.artifact_location": f"s3://{s3_bucket}/mlartifacts"})
    fr = fake_run()
    run_id = tracking.track_training_run(config, fr.run_dir, fr.model_dir, fr.metrics_path)
    keys = s3_env.keys(s3_bucket, "mlartifacts/")
    assert any(k.endswith(f"{run_id}/artifacts/evaluation/metrics.json") for k in keys), keys[:20]
    assert any(k.endswith("artifacts/model/weights.pt") for k in keys)
    decision = tracking.register_and_gate(run_id, fr.metrics_path, config)
    with fluent(resolve_backend(config.tracking)):
        model = mlflow.pyfunc.load_model(f"models:/{decision.model_name}@champion")
    png = sorted(Path(config.data.root).rglob("*.png"))[0]
    assert len(model.predict(encode_images([png]))) == 1
