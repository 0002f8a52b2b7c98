"""Model Registry quality gate: the champion alias moves only to a better model."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from mlflow import MlflowClient
from tests.tracking.conftest import FakeRun

from texinspect import tracking
from texinspect.config import Config
from texinspect.tracking.backend import TrackingError


def _champion(config: Config) -> str:
    client = MlflowClient(tracking_uri=config.tracking.tracking_uri)
    return str(client.get_model_version_by_alias(config.tracking.registered_model, "champion").version)


def test_decide_rules() -> None:
    assert tracking.decide("image_auroc", 0.7, None, None)[0] is True
    assert tracking.decide("image_auroc", 0.9, "3", 0.8) == (
        True,
        "image_auroc 0.9000 > 0.8000 of champion v3",
    )
    promoted, reason = tracking.decide("image_auroc", 0.8, "3", 0.8)
    assert not promoted and "<=" in reason and "champion kept" in reason  # a tie keeps the champion
    assert tracking.decide("image_auroc", 0.5, "3", 0.8)[0] is False
    assert tracking.decide("image_auroc", None, None, None)[0] is False
    promoted, reason = tracking.decide("image_auroc", 0.9, "2", None)
    assert not promoted and "no recorded image_auroc" in reason


def test_champion_moves_only_when_the_new_model_is_better(
    tracking_config: Config, fake_run: Callable[..., FakeRun]
) -> None:
    client = MlflowClient(tracking_uri=tracking_config.tracking.tracking_uri)
    name = tracking_config.tracking.registered_model

    first = fake_run("first", image_auroc=0.80, seed=1)
    run1 = tracking.track_training_run(tracking_config, first.run_dir, first.model_dir, first.metrics_path)
    d1 = tracking.register_and_gate(run1, first.metrics_path, tracking_config)
    assert d1.promoted and d1.version == "1" and d1.champion_version is None
    assert _champion(tracking_config) == "1"

    worse = fake_run("worse", image_auroc=0.70, seed=2)
    run2 = tracking.track_training_run(tracking_config, worse.run_dir, worse.model_dir, worse.metrics_path)
    d2 = tracking.register_and_gate(run2, worse.metrics_path, tracking_config)
    assert not d2.promoted and d2.version == "2"
    assert d2.champion_version == "1" and d2.champion_value == pytest.approx(0.80)
    assert "0.7000 <= 0.8000" in d2.reason
    assert _champion(tracking_config) == "1"  # the worse model did not take the alias
    # the decision and its reason are logged on the version and on the run
    v2 = client.get_model_version(name, "2")
    assert v2.tags["gate.decision"] == "rejected" and v2.tags["gate.reason"] == d2.reason
    assert float(v2.tags["gate.value"]) == pytest.approx(0.70)
    run = client.get_run(run2)
    assert run.data.tags["gate.decision"] == "rejected" and run.data.tags["registry.version"] == "2"
    local = client.download_artifacts(run2, "gate/decision.json")
    assert json.loads(open(local).read())["promoted"] is False

    better = fake_run("better", image_auroc=0.90, seed=3)
    run3 = tracking.track_training_run(tracking_config, better.run_dir, better.model_dir, better.metrics_path)
    d3 = tracking.register_and_gate(run3, None, tracking_config)  # metrics read back from the run
    assert d3.promoted and d3.version == "3" and d3.champion_version == "1"
    assert _champion(tracking_config) == "3"
    assert client.get_model_version(name, "3").tags["gate.decision"] == "promoted"

    # registering the worse run again reuses its version and still does not promote it
    again = tracking.register_and_gate(run2, worse.metrics_path, tracking_config)
    assert again.version == "2" and not again.promoted and "of champion v3" in again.reason
    assert len(client.search_model_versions(f"name = '{name}'")) == 3
    assert tracking.register_and_gate(run3, better.metrics_path, tracking_config).promoted  # already champion


def test_model_without_the_gate_metric_is_registered_but_not_promoted(
    tracking_config: Config, fake_run: Callable[..., FakeRun]
) -> None:
    fr = fake_run()
    run_id = tracking.track_training_run(tracking_config, fr.run_dir, fr.model_dir)
    decision = tracking.register_and_gate(run_id, {"pixel_auroc": 0.9}, tracking_config)
    assert not decision.promoted and "no finite image_auroc" in decision.reason
    client = MlflowClient(tracking_uri=tracking_config.tracking.tracking_uri)
    with pytest.raises(Exception, match="alias"):
        client.get_model_version_by_alias(tracking_config.tracking.registered_model, "champion")


def test_gate_metric_comes_from_the_config(tracking_config: Config, fake_run: Callable[..., FakeRun]) -> None:
    config = tracking_config.with_overrides({"tracking.gate_metric": "aupro"})
    fr = fake_run()
    run_id = tracking.track_training_run(config, fr.run_dir, fr.model_dir, fr.metrics_path)
    decision = tracking.register_and_gate(run_id, fr.metrics_path, config)
    assert decision.metric == "aupro" and decision.value == pytest.approx(0.7) and decision.promoted


def test_unknown_run_or_run_without_model_is_a_clear_error(tracking_config: Config, tmp_path) -> None:
    with pytest.raises(TrackingError, match="not found"):
        tracking.register_and_gate("0" * 32, {"image_auroc": 0.9}, tracking_config)
    with tracking.run(tracking_config, "no-model", run_dir=tmp_path / "nm") as tr:
        pass
    with pytest.raises(TrackingError, match="has no logged model"):
        tracking.register_and_gate(tr.run_id, {"image_auroc": 0.9}, tracking_config)
