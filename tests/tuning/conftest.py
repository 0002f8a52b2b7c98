"""Fixtures for sweep tests: a tiny sample dataset, params files with a sweep section, the fake family."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from texinspect import models
from texinspect.data.sample import make_sample_dataset

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
FAKE_MODULE = "tuning.sweep_fake_family"

# Fast, quiet, self-contained trials: procedural textures, no progress bars, no MLflow unless asked.
FAST = {
    "synthesis": {"texture_pool": ""},
    "train": {"progress": False},
    "tracking": {"enabled": False},
}
# Applied after the smoke profile (which sets its own step counts): 4 + 4 steps, a row per step.
FAST_STEPS = [
    "train.max_steps_phase1=4",
    "train.max_steps_phase2=4",
    "train.checkpoint_every=2",
    "train.log_every=1",
]

FAKE_SPACE = {
    "train.lr": {"type": "float", "low": 0.01, "high": 0.9, "log": True},
    "rbae.ffm_kernel": {"type": "int", "low": 1, "high": 7, "step": 2},
}


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 normal training images (2 held out) and a small test split, 64 px, RGB."""
    root = tmp_path_factory.mktemp("sample") / "data"
    make_sample_dataset(root, n_train=20, n_test_good=2, n_test_defect_per_type=1, size=64, seed=3)
    return root


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture
def write_params(tmp_path: Path, sample_root: Path) -> Callable[..., Path]:
    """``write_params(sweep={...}, space={"rbae": {...}}, config={...})`` -> a params.yaml path.

    Starts from the repository's params.yaml (profiles included), points data.root at the sample
    data and applies ``FAST`` plus ``config``; the sweep section gets small, fast defaults.
    """

    def make(
        space: dict[str, Any] | None = None,
        sweep: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        name: str = "params.yaml",
    ) -> Path:
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        raw = deep_merge(raw, FAST)
        raw = deep_merge(raw, {"data": {"root": str(sample_root)}})
        raw = deep_merge(raw, config or {})
        sweep_raw = {
            "trials": 3,
            "validation": {"images": 8, "seed": 777},
            "sampler": {"kind": "random", "seed": 1},
            "pruner": {"kind": "none"},
            "heartbeat_seconds": 0,
            "space": {"rbae": FAKE_SPACE} if space is None else space,
        }
        raw["sweep"] = deep_merge(sweep_raw, sweep or {})
        path = tmp_path / name
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    return make


@pytest.fixture
def fake_family(monkeypatch: pytest.MonkeyPatch) -> str:
    """The fake family stands in for ``rbae`` for the duration of the test."""
    monkeypatch.setitem(models.FAMILIES, "rbae", dataclasses.replace(models.family_spec("rbae"), module=FAKE_MODULE))
    monkeypatch.syspath_prepend(str(TESTS))
    return FAKE_MODULE


@pytest.fixture
def make_plan() -> Callable[..., Any]:
    """``make_plan(params, out, trials, **plan_sweep kwargs)`` with profile smoke and FAST_STEPS."""
    from texinspect.tuning import plan_sweep

    def make(params: Path, out: Path, trials: int, model: str = "rbae", overrides: list[str] | None = None, **kw: Any):
        return plan_sweep(params, model, out, trials=trials, profile="smoke", overrides=FAST_STEPS + list(overrides or []), **kw)

    return make
