"""train.lr_schedule / train.warmup_steps: the factor's shape, the loop applying it per step,
and a resumed phase continuing the same schedule (the base rate travels with the optimizer)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from texinspect.config import load_config
from texinspect.errors import ConfigError
from texinspect.training.checkpoint import Checkpointer
from texinspect.training.loop import lr_factor, run_phase

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def test_factor_warms_up_then_follows_half_a_cosine_to_two_percent() -> None:
    assert lr_factor("constant", 0, 0, 0.0) == 1.0
    assert lr_factor("constant", 10, 0, 0.0) == pytest.approx(0.1)
    assert lr_factor("constant", 10, 9, 0.5) == 1.0
    assert lr_factor("cosine", 0, 0, 0.0) == pytest.approx(1.0)
    assert lr_factor("cosine", 0, 0, 0.5) == pytest.approx(0.02 + 0.98 * 0.5)
    assert lr_factor("cosine", 0, 0, 1.0) == pytest.approx(0.02)
    assert lr_factor("cosine", 4, 1, 0.0) == pytest.approx(0.5)  # warm-up multiplies the cosine
    with pytest.raises(ConfigError, match="train.lr_schedule"):
        lr_factor("step", 0, 0, 0.0)


def test_config_refuses_an_unknown_schedule() -> None:
    assert load_config(PARAMS, ["train.lr_schedule=cosine"]).train.lr_schedule == "cosine"
    with pytest.raises(ConfigError, match="lr_schedule"):
        load_config(PARAMS, ["train.lr_schedule=linear"])


def _batches(start: int) -> Iterator[int]:
    return itertools.count(start)


def _run(ckpt: Checkpointer, model: nn.Linear, opt: torch.optim.Optimizer, seen: list[float], stop_at: int | None,
         steps: int = 20) -> None:
    def step(batch: int) -> dict[str, float]:
        if stop_at is not None and batch == stop_at:
            raise KeyboardInterrupt  # a kill in the middle of the phase
        seen.append(opt.param_groups[0]["lr"])
        loss = model(torch.ones(1, 2)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    run_phase("p", step, _batches, {"m": model}, {"o": opt}, ckpt, max_steps=steps, checkpoint_every=5,
              log_every=5, progress=False, lr_schedule="cosine", warmup_steps=4)


def test_loop_sets_the_rate_every_step_and_a_resumed_phase_continues_it(tmp_path: Path) -> None:
    base = 0.1
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=base)
    whole: list[float] = []
    _run(Checkpointer(tmp_path / "whole"), model, opt, whole, None)
    expected = [base * lr_factor("cosine", 4, i, i / 20) for i in range(20)]
    assert whole == pytest.approx(expected)
    assert whole[0] == pytest.approx(base / 4) and whole[-1] < 0.05 * base

    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=base)
    first: list[float] = []
    with pytest.raises(KeyboardInterrupt):
        _run(Checkpointer(tmp_path / "killed"), model, opt, first, stop_at=12)
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=base)  # a fresh process: base rate from the config
    rest: list[float] = []
    _run(Checkpointer(tmp_path / "killed"), model, opt, rest, None)
    assert first[:10] + rest == pytest.approx(whole[:10] + whole[10:])
    assert not math.isclose(rest[0], base)
