"""The trainer contract: what a model family fills in, and the one run that drives every family.

A family subclasses :class:`FamilyTrainer` and fills in four things:

- ``prepare(ctx)``: data and networks, once (the global random streams are already seeded with
  ``config.seed``); sets ``self.val`` (held-out normal images) and ``self.data_info``;
- ``phases()``: its :class:`Phase` list, in order. A phase's ``setup(results so far)`` does the
  work due before it (RB-AE's reference image, FMR-Net's memory bank) and returns the
  :class:`PhasePlan` the shared loop needs: step function, modules and optimizers it trains,
  batches, step and seconds budget;
- ``final_detector(results)``: rank 0, after the last phase: the detector to validate and save;
- ``card_extra(results, validation)`` (and ``summary_extra``): the family's own keys.

:func:`train_family` does the rest the same way for all: output folder, seed, DDP session,
resume (a phase whose end checkpoint exists is returned as done, never retrained), the shared
synthetic validation, calibration and the model artifact (``finalize_model``) and
``train_summary.json`` (:func:`build_summary`). ``docs/architecture.md`` lists the families.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from texinspect.config import Config, TrainConfig
from texinspect.data.datasets import ImageDataset
from texinspect.models.base import Detector
from texinspect.outputs import ensure_output_dir
from texinspect.training.checkpoint import Checkpointer
from texinspect.training.common import MODEL_SUBDIR, ddp_summary, finalize_model, write_summary
from texinspect.training.distributed import DistContext, is_main_process, session
from texinspect.training.loop import PhaseResult, StepFn, phase_dir, run_phase, seed_everything
from texinspect.training.validation import training_validation

log = logging.getLogger(__name__)


@dataclass
class PhasePlan:
    """What one phase trains and for how long: the arguments of ``run_phase`` a family decides."""

    step: StepFn
    batches: Callable[[int], Iterator[Any]]
    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    max_steps: int
    max_seconds: float = 0.0  # 0: no wall-clock limit
    generators: dict[str, torch.Generator] | None = None  # saved with the checkpoints (exact resume)
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    resume: bool | None = None  # None: the run's choice; True: setup left an end checkpoint to reload


@dataclass(frozen=True)
class Phase:
    """A named phase; ``setup`` runs just before it, once the phases before it have finished
    (or been reloaded), so it can depend on them (a frozen encoder, a bank, unused seconds)."""

    name: str
    setup: Callable[[list[PhaseResult]], PhasePlan]


class FamilyTrainer(ABC):
    """One training run of a family: fill in the abstract methods, call :func:`train_family`."""

    family: str = ""

    def __init__(self, config: Config, out: Path, resume: bool = True) -> None:
        self.config, self.out, self.resume = config, Path(out), resume
        self.device = torch.device("cpu")
        self.val: ImageDataset | None = None  # held-out normals: calibration and validation
        self.data_info: dict[str, Any] = {}  # data_root, n_train, n_val, ... for the summary

    @abstractmethod
    def prepare(self, ctx: DistContext) -> None:
        """Data and networks, before any phase."""

    @abstractmethod
    def phases(self) -> list[Phase]:
        """The phases in training order."""

    @abstractmethod
    def final_detector(self, results: list[PhaseResult]) -> Detector:
        """Rank 0 after the phases: the trained detector, with any family-specific calibration."""

    def card_extra(self, results: list[PhaseResult], validation: dict[str, float]) -> dict[str, Any]:
        """The family's keys in the model card (``extra``)."""
        return {}

    def summary_extra(self, results: list[PhaseResult], validation: dict[str, float]) -> dict[str, Any]:
        """The family's keys in ``train_summary.json`` (by default those of the card)."""
        return self.card_extra(results, validation)


def train_family(trainer: FamilyTrainer) -> Path:
    """Prepare, run the phases (resuming), validate, calibrate, write the artifact and the summary.

    In a DDP job every rank calls this and gets ``out/model`` back; rank 0 alone writes it.
    """
    with session(trainer.config.device) as ctx:
        out = ensure_output_dir(trainer.out)  # a read-only or file-valued --out fails now, in one line
        t_start = time.perf_counter()
        seed_everything(trainer.config.seed)
        trainer.device = ctx.device
        trainer.prepare(ctx)
        resumed = saved_steps(out, [p.name for p in trainer.phases()]) if trainer.resume else {}
        results = run_phases(trainer.phases(), out, trainer.resume, trainer.config.train)
        if not is_main_process():
            return out / MODEL_SUBDIR
        return _finish(trainer, ctx, results, resumed, t_start)


