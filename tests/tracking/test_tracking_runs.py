"""Logging runs to MLflow (SQLite store in tmp_path): params, losses, metrics, artifacts, model."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from tests.tracking.conftest import FakeRun

from texinspect import tracking
from texinspect.config import Config
from texinspect.errors import DataError
from texinspect.models.artifact import load_detector
from texinspect.prediction import score_images
from texinspect.tracking.backend import fluent, resolve_backend
from texinspect.tracking.provenance import dvc_dir_hash
from texinspect.tracking.pyfunc import encode_images


def _client(config: Config) -> MlflowClient:
    return MlflowClient(tracking_uri=config.tracking.tracking_uri)


def _artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path or None):
        if item.is_dir:
            found |= _artifacts(client, run_id, item.path)
        else:
            found.add(item.path)
    return found


def test_track_training_run_logs_params_losses_metrics_artifacts(
    tracking_config: Config, fake_run: Callable[..., FakeRun]
) -> None:
    fr = fake_run(image_auroc=0.8)
    run_id = tracking.track_training_run(tracking_config, fr.run_dir, fr.model_dir, fr.metrics_path)
    assert run_id is not None
    client = _client(tracking_config)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    for key, value in tracking_config.flat().items():  # the whole resolved config
        assert key in params, key
        expected = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        assert params[key] == expected, key
    assert params["dataset.md5"] == dvc_dir_hash(tracking_config.data.root)["md5"]
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert run.data.tags["mlflow.source.git.commit"] == commit
    assert run.data.tags["texinspect.kind"] == "train"
    # losses: the full history, at the logged steps
    for phase, rows in fr.history.items():
        for key in ("loss",):
            logged = client.get_metric_history(run_id, f"{phase}/{key}")
            assert [(int(m.step), m.value) for m in sorted(logged, key=lambda m: m.step)] == [
                (int(r["step"]), pytest.approx(r[key])) for r in rows
            ]
    assert client.get_metric_history(run_id, "phase2/seg")[-1].value == pytest.approx(1.0)
    # final metrics (NaN f1 left out), summary numbers
    assert run.data.metrics["image_auroc"] == pytest.approx(0.8)
    assert run.data.metrics["aupro"] == pytest.approx(0.7)
    assert "f1" not in run.data.metrics
    assert run.data.metrics["train.phases.phase1.steps"] == 15
    assert run.data.tags["eval.threshold_source"] == "model"
    # artifacts: checkpoints, memory bank, summaries, metrics, tables, curves, overlays, overview; no maps
    arts = _artifacts(client, run_id)
    for expected in (
        "run/checkpoints/phase1_end.pt",
        "run/memory_bank.pt",
        "run/train_summary.json",
        "run/config.yaml",
        "evaluation/metrics.json",
        "evaluation/per_type.csv",
        "evaluation/curves/roc.csv",
        "evaluation/curves/roc.png",
        "evaluation/curves/pr.png",
        "evaluation/overlays/scratch/000.png",
        "evaluation/overview.png",  # the picture `make demo` ends with
        "config/resolved_config.json",
    ):
        assert expected in arts, expected
    assert not any(a.startswith("evaluation/maps") for a in arts)
    assert run.data.tags["texinspect.model_uri"].startswith("models:/")
    # the dataset appears as an MLflow dataset input with the DVC hash as digest
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == params["dataset.md5"].removesuffix(".dir")


def test_logging_a_folder_twice_reuses_the_run(
    tracking_config: Config, fake_run: Callable[..., FakeRun]
) -> None:
    fr = fake_run()
    first = tracking.track_training_run(tracking_config, fr.run_dir, fr.model_dir)
    second = tracking.track_training_run(tracking_config, fr.run_dir, fr.model_dir, fr.metrics_path)
    assert first == second
    client = _client(tracking_config)
    runs = client.search_runs([client.get_experiment_by_name("texinspect-test").experiment_id])
    assert len(runs) == 1
    assert len(client.get_metric_history(first, "phase1/loss")) == len(fr.history["phase1"])
    assert client.get_run(first).data.metrics["image_auroc"] == pytest.approx(0.8)
    state = json.loads((fr.run_dir / tracking.RUN_FILE).read_text())
    assert state["run_id"] == first and state["model_uri"]


def test_live_run_streams_losses_and_is_not_logged_twice(
    tracking_config: Config, fake_run: Callable[..., FakeRun]
) -> None:
    fr = fake_run()
    with tracking.run(tracking_config, "live", kind="train", run_dir=fr.run_dir) as tr:
        for step in (5, 10, 15):  # what run_phase(on_log=tr.log_losses) does
            tr.log_losses("phase1", step, {"loss": 1.0 / step, "step": float(step)})
        live_id = tr.run_id
    assert tracking.track_training_run(tracking_config, fr.run_dir, fr.model_dir) == live_id
    history = _client(tracking_config).get_metric_history(live_id, "phase1/loss")
    assert sorted(int(m.step) for m in history) == [5, 10, 15]


def test_failed_block_marks_the_run_failed(tracking_config: Config, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with tracking.run(tracking_config, "crash", run_dir=tmp_path / "crash") as tr:
            raise RuntimeError("boom")
    assert _client(tracking_config).get_run(tr.run_id).info.status == "FAILED"


def test_pyfunc_loads_from_the_artifact_alone_for_batches_of_1_and_4(
    tracking_config: Config, fake_run: Callable[..., FakeRun], tmp_path: Path, data_root: Path
) -> None:
    import mlflow.pyfunc

    fr = fake_run()
    detector, card = load_detector(fr.model_dir)
    files = sorted((data_root / "train" / "good").glob("*.png")) + sorted(
        (data_root / "test" / "good").glob("*.png")
    )
    from texinspect.data.images import load_image

    images = torch.from_numpy(np.stack([load_image(f, card.image_size, card.channels) for f in files]))
    expected_maps, expected_scores = score_images(detector, card, images)
    run_id = tracking.track_training_run(tracking_config, fr.run_dir, fr.model_dir)
    model_uri = _client(tracking_config).get_run(run_id).data.tags["texinspect.model_uri"]
    shutil.rmtree(fr.run_dir)  # nothing but the logged artifact is left
    with fluent(resolve_backend(tracking_config.tracking)):
        local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path / "dl")))
    assert (local / "MLmodel").is_file() and (local / "code" / "texinspect" / "prediction.py").is_file()
    model = mlflow.pyfunc.load_model(str(local))
    for batch in (1, 4):
        out = model.predict(encode_images(files[:batch]))
        assert list(out.columns) == ["score", "is_defect"]
        assert out["score"].to_numpy() == pytest.approx(expected_scores[:batch], rel=1e-5)
        assert out["is_defect"].tolist() == [bool(s >= card.threshold) for s in expected_scores[:batch]]
    with_maps = model.predict(encode_images(files[:4]), params={"return_maps": True, "batch_size": 3})
    maps = np.array(with_maps["anomaly_map"].tolist())
    assert maps.shape == (4, card.image_size, card.image_size)
    assert maps == pytest.approx(expected_maps[:4], rel=1e-5, abs=1e-6)
    with pytest.raises(DataError, match="not valid base64"):
        model.unwrap_python_model().predict(None, encode_images(files[:1]).assign(image="@@not base64@@"))


def test_download_model_gives_the_texinspect_folder(
    tracking_config: Config, fake_run: Callable[..., FakeRun], tmp_path: Path
) -> None:
    fr = fake_run()
    original = (fr.model_dir / "weights.pt").read_bytes()
    run_id = tracking.track_training_run(tracking_config, fr.run_dir, fr.model_dir, fr.metrics_path)
    tracking.register_and_gate(run_id, fr.metrics_path, tracking_config)
    shutil.rmtree(fr.run_dir)
    folder = tracking.download_model(
        tracking.champion_uri(tracking_config), tmp_path / "served", tracking_config
    )
    assert (folder / "weights.pt").read_bytes() == original
    detector, card = load_detector(folder)
    assert card.family == "fake" and card.threshold == pytest.approx(0.25)


def test_tracking_disabled_logs_nothing(tmp_path: Path, tracking_config: Config) -> None:
    db = tmp_path / "never.db"
    config = tracking_config.with_overrides(
        {"tracking.enabled": False, "tracking.tracking_uri": f"sqlite:///{db}"}
    )
    with tracking.run(config, "off", run_dir=tmp_path / "off") as tr:
        tr.log_losses("phase1", 1, {"loss": 1.0})
        tr.log_model(tmp_path)
    assert tr.run_id is None and not tr.online
    assert not db.exists()
    assert not (tmp_path / "off" / tracking.OFFLINE_FILE).exists()


def test_evaluation_run_of_its_own(tracking_config: Config, fake_run: Callable[..., FakeRun]) -> None:
    fr = fake_run()
    run_id = tracking.track_evaluation(tracking_config, fr.metrics_path.parent, model_run_id="abc")
    run = _client(tracking_config).get_run(run_id)
    assert run.data.tags["texinspect.kind"] == "evaluate"
    assert run.data.tags["texinspect.model_run_id"] == "abc"
    assert run.data.metrics["pixel_auroc"] == pytest.approx(0.9)


def test_run_folder_artifacts_leave_out_duplicates(
    tracking_config: Config, fake_run: Callable[..., FakeRun]
) -> None:
    """An evaluation folder inside the run and a last.pt equal to a phase end are logged once."""
    fr = fake_run()
    inner = fr.run_dir / "pred"
    shutil.copytree(fr.metrics_path.parent, inner)
    end = fr.run_dir / "checkpoints" / "phase1_end.pt"
    shutil.copyfile(end, fr.run_dir / "checkpoints" / "last.pt")
    run_id = tracking.track_training_run(tracking_config, fr.run_dir, fr.model_dir, inner / "metrics.json")
    arts = _artifacts(_client(tracking_config), run_id)
    assert not any(a.startswith(("run/pred", "run/model", "run/checkpoints/last.pt")) for a in arts), arts
    assert "evaluation/metrics.json" in arts and "run/checkpoints/phase1_end.pt" in arts
    (fr.run_dir / "checkpoints" / "last.pt").write_bytes(b"a different, newer state")
    assert "checkpoints/last.pt" not in tracking.runs.run_exclusions(fr.run_dir, fr.model_dir, None)


def test_missing_or_bad_inputs_are_clear_errors(tracking_config: Config, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="run folder not found"):
        tracking.track_training_run(tracking_config, tmp_path / "nope")
    bad = tmp_path / "pred"
    bad.mkdir()
    (bad / "metrics.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="must be a JSON object"):
        tracking.track_evaluation(tracking_config, bad)


def test_sweep_trials_are_child_runs(tracking_config: Config, tmp_path: Path) -> None:
    with tracking.run(tracking_config, "sweep", kind="sweep", run_dir=tmp_path / "sweep") as parent:
        for trial in range(2):
            overrides = {"train.lr": 10.0 ** -(3 + trial)}
            with tracking.run(
                tracking_config.with_overrides(overrides),
                f"trial-{trial}",
                kind="sweep",
                run_dir=tmp_path / f"trial-{trial}",
                parent_run_id=parent.run_id,
            ) as child:
                child.log_metrics({"image_auroc": 0.5 + trial / 10})
    client = _client(tracking_config)
    children = client.search_runs(
        [client.get_run(parent.run_id).info.experiment_id], f"tags.mlflow.parentRunId = '{parent.run_id}'"
    )
    assert sorted(r.data.params["train.lr"] for r in children) == ["0.0001", "0.001"]
    assert all(r.data.tags["texinspect.kind"] == "sweep" for r in children)
