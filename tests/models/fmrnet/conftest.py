"""Shared fixtures: a tiny procedural dataset and the smoke configuration for FMR-Net."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from texinspect.config import Config, load_config
from texinspect.data.sample import make_sample_dataset

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fmrnet_sample") / "data"
    make_sample_dataset(root, n_train=24, n_test_good=4, n_test_defect_per_type=2, size=64, seed=0)
    return root


@pytest.fixture(scope="session")
def make_config():  # -> Callable[..., Config]
    """Smoke-profile FMR-Net config over a dataset folder, plus overrides (dotted keys)."""
    return smoke_config


def smoke_config(root: Path, overrides: dict[str, object] | None = None) -> Config:
    base = {
        "model": "fmrnet",
        "data.root": str(root),
        "device": "cpu",
        "train.progress": False,
        "synthesis.texture_pool": "",  # procedural sources: no dependence on ../shared
    }
    base.update(overrides or {})
    return load_config(REPO / "params.yaml", base, profile="smoke")
