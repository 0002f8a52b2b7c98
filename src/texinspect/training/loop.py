"""One training phase: steps, progress bar, wall-clock budget, periodic checkpoints and resume.

Both model families describe a phase as a ``step(batch) -> {loss name: value}`` function plus the
modules and optimizers it touches; this loop does the bookkeeping so that a killed run resumes
from its last checkpoint with the same step count, optimizer moments, history, random streams and
place in the data order: on the CPU it ends with the same weights, bit for bit, as a run that was
never interrupted (``tests/training/test_exact_resume.py``).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from texinspect.errors import ConfigError
from texinspect.training import distributed
from texinspect.training.batches import resumable_batches
from texinspect.training.checkpoint import Checkpointer

log = logging.getLogger(__name__)

StepFn = Callable[[Any], dict[str, float]]
OnLog = Callable[[str, int, dict[str, float]], None]


class StopAfterPhase(Exception):
    """Raised by :func:`run_phase` once phase ``name`` is complete and checkpointed, when asked.

    ``texinspect train --phase 1`` uses it to stop a family's trainer between the phases (the
    pipeline runs each phase as its own step); ``--phase 2`` then resumes in the same folder.
    """

    def __init__(self, phase: str) -> None:
        super().__init__(f"stopped after {phase} as asked")
        self.phase = phase


@dataclass(frozen=True)
class TrainingHooks:
    """Callers' hooks into every :func:`run_phase` of a trainer, without threading arguments
    through each family's code: loss-row listeners (MLflow, Optuna pruning) and a stop point."""

    on_log: tuple[OnLog, ...] = ()
    stop_after: str | None = None


_HOOKS: contextvars.ContextVar[TrainingHooks] = contextvars.ContextVar("texinspect_training_hooks")


@contextlib.contextmanager
def training_hooks(on_log: OnLog | None = None, stop_after: str | None = None) -> Iterator[TrainingHooks]:
    """Install hooks for the phases run inside the ``with`` block (nesting adds listeners)."""
    outer = _HOOKS.get(TrainingHooks())
    hooks = TrainingHooks(
        on_log=outer.on_log + ((on_log,) if on_log else ()),
        stop_after=stop_after if stop_after is not None else outer.stop_after,
    )
    token = _HOOKS.set(hooks)
    try:
        yield hooks
    finally:
        _HOOKS.reset(token)


@dataclass
class PhaseResult:
    name: str
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)  # one row per logged step
    stopped_by: str = "steps"  # "steps" | "time" | "nan"
    rank_checksums: list[float] = field(default_factory=list)  # DDP: weights checksum per rank at the end

    def losses(self, key: str = "loss") -> list[float]:
        return [row[key] for row in self.history if key in row]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def run_phase(
    name: str,
    step: StepFn,
    batches: Callable[[int], Iterator[Any]],
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    checkpointer: Checkpointer,
    max_steps: int,
    max_seconds: float = 0.0,
    checkpoint_every: int = 200,
    log_every: int = 20,
    progress: bool = True,
    on_log: OnLog | None = None,
    lr_schedule: str = "constant",
    warmup_steps: int = 0,
    generators: dict[str, torch.Generator] | None = None,
) -> PhaseResult:
    """Run (or resume) phase ``name`` until ``max_steps`` or ``max_seconds`` (0 = no limit).

    ``batches(start_step)`` returns an iterator of batches; it is re-created on resume with the
    step reached and must continue the order from there (``infinite_batches`` does).
    ``generators``: random generators the step draws from besides the global ones (saved and
    restored with the checkpoints, so a resumed run draws what an uninterrupted one would).

    Under DDP (``training.distributed``; the step computes its losses through a ``DDPForward``)
    every rank runs this loop in lock-step: the phase starts from rank 0's weights and buffers,
    logged losses are the ranks' means, rank 0's clock decides the wall-clock stop for all
    (otherwise a rank that stopped would leave the others waiting in an all-reduce), and only
    rank 0 shows progress, calls the ``on_log`` listeners and writes checkpoints. At the end the
    ranks' weight checksums are compared (a mismatch raises), rank 0's buffers are broadcast,
    and the others wait until rank 0's end checkpoint is on disk.
    """
    ctx = distributed.current()
    hooks = _HOOKS.get(TrainingHooks())
    listeners = (((on_log,) if on_log else ()) + hooks.on_log) if ctx.is_main else ()
    state = checkpointer.resume(name, modules, optimizers, generators)
    if state is not None and state.get("done"):
        log.info("%s: already complete at step %d (from checkpoint)", name, state["step"])
        result = _saved_result(name, state)
    else:
        run = _Run(name, modules, optimizers, checkpointer, generators, max_steps, max_seconds, state)
        distributed.broadcast_modules(modules.values())  # one start for all ranks (no-op in one process)
        distributed.reseed_for_rank()
        for module in modules.values():
            module.train()
        it = batches(run.step_i)
        bar = tqdm(
            total=max_steps, initial=run.step_i, desc=name, disable=not (progress and ctx.is_main), dynamic_ncols=True
        )
        run.start_clock()
        try:
            stopped_by = _steps(run, step, it, bar, listeners, log_every, checkpoint_every, lr_schedule, warmup_steps)
        finally:
            bar.close()
        result = _end_phase(run, stopped_by)
    if hooks.stop_after == name:
        raise StopAfterPhase(name)
    return result


