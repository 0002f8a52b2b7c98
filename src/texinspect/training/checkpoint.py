"""Checkpoints that survive a kill, a full disk and a corrupt file, and resume bit-exactly.

``checkpoints/last.pt`` always holds the newest state (phase, step, seconds spent, loss
history and the partial sums of the next logged row, module and optimizer states, and every
random stream: torch's, numpy's and Python's global generators, CUDA's, and any generator the
phase owns, e.g. AE-SSIM's window sampler); ``checkpoints/<phase>_end.pt`` is kept at each phase
end. The data order and the synthetic defects are functions of (seed, epoch, index), and the
loop re-enters the epoch at the saved step (``training.batches``), so a run killed and resumed
ends with the same weights as one that was never interrupted (on the CPU; the learning-rate
schedule is a function of the step, or of the wall clock when ``train.max_minutes`` decides).

Files are written through ``texinspect.torch_files`` (temporary file, fsync, rename): a full disk
or a read-only folder ends in one line naming the file, the previous checkpoint is untouched and
``last.pt.tmp`` is removed; one left by a kill mid-write is removed when the next run starts.
Loading uses ``weights_only=True``; a file that cannot be loaded, or whose modules do not fit the
configured network, ends in one line saying what to do.

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

from texinspect.errors import CheckpointError
from texinspect.outputs import ensure_output_dir, write_atomic
from texinspect.torch_files import load_torch_file, torch_bytes
from texinspect.training.distributed import is_main_process

log = logging.getLogger(__name__)

RESUME_ADVICE = "delete it to restart the phase, or pass --no-resume"


class Checkpointer:
    def __init__(self, directory: str | Path, enabled_resume: bool = True) -> None:
        self.dir = ensure_output_dir(directory)
        self.enabled_resume = enabled_resume
        if is_main_process():  # a kill during a write leaves this behind; it is never read
            self.dir.joinpath(self.last.name + ".tmp").unlink(missing_ok=True)

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
        running: dict[str, float] | None = None,
        n_running: int = 0,
        generators: dict[str, torch.Generator] | None = None,
    ) -> Path:
        """Write ``last.pt`` (and ``<phase>_end.pt`` when ``done``); other DDP ranks write nothing.

        ``running``/``n_running``: the loss sums of the row being accumulated for the next log
        step, so a resumed history equals an uninterrupted one. The end checkpoint is written
        first: if the disk fills up between the two, ``last.pt`` still names the unfinished phase
        and the finished one is found through its end checkpoint.
        """
        if not is_main_process():
            return self.last
        payload: dict[str, Any] = {
            "phase": phase,
            "step": int(step),
            "seconds": float(seconds),
            "done": bool(done),
            "stopped_by": stopped_by,
            "history": [{k: float(v) for k, v in row.items()} for row in history],
            "running": {k: float(v) for k, v in (running or {}).items()},
            "n_running": int(n_running),
            "rank_checksums": [float(c) for c in rank_checksums or []],
            "modules": {k: m.state_dict() for k, m in modules.items()},
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "rng": capture_rng(generators),
        }
        data = torch_bytes(payload)
        if done:
            write_atomic(self.phase_end(phase), data)
        write_atomic(self.last, data)
        return self.last

    def load_phase(self, phase: str) -> dict[str, Any] | None:
        """The newest saved state of ``phase`` (its end checkpoint, else ``last.pt`` if it is that phase)."""
        for path in (self.phase_end(phase), self.last):
            if path.exists():
                payload = load_checkpoint(path)
                if payload["phase"] == phase:
                    payload["path"] = str(path)
                    return payload
        return None

    def resume(
        self,
        phase: str,
        modules: dict[str, nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        generators: dict[str, torch.Generator] | None = None,
    ) -> dict[str, Any] | None:
        """Load the saved state of ``phase`` into the modules, optimizers and random streams.

        The random streams are restored for a finished phase too: the next phase then starts from
        the state an uninterrupted run hands it.
        """
        if not self.enabled_resume:
            return None
        payload = self.load_phase(phase)
        if payload is None:
            return None
        path = payload["path"]
        try:
            for key, module in modules.items():
                module.load_state_dict(payload["modules"][key])
            for key, opt in optimizers.items():
                if key in payload["optimizers"]:
                    opt.load_state_dict(payload["optimizers"][key])
        except (KeyError, RuntimeError, ValueError) as exc:
            reason = " ".join(str(exc).split())[:200]
            raise CheckpointError(
                f"checkpoint {path} does not fit the configured network ({reason}): "
                "pass --no-resume or choose another --out"
            ) from None
        if payload.get("rng") is not None:
            restore_rng(payload["rng"], generators)
        return payload

    def has_phase_end(self, phase: str) -> bool:
        return self.phase_end(phase).exists()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """One checkpoint file (``weights_only``); CheckpointError in one line, saying what to do, if it
    is truncated, corrupt or not a training checkpoint. A missing file raises FileNotFoundError."""
    payload = load_torch_file(
        path, f"checkpoint {path} is corrupt or not a texinspect checkpoint: {RESUME_ADVICE}", CheckpointError
    )
    if not isinstance(payload, dict) or not {"phase", "step", "modules"} <= set(payload):
        raise CheckpointError(f"checkpoint {path} is not a texinspect training checkpoint: {RESUME_ADVICE}")
    return payload


# --------------------------------------------------------------------------- random streams


def capture_rng(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Every random stream training draws from, as tensors and plain values (``weights_only`` loads)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, mt_state, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(mt_state, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    """Inverse of :func:`capture_rng` (also reads the older layout: numpy and Python as flat tensors)."""
    torch.set_rng_state(state["torch"])
    numpy_state = state.get("numpy")
    if isinstance(numpy_state, dict):
        keys = numpy_state["keys"].numpy().astype(np.uint32)
        np.random.set_state(
            ("MT19937", keys, numpy_state["pos"], numpy_state["has_gauss"], numpy_state["cached_gaussian"])
        )
    elif isinstance(numpy_state, torch.Tensor):  # checkpoints before issue 20
        values = numpy_state.tolist()
        np.random.set_state(
            ("MT19937", np.array(values[:624], dtype=np.uint32), int(values[624]), int(values[625]), 0.0)
        )
    python_state = state.get("python")
    if isinstance(python_state, dict):
        random.setstate(
            (python_state["version"], tuple(python_state["state"].tolist()), python_state["gauss_next"])
        )
    elif isinstance(python_state, torch.Tensor):  # checkpoints before issue 20
        random.setstate((3, tuple(python_state.tolist()), None))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    for key, generator in (generators or {}).items():
        saved = state.get("generators", {}).get(key)
        if saved is not None:
            generator.set_state(saved)