def run_phases(phases: list[Phase], out: Path, resume: bool, train: TrainConfig) -> list[PhaseResult]:
    """Set up and run each phase in order into ``out/checkpoints``; finished phases are reloaded."""
    results: list[PhaseResult] = []
    for phase in phases:
        plan = phase.setup(results)
        ckpt = Checkpointer(phase_dir(out), enabled_resume=resume if plan.resume is None else plan.resume)
        results.append(run_plan(phase.name, plan, ckpt, train))
    return results


def run_plan(name: str, plan: PhasePlan, ckpt: Checkpointer, train: TrainConfig) -> PhaseResult:
    """``run_phase`` with the plan's budget and ``train``'s checkpoint, log and progress settings."""
    return run_phase(
        *(name, plan.step, plan.batches, plan.modules, plan.optimizers, ckpt, plan.max_steps, plan.max_seconds),
        *(train.checkpoint_every, train.log_every, train.progress),
        lr_schedule=plan.lr_schedule,
        warmup_steps=plan.warmup_steps,
        generators=plan.generators,
    )


def saved_steps(out: Path, names: list[str]) -> dict[str, int]:
    """The step each phase's checkpoints had reached when this run started (0: none)."""
    ckpt = Checkpointer(phase_dir(out))
    found = {name: ckpt.load_phase(name) for name in names}
    return {name: int(payload["step"]) if payload is not None else 0 for name, payload in found.items()}


def _finish(
    trainer: FamilyTrainer,
    ctx: DistContext,
    results: list[PhaseResult],
    resumed: dict[str, int],
    t_start: float,
) -> Path:
    """Rank 0: the shared validation, calibration + artifact, then the summary."""
    assert trainer.val is not None, f"{trainer.family}: prepare() must set the held-out normals"
    config, device = trainer.config, trainer.device
    detector = trainer.final_detector(results)
    validation = training_validation(detector, config, trainer.val, device)
    log.info("%s: synthetic defects on held-out normals: %s", trainer.family, validation)
    extra = trainer.card_extra(results, validation)
    model_dir = finalize_model(detector, config, trainer.out, trainer.val, device, extra, family=trainer.family)
    summary = build_summary(trainer, ctx, model_dir, results, resumed, detector, validation, t_start)
    write_summary(trainer.out, summary)
    log.info("%s: %s -> %s", trainer.family, {r.name: r.steps for r in results}, model_dir)
    return model_dir


def build_summary(
    trainer: FamilyTrainer,
    ctx: DistContext,
    model_dir: Path,
    results: list[PhaseResult],
    resumed: dict[str, int],
    detector: nn.Module,
    validation: dict[str, float],
    t_start: float,
) -> dict[str, Any]:
    """``train_summary.json``, one key set for every family (``tracking.runs``, the benchmarks and
    the tests read it): per-phase steps, seconds, stop reason and loss rows (under ``phases`` and,
    as rows only, under ``history``), the data, DDP facts, the synthetic validation, the family's keys."""
    info = trainer.data_info
    return {
        "family": trainer.family,
        "device": str(ctx.device),
        "model_dir": str(model_dir),
        "resumed_from": resumed,
        "phases": {r.name: phase_summary(r) for r in results},
        "history": {r.name: r.history for r in results},
        **{f"{r.name}_steps": r.steps for r in results},
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "parameters": sum(p.numel() for p in detector.parameters()),
        "data": info,
        "n_train": info.get("n_train"),
        "n_val": info.get("n_val"),
        "distributed": ddp_summary(ctx, trainer.config.train.batch_size, results),
        **validation,
        **trainer.summary_extra(results, validation),
    }


def phase_summary(r: PhaseResult) -> dict[str, Any]:
    """One phase in the summary: what ``benchmarks.common.read_train_summary`` and the tests read."""
    return {
        "steps": r.steps,
        "seconds": round(r.seconds, 2),
        "steps_per_second": round(r.steps / r.seconds, 3) if r.seconds > 0 else None,
        "stopped_by": r.stopped_by,
        "first_losses": r.history[0] if r.history else {},
        "last_losses": r.history[-1] if r.history else {},
        "history": r.history,
    }
