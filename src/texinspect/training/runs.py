"""Training one run folder, by phase: everything, phase 1 only, or phase 2 from a phase-1 folder.

``texinspect train`` and the pipeline's training steps call the same function, :func:`train_run`
(the phase split: stop after phase 1, refuse phase 2 without it), then
:func:`texinspect.tracking.log_finished_run` (MLflow logging of a run trained to its model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from texinspect.config import Config
from texinspect.errors import ConfigError
from texinspect.models.registry import family_module
from texinspect.training.checkpoint import Checkpointer
from texinspect.training.loop import StopAfterPhase, phase_dir, training_hooks

PHASES = ("1", "2", "all")


@dataclass(frozen=True)
class TrainOutcome:
    """What :func:`train_run` did: ``model_dir`` is None when it stopped after phase 1."""

    phase: str
    out: Path
    model_dir: Path | None


def train_run(config: Config, out: str | Path, phase: str = "all", resume: bool = True) -> TrainOutcome:
    """Train ``config.model`` into ``out``: phase ``1`` (checkpointed, then stop), ``2`` (continue
    a folder whose phase 1 has finished, always resuming) or ``all``."""
    if phase not in PHASES:
        raise ConfigError(f"training phase must be 1, 2 or all, got {phase!r}")
    out = Path(out)
    family = family_module(config.model)
    if phase == "1":
        with training_hooks(stop_after="phase1"):
            try:
                model_dir = family.train(config, out, resume=resume)
            except StopAfterPhase:
                return TrainOutcome(phase, out, None)
        return TrainOutcome(phase, out, model_dir)  # no separate phase 1: trained to the end
    if phase == "2" and not Checkpointer(phase_dir(out)).has_phase_end("phase1"):
        raise ConfigError(
            f"{out}: phase 1 has not finished in this folder; run `texinspect train --phase 1 --out {out}` first"
        )
    return TrainOutcome(phase, out, family.train(config, out, resume=resume or phase == "2"))
