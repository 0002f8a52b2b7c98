"""A tiny model family for sweep tests: the real training loop, checkpoints and artifact, a trivial net.

Registered in place of ``rbae`` (``texinspect.models.FAMILIES``), because the config's ``model``
key only admits the real families. It trains through ``training.loop.run_phase`` (so NaN losses,
checkpoints, resume and ``on_log`` behave as in the real trainers) and writes a real model
artifact that ``load_detector`` reloads. Behaviour is steered through real config keys:

- ``train.lr``: the logged ``rec`` loss decays as ``1 / (1 + lr * step)``; ``lr >= 1`` gives NaN.
- ``train.weight_decay == 1.0``: ``train`` raises ``RuntimeError`` (a crashing trial);
  ``== 2.0``: it raises ``KeyboardInterrupt`` once per process (Ctrl-C during a trial).
- ``rbae.ffm_kernel``: side of the box filter on the anomaly map (changes the validation metric).
- env ``FAKE_BLOCK_RUN`` = a run folder name: at step ``FAKE_BLOCK_STEP`` of phase 2 that run
  writes ``FAKE_READY_FILE`` and sleeps (the test then kills the process).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from texinspect.config import Config
from texinspect.models.artifact import ModelCard, save_detector
from texinspect.models.base import Detector
from texinspect.training.checkpoint import Checkpointer
from texinspect.training.common import prepare_training_data
from texinspect.training.loop import phase_dir, run_phase

_INTERRUPTED: list[str] = []


class FakeDetector(Detector):
    family = "rbae"

    def __init__(self, channels: int, size: int, kernel: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(channels, size, size))
        self.kernel = kernel

    def anomaly_map(self, images: torch.Tensor) -> torch.Tensor:
        diff = (images - self.mean).abs().mean(dim=1, keepdim=True)
        if self.kernel > 1:
            diff = F.avg_pool2d(diff, self.kernel, stride=1, padding=self.kernel // 2, count_include_pad=False)
        return diff[:, 0]


def build(config: Config) -> FakeDetector:
    return FakeDetector(config.data.channels, config.data.image_size, config.rbae.ffm_kernel)


def _batches(start: int) -> Iterator[int]:
    step = start
    while True:
        yield step
        step += 1


def train(
    config: Config,
    out_dir: str | Path,
    resume: bool = True,
    on_log: Callable[[str, int, dict[str, float]], None] | None = None,
) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config.train.weight_decay == 1.0:
        raise RuntimeError("fake family: this configuration crashes")
    if config.train.weight_decay == 2.0 and not _INTERRUPTED:
        _INTERRUPTED.append(out.name)
        raise KeyboardInterrupt
    data = prepare_training_data(config)
    detector = build(config)
    images = torch.stack([data.train[i]["image"] for i in range(len(data.train))])
    holder = nn.Module()
    holder.register_buffer("w", torch.zeros(1))
    ckpt = Checkpointer(phase_dir(out), enabled_resume=resume)
    ran: dict[str, int] = {}
    block_run = os.environ.get("FAKE_BLOCK_RUN")
    block_step = int(os.environ.get("FAKE_BLOCK_STEP", "0"))

    for phase, steps in (("phase1", config.train.max_steps_phase1), ("phase2", config.train.max_steps_phase2)):
        ran[phase] = 0

        def step(batch: Any, phase: str = phase) -> dict[str, float]:
            ran[phase] += 1
            if phase == "phase2" and block_run == out.name and batch + 1 == block_step:
                Path(os.environ["FAKE_READY_FILE"]).write_text(str(os.getpid()))
                time.sleep(600)
            if config.train.lr >= 1.0:
                return {"loss": float("nan"), "rec": float("nan")}
            rec = 1.0 / (1.0 + config.train.lr * (batch + 1))
            holder.w.fill_(rec)
            return {"loss": rec, "rec": rec}

        run_phase(
            phase,
            step,
            _batches,
            {"holder": holder},
            {},
            ckpt,
            max_steps=max(1, steps),
            checkpoint_every=config.train.checkpoint_every,
            log_every=config.train.log_every,
            progress=False,
            on_log=on_log,
        )
    detector.mean.copy_(images.mean(dim=0))
    card = ModelCard(
        family=config.model,
        config=config.to_dict(),
        image_size=config.data.image_size,
        channels=config.data.channels,
        score_smoothing=config.eval.score_smoothing,
    )
    model_dir = save_detector(detector, card, out / "model")
    (out / "fake_train.json").write_text(json.dumps({"steps_run_here": ran, "pid": os.getpid()}))
    return model_dir