def _saved_result(name: str, state: dict[str, Any]) -> PhaseResult:
    """The result of a phase its end checkpoint says is complete (returned, not retrained)."""
    return PhaseResult(
        name,
        state["step"],
        state["seconds"],
        state["history"],
        state["stopped_by"],
        list(state.get("rank_checksums", [])),
    )


class _Run:
    """Where a phase stands: step, clock, logged history and the partial sums of the next row.

    Kept together because a checkpoint saves all of it and a resume restores all of it."""

    def __init__(
        self,
        name: str,
        modules: dict[str, nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        checkpointer: Checkpointer,
        generators: dict[str, torch.Generator] | None,
        max_steps: int,
        max_seconds: float,
        state: dict[str, Any] | None,
    ) -> None:
        self.name, self.modules, self.optimizers = name, modules, optimizers
        self.checkpointer, self.generators = checkpointer, generators
        self.max_steps, self.max_seconds = max_steps, max_seconds
        self.step_i: int = state["step"] if state else 0
        self.seconds: float = state["seconds"] if state else 0.0
        self.history: list[dict[str, float]] = state["history"] if state else []
        self.running: dict[str, float] = dict(state.get("running", {})) if state else {}
        self.n_running = int(state.get("n_running", 0)) if state else 0
        self.t0 = time.perf_counter()
        if state:
            log.info("%s: resuming from step %d (%.0f s already spent)", name, self.step_i, self.seconds)

    def start_clock(self) -> None:
        """Count the seconds a resumed phase had already spent."""
        self.t0 = time.perf_counter() - self.seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def out_of_time(self) -> bool:
        return bool(self.max_seconds) and self.elapsed() >= self.max_seconds

    def budget_spent(self) -> float:
        """Share of the phase's budget used so far: steps or seconds, whichever runs out first."""
        by_time = self.elapsed() / self.max_seconds if self.max_seconds else 0.0
        return min(1.0, max(self.step_i / self.max_steps if self.max_steps else 0.0, by_time))

    def add(self, values: dict[str, float]) -> None:
        for key, v in values.items():
            self.running[key] = self.running.get(key, 0.0) + float(v)
        self.n_running += 1

    def log_row(self) -> dict[str, float]:
        """Close the row being accumulated: its means at the current step join the history."""
        row = {k: v / self.n_running for k, v in self.running.items()}
        row["step"] = float(self.step_i)
        self.history.append(row)
        self.running, self.n_running = {}, 0
        return row

    def save(self) -> None:
        self.checkpointer.save(
            self.name,
            self.step_i,
            self.elapsed(),
            self.history,
            self.modules,
            self.optimizers,
            running=self.running,
            n_running=self.n_running,
            generators=self.generators,
        )


def _steps(
    run: _Run,
    step: StepFn,
    it: Iterator[Any],
    bar: Any,
    listeners: tuple[OnLog, ...],
    log_every: int,
    checkpoint_every: int,
    lr_schedule: str,
    warmup_steps: int,
) -> str:
    """The steps of a phase until its step cap or clock stops it; returns why it stopped."""
    stop = distributed.agree(run.out_of_time())
    while run.step_i < run.max_steps and not stop:
        set_learning_rate(run.optimizers.values(), lr_schedule, warmup_steps, run.step_i, run.budget_spent())
        values = step(next(it))
        run.step_i += 1
        values, stop = distributed.reduce_step(values, run.out_of_time())
        if any(not math.isfinite(v) for v in values.values()):
            raise FloatingPointError(f"{run.name}: non-finite loss at step {run.step_i}: {values}")
        run.add(values)
        bar.update(1)
        if run.step_i % log_every == 0 or run.step_i == run.max_steps:
            row = run.log_row()
            bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k != "step"})
            for listener in listeners:
                listener(run.name, run.step_i, row)
        if checkpoint_every and run.step_i % checkpoint_every == 0:
            run.save()
    return "time" if stop and run.step_i < run.max_steps else "steps"


