"""Fixtures for the benchmark smoke tests: a tiny procedural dataset, one torch thread."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from texinspect.data.sample import make_sample_dataset


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def bench_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench") / "data"
    make_sample_dataset(root, n_train=16, n_test_good=3, n_test_defect_per_type=2, size=64, seed=11)
    return root
