"""Sweeps with the real model families on the sample data (smoke profile, a few steps per phase)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from texinspect.cli import main
from texinspect.config import load_config
from texinspect.models.artifact import load_card
from texinspect.training.validation import synthetic_validation
from texinspect.tuning.study import open_study

from .conftest import FAST_STEPS

RBAE_SPACE = {
    "rbae": {
        "rbae.patch_sizes": {"type": "categorical", "choices": [[2, 4], [2]]},
        "rbae.msfdm_lambdas": {"type": "simplex", "low": 0.05, "high": 1.0},
        "rbae.loss.rec2": {"type": "float", "low": 10.0, "high": 300.0, "log": True},
        "train.lr": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True},
    }
}
FMRNET_SPACE = {
    "fmrnet": {
        "synthesis.transparency_min": {"type": "float", "low": 0.05, "high": 0.6},
        "fmrnet.memory_size": {"type": "categorical", "choices": [8, 16]},
        "fmrnet.texton_size": {"type": "categorical", "choices": [1, 2]},
        "fmrnet.loss.adv1": {"type": "float", "low": 0.1, "high": 10.0, "log": True},
        "fmrnet.lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
    }
}


# Real networks are slow on a shared CPU: two steps per phase, two images per batch.
REAL = ["train.max_steps_phase1=2", "train.max_steps_phase2=2", "train.batch_size=2"]


def _sets() -> list[str]:
    return [arg for item in FAST_STEPS + REAL for arg in ("--set", item)]


def test_rbae_three_trial_sweep_and_its_best_params_train(write_params, make_plan, tmp_path: Path, capsys) -> None:
    params = write_params(space=RBAE_SPACE)
    out = tmp_path / "sweep"
    argv = ["sweep", "--model", "rbae", "--trials", "3", "--config", str(params), "--profile", "smoke", "--out", str(out)]
    assert main([*argv, *_sets()]) == 0
    printed = capsys.readouterr().out
    assert "best trial" in printed and "best_params.yaml" in printed

    plan = make_plan(params, out, 3, overrides=REAL)
    trials = open_study(plan.ref, plan.settings).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    best = max(trials, key=lambda t: t.value)
    for t in trials:  # each trial trained what it sampled
        card = load_card(Path(t.user_attrs["run_dir"]) / "model")
        assert card.config["rbae"]["patch_sizes"] == t.user_attrs["overrides"]["rbae.patch_sizes"]
        assert sum(card.config["rbae"]["msfdm_lambdas"]) == pytest.approx(1.0, abs=1e-5)
        assert not (Path(t.user_attrs["run_dir"]) / "checkpoints").exists()

    best_params = out / "best_params.yaml"
    run = tmp_path / "best-run"
    assert main(["train", "--config", str(best_params), "--out", str(run)]) == 0
    trained = load_card(run / "model").config
    assert trained == load_config(best_params).to_dict()
    for key, value in best.user_attrs["overrides"].items():
        section, *rest = key.split(".")
        node = trained[section]
        for part in rest:
            node = node[part]
        assert node == value, key
    # same config, same seed: the retrained model scores what the best trial scored
    retrained = synthetic_validation(run / "model", plan.base, n_images=8, seed=777)
    assert retrained["pixel_auroc"] == pytest.approx(best.value, abs=1e-3)


def test_fmrnet_sweep_over_memory_texton_and_transparency(write_params, make_plan, tmp_path: Path) -> None:
    from texinspect.tuning import run_sweep

    params = write_params(space=FMRNET_SPACE)
    plan = make_plan(params, tmp_path / "sweep", 2, model="fmrnet", overrides=REAL)
    result = run_sweep(plan, plots=False)
    assert result.summary["states"] == {"COMPLETE": 2}
    for t in open_study(plan.ref, plan.settings).trials:
        card = load_card(Path(t.user_attrs["run_dir"]) / "model")
        o = t.user_attrs["overrides"]
        assert card.config["fmrnet"]["memory_size"] == o["fmrnet.memory_size"]
        assert card.config["fmrnet"]["texton_size"] == o["fmrnet.texton_size"]
        assert card.config["synthesis"]["transparency_min"] == o["synthesis.transparency_min"]
    assert yaml.safe_load((tmp_path / "sweep" / "best_params.yaml").read_text())["model"] == "fmrnet"
