"""Checkpoints that survive a kill: written to a temporary file, then renamed into place.

``checkpoints/last.pt`` always holds the newest state (phase, step, seconds spent, loss
history, module and optimizer states, RNG states); ``checkpoints/<phase>_end.pt`` is kept at
each phase end. Loading uses ``weights_only=True``: a checkpoint holds tensors and plain data.

Under DDP only rank 0 writes (every rank holds the same weights; the RNG state saved is rank
0's); every rank reads the same files on resume.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from texinspect.pipeline.distributed import is_main_process

log = logging.getLogger(__name__)


class Checkpointer:
    def __init__(self, directory: str | Path, enabled_resume: bool = True) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.enabled_resume = enabled_resume

    @property
    def last(self) -> Path:
        return self.dir / "last.pt"

    def phase_end(self, phase: str) -> Path:
        return self.dir / f"{phase}_end.pt"

    def save(
        self,
        phase: str,
        step: int,
        seconds: float,
        history: list[dict[str, float]],
        modules: dict[str, nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        done: bool = False,
        stopped_by: str = "steps",
        rank_checksums: list[float] | None = None,
    ) -> Path:
        """Write ``last.pt`` (and ``<phase>_end.pt`` when ``done``); other DDP ranks write nothing."""
        if not is_main_process():
            return self.last
        payload: dict[str, Any] = {
            "phase": phase,
            "step": int(step),
            "seconds": float(seconds),
            "done": bool(done),
            "stopped_by": stopped_by,
            "history": [{k: float(v) for k, v in row.items()} for row in history],
            "rank_checksums": [float(c) for c in rank_checksums or []],
            "modules": {k: m.state_dict() for k, m in modules.items()},
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": _numpy_state_to_tensor(),
                "python": torch.tensor(list(random.getstate()[1]), dtype=torch.int64),
            },
        }
        tmp = self.dir / "last.pt.tmp"
        torch.save(payload, tmp)
        tmp.replace(self.last)
        if done:
            torch.save(payload, self.phase_end(phase))
        return self.last

    def load_phase(self, phase: str) -> dict[str, Any] | None:
        """The newest saved state of ``phase`` (its end checkpoint, else ``last.pt`` if it is that phase)."""
        for path in (self.phase_end(phase), self.last):
            if path.exists():
                payload = torch.load(path, map_location="cpu", weights_only=True)
                if payload["phase"] == phase:
                    return payload
        return None

    def resume(
        self,
        phase: str,
        modules: dict[str, nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
    ) -> dict[str, Any] | None:
        if not self.enabled_resume:
            return None
        payload = self.load_phase(phase)
        if payload is None:
            return None
        for key, module in modules.items():
            module.load_state_dict(payload["modules"][key])
        for key, opt in optimizers.items():
            if key in payload["optimizers"]:
                opt.load_state_dict(payload["optimizers"][key])
        rng = payload.get("rng")
        if rng is not None and not payload["done"]:
            torch.set_rng_state(rng["torch"])
            _numpy_state_from_tensor(rng["numpy"])
        return payload

    def has_phase_end(self, phase: str) -> bool:
        return self.phase_end(phase).exists()


def _numpy_state_to_tensor() -> torch.Tensor:
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return torch.tensor([*keys.tolist(), pos, has_gauss], dtype=torch.int64)


def _numpy_state_from_tensor(t: torch.Tensor) -> None:
    values = t.tolist()
    keys = np.array(values[:624], dtype=np.uint32)
    np.random.set_state(("MT19937", keys, int(values[624]), int(values[625]), 0.0))
