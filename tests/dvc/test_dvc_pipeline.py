"""`dvc repro` of dvc.yaml on a fresh clone: stages in order, and only downstream ones re-run.

Runs the real CLI stages (FMR-Net, so that every stage, k-means memory bank included, does real
work) on the sample dataset with tiny step counts: about 2-4 minutes on two busy cores. The
clone's params.yaml is the smoke profile written out as plain keys, and the dvc.yaml `profile`
var is emptied, so that editing one key in params.yaml is exactly what a user does to change a
hyper-parameter.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from tests.dvc.dvc_repo import DvcRepo, ran_stages

from texinspect.config import flatten

pytestmark = pytest.mark.slow

STAGES = ["synthesize", "train_phase1", "memory_bank", "train_phase2", "predict", "evaluate"]
TINY = {
    "synthesis.texture_pool": "",
    "synthesis.count": 4,
    "train.max_steps_phase1": 4,
    "train.max_steps_phase2": 4,
    "train.checkpoint_every": 2,
    "train.log_every": 2,
    "train.progress": False,
    "eval.overlays": 1,
    "model": "fmrnet",  # the family whose memory-bank stage does real work (k-means)
    "tracking.enabled": False,  # MLflow logging of `train --phase 2` is tested in tests/tracking
}


def _materialise_smoke(repo: DvcRepo) -> None:
    """params.yaml with the smoke profile and TINY applied as ordinary keys."""
    params = repo.params()
    for key, value in {**flatten(params["profiles"]["smoke"]), **TINY}.items():
        node = params
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    repo.write_params(params)
    repo.set_profile_var("")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> DvcRepo:
    repo = DvcRepo.clone(tmp_path_factory.mktemp("dvc-pipeline"))
    _materialise_smoke(repo)
    repo.git("commit", "-q", "-am", "smoke params")
    repo.make_sample_data()
    return repo


def _phase_step(repo: DvcRepo, phase: str) -> int:
    payload = torch.load(
        repo.root / "runs/dvc/train/checkpoints" / f"{phase}_end.pt", map_location="cpu", weights_only=True
    )
    return int(payload["step"])


def test_repro_runs_every_stage_in_order(pipeline: DvcRepo) -> None:
    result = pipeline.dvc("repro")
    order = ran_stages(result.output)
    assert sorted(order) == sorted(STAGES), result.output[-3000:]
    for before, after in zip(STAGES[1:], STAGES[2:], strict=False):  # the training chain
        assert order.index(before) < order.index(after), order
    lock = yaml.safe_load((pipeline.root / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    assert lock["stages"]["train_phase2"]["params"]["params.yaml"]["train.max_steps_phase2"] == 4
    metrics = json.loads((pipeline.root / "runs/dvc/pred/metrics.json").read_text())
    assert 0.0 <= metrics["image_auroc"] <= 1.0
    assert (pipeline.root / "runs/dvc/pred/curves/roc.csv").is_file()
    assert (pipeline.root / "runs/dvc/train/model/model.yaml").is_file()
    assert _phase_step(pipeline, "phase1") == 4 and _phase_step(pipeline, "phase2") == 4
    assert "up to date" in pipeline.dvc("status").output
    assert ran_stages(pipeline.dvc("repro").output) == []  # nothing changed, nothing runs


def test_changing_a_phase2_param_reruns_only_downstream_stages(pipeline: DvcRepo) -> None:
    phase1_before = (pipeline.root / "runs/dvc/train/checkpoints/phase1_end.pt").read_bytes()
    pipeline.set_param("train.max_steps_phase2", 6)
    result = pipeline.dvc("repro")
    assert ran_stages(result.output) == ["train_phase2", "predict", "evaluate"], result.output[-3000:]
    assert (pipeline.root / "runs/dvc/train/checkpoints/phase1_end.pt").read_bytes() == phase1_before
    assert _phase_step(pipeline, "phase2") == 6  # really retrained, not resumed from the old end state


def test_changing_an_eval_param_reruns_only_evaluate(pipeline: DvcRepo) -> None:
    pipeline.set_param("eval.overlays", 2)
    result = pipeline.dvc("repro")
    assert ran_stages(result.output) == ["evaluate"], result.output[-3000:]


def test_outputs_round_trip_through_the_local_remote(pipeline: DvcRepo) -> None:
    """Push every stage output, lose the workspace and cache, pull: nothing needs re-running."""
    pipeline.dvc("push")
    model = (pipeline.root / "runs/dvc/train/model/weights.pt").read_bytes()
    metrics = (pipeline.root / "runs/dvc/pred/metrics.json").read_bytes()
    shutil.rmtree(pipeline.root / "runs")
    shutil.rmtree(pipeline.root / ".dvc" / "cache")
    pipeline.dvc("pull")
    assert (pipeline.root / "runs/dvc/train/model/weights.pt").read_bytes() == model
    assert (pipeline.root / "runs/dvc/pred/metrics.json").read_bytes() == metrics
    assert "up to date" in pipeline.dvc("status").output
    assert ran_stages(pipeline.dvc("repro").output) == []