def _end_phase(run: _Run, stopped_by: str) -> PhaseResult:
    """Last partial row, the ranks' sync check, the end checkpoint (then every rank may read it)."""
    if run.n_running:
        run.log_row()
    seconds = run.elapsed()
    checksums = distributed.gather_checksums(run.modules.values())
    distributed.check_in_sync(checksums, run.name)
    distributed.broadcast_modules(run.modules.values())  # BatchNorm statistics: rank 0's on every rank
    run.checkpointer.save(
        run.name,
        run.step_i,
        seconds,
        run.history,
        run.modules,
        run.optimizers,
        done=True,
        stopped_by=stopped_by,
        rank_checksums=checksums,
        generators=run.generators,
    )
    distributed.barrier()  # the end checkpoint is on disk before any rank reads it
    return PhaseResult(run.name, run.step_i, seconds, run.history, stopped_by, checksums)


LR_SCHEDULES = ("constant", "cosine")


def lr_factor(schedule: str, warmup_steps: int, step: int, spent: float) -> float:
    """Multiplier of the base learning rate at ``step`` with ``spent`` (0-1) of the budget used.

    ``constant`` (the papers): 1 after the warm-up. ``cosine``: half a cosine from 1 to 2 % of the
    base rate over the phase's budget (steps, or wall-clock seconds when that runs out first),
    as the reference detector trains; measured in issue 17 (models/rbae/README.md).
    A linear warm-up over ``warmup_steps`` comes first in both.
    """
    if schedule not in LR_SCHEDULES:
        raise ConfigError(f"train.lr_schedule: expected one of {', '.join(LR_SCHEDULES)}, got '{schedule}'")
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if schedule == "constant":
        return warm
    return warm * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, spent)))))


def set_learning_rate(
    optimizers: Iterable[torch.optim.Optimizer], schedule: str, warmup_steps: int, step: int, spent: float
) -> None:
    """Scale every group's base rate (kept as ``initial_lr``, saved with the optimizer) by :func:`lr_factor`."""
    if schedule == "constant" and warmup_steps <= 0:
        return
    factor = lr_factor(schedule, warmup_steps, step, spent)
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor


def infinite_batches(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    seed: int,
    num_workers: int = 0,
    drop_last: bool = True,
) -> Callable[[int], Iterator[Any]]:
    """Factory for :func:`run_phase`: endless shuffled batches, the order seeded by epoch.

    A resumed run enters the epoch at the batch it stopped before (``training.batches``). Under
    DDP each rank gets its own shard (``training.distributed.distributed_batches``) and
    ``batch_size`` is per process.
    """
    if distributed.current().enabled:
        return distributed.distributed_batches(dataset, batch_size, seed, num_workers=num_workers)
    n = len(dataset)  # type: ignore[arg-type]
    batch_size = max(1, min(batch_size, n))

    def order(epoch: int) -> list[int]:
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()

    return resumable_batches(
        dataset, batch_size, order, seed, num_workers, drop_last and n >= batch_size, _worker_seed
    )


def _worker_seed(worker_id: int) -> None:
    seed = torch.initial_seed() % (2**32)
    np.random.seed(seed)
    random.seed(seed)


def steps_for(epochs: int, n_images: int, batch_size: int, cap: int = 0) -> int:
    """Steps of a phase from the epoch count, capped by ``cap`` when positive.

    Under DDP a step sees ``batch_size * world_size`` images, so an epoch has fewer steps; the
    cap counts optimizer steps either way.
    """
    global_batch = max(1, batch_size) * distributed.current().world_size
    steps = max(1, epochs * max(1, n_images // global_batch))
    return min(steps, cap) if cap > 0 else steps


def phase_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"
