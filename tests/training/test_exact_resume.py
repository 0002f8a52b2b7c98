"""Kill-and-resume is exact: a run killed (two or three times) and resumed ends with the very weights, bit for bit,
of a run that was never interrupted, for every family that trains through the shared loop (issue 20).

A kill is an exception raised from a loss-row listener: nothing is written after it, exactly as
after a SIGKILL between two checkpoints, so the resumed run redoes the steps since the last one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from texinspect.config import Config, load_config
from texinspect.data.sample import make_sample_dataset
from texinspect.models import family_module
from texinspect.training.loop import training_hooks

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"

# family -> kill points (phase, step), in order. 18 training images in batches of 4: 4 steps an
# epoch; checkpoints every 3 steps, so every resume enters an epoch in its middle (3, 6, 15), and
# each kill loses the steps since the last checkpoint.
KILLS = {
    "rbae": [("phase1", 5), ("phase2", 1), ("phase2", 7)],  # phase2 1: before its first checkpoint
    "fmrnet": [("phase1", 7), ("phase2", 5)],
    "aessim": [("train", 5), ("train", 16)],
}


class Killed(Exception):
    """Stands for SIGKILL: raised between checkpoints, nothing is saved after it."""


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exact_resume") / "data"
    make_sample_dataset(root, n_train=20, n_test_good=2, n_test_defect_per_type=1, size=64, seed=2)
    return root


def _config(family: str, root: Path) -> Config:
    return load_config(
        PARAMS,
        {
            "model": family if family != "aessim" else "rbae",  # AE-SSIM is a family, not a config model
            "data.root": str(root),
            "device": "cpu",
            "synthesis.texture_pool": "",  # procedural sources: no dependence on ../shared
            "train.progress": False,
            "train.max_steps_phase1": 10,
            "train.max_steps_phase2": 10,
            "train.checkpoint_every": 3,
            "train.log_every": 2,  # not a divisor of checkpoint_every: a partial row is saved
            "train.lr_schedule": "cosine",  # the schedule must continue exactly too
            "train.warmup_steps": 2,
            "fmrnet.lr_schedule": "cosine",
        },
        profile="smoke",
    )


def _train(family: str, config: Config, out: Path, kill_at: tuple[str, int] | None = None) -> None:
    def listener(phase: str, step: int, row: dict[str, float]) -> None:
        if kill_at is not None and (phase, step) >= kill_at and phase == kill_at[0]:
            raise Killed(f"{phase} step {step}")

    # log_every 2: listeners see steps 2, 4, 6, ...; kill at the first logged step >= the kill point
    with training_hooks(on_log=listener):
        family_module(family).train(config, out, resume=True)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "model" / "weights.pt", map_location="cpu", weights_only=True)


def _histories(out: Path) -> dict[str, object]:
    summary = json.loads((out / "train_summary.json").read_text())
    phases = summary["phases"]
    return {
        name: phase.get("history", summary.get("history", {}).get(name)) for name, phase in phases.items()
    }


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(KILLS))
def test_killed_and_resumed_run_is_bit_identical_to_an_uninterrupted_one(
    family: str, data_root: Path, tmp_path: Path
) -> None:
    config = _config(family, data_root)
    straight = tmp_path / "straight"
    _train(family, config, straight)

    resumed = tmp_path / "resumed"
    for kill_at in KILLS[family]:
        with pytest.raises(Killed):
            _train(family, config, resumed, kill_at)
        assert (resumed / "checkpoints" / "last.pt").exists() and not (resumed / "model").exists()
    _train(family, config, resumed)

    want, got = _weights(straight), _weights(resumed)
    assert set(got) == set(want)
    differing = {
        k: float((got[k].double() - want[k].double()).abs().max())
        for k in want
        if not torch.equal(got[k], want[k])
    }
    assert differing == {}, (
        f"{len(differing)} of {len(want)} tensors differ, e.g. {sorted(differing.items())[:3]}"
    )
    assert _histories(resumed) == _histories(straight)  # the logged losses too


def test_random_streams_round_trip_and_older_checkpoints_still_restore() -> None:
    """Every stream comes back exactly (numpy's cached Gaussian and Python's gauss_next included);
    checkpoints written before issue 20 (numpy and Python states as flat tensors) still load."""
    import random

    import numpy as np

    from texinspect.training.checkpoint import capture_rng, restore_rng

    generator = torch.Generator().manual_seed(7)
    np.random.seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian behind
    random.seed(5)
    random.gauss(0, 1)  # leaves gauss_next behind
    torch.rand(3, generator=generator)
    state = capture_rng({"windows": generator})
    want = (
        np.random.standard_normal(3),
        random.gauss(0, 1),
        torch.rand(2),
        torch.rand(2, generator=generator),
    )
    np.random.seed(0)  # everything moved on, elsewhere
    random.seed(0)
    torch.manual_seed(0)
    generator.manual_seed(0)
    restore_rng(state, {"windows": generator})
    got = (
        np.random.standard_normal(3),
        random.gauss(0, 1),
        torch.rand(2),
        torch.rand(2, generator=generator),
    )
    assert np.array_equal(got[0], want[0]) and got[1] == want[1]
    assert torch.equal(got[2], want[2]) and torch.equal(got[3], want[3])

    _, keys, pos, has_gauss, _ = np.random.get_state()
    old = {
        "torch": torch.get_rng_state(),
        "numpy": torch.tensor([*keys.tolist(), pos, has_gauss], dtype=torch.int64),
        "python": torch.tensor(list(random.getstate()[1]), dtype=torch.int64),
    }
    expected = np.random.randint(0, 1000, 4)
    np.random.seed(1)
    restore_rng(old)
    assert np.array_equal(np.random.randint(0, 1000, 4), expected)
