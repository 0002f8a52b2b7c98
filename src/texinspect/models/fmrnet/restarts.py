"""Phase-1 restarts (a choice for short budgets): train phase 1 N times, keep the best encoder.

At a CPU budget the spread between seeds is larger than any hyper-parameter effect measured
(magnetic tile, three 15-minute models: image AUROC 0.55-0.69), and a weak seed is visible
without labels: its window memory distances separate synthetic defects on the held-out normals
poorly. With ``fmrnet.phase1_restarts = N > 1`` phase 1 is trained N times (seeds ``seed + 1000 i``,
the same data split and synthetic defects), each on an equal share of what is left of phase 1's
budget (steps or seconds). After each, a memory bank is built from its encoder (the memory-bank
stage's own k-means, same seed) and its patch path (encoder + memory, no decoder) scores synthetic
defects drawn on the held-out normals; the candidate with the best mean of image and pixel AUROC
becomes ``checkpoints/phase1_end.pt``. The memory-bank stage and phase 2 then run as always, so
the CLI, DVC and Kubeflow stages give the same model. Test labels are never read.

Layout (resumable: a finished candidate is neither retrained nor rescored)::

    OUT/phase1_restarts/r<i>/checkpoints/phase1_restart<i>_end.pt   candidate i's phase 1 (its
                                                                    last.pt while it trains)
    OUT/phase1_restarts/r<i>/memory_bank.pt                         its bank (selection only)
    OUT/phase1_restarts/r<i>/record.json                            seed, steps, seconds, scores
    OUT/phase1_restarts/selection.json                              all records and the winner
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from texinspect.config import Config
from texinspect.errors import ConfigError
from texinspect.models.fmrnet.memory_bank import (
    MEMORY_FILE,
    build_memory_bank,
    load_encoder_source,
    load_memory_bank,
)
from texinspect.models.fmrnet.network import FMRNet
from texinspect.torch_files import save_torch_file
from texinspect.training.checkpoint import Checkpointer, load_checkpoint
from texinspect.training.common import TrainData
from texinspect.training.distributed import barrier, is_main_process
from texinspect.training.loop import PhaseResult, phase_dir
from texinspect.training.validation import Scorer, training_validation

log = logging.getLogger(__name__)

RESTARTS_DIR = "phase1_restarts"
SELECTION_FILE = "selection.json"
RECORD_FILE = "record.json"
PHASE1 = "phase1"  # phase 1's name (training uses it); candidate i trains as phase1_restart<i>
SEED_STRIDE = 1000  # candidate i trains with seed + 1000 i (top-level seeds 0, 1, 2 never collide)

# run_candidate(config, run_dir, phase_name, max_seconds, max_steps) -> the candidate's phase 1
RunCandidate = Callable[[Config, Path, str, float, int], PhaseResult]


def restart_count(config: Config) -> int:
    n = config.fmrnet.phase1_restarts
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"fmrnet.phase1_restarts must be an integer >= 1 (1 = no restarts), got {n!r}")
    return n


def candidate_phase(index: int) -> str:
    """The phase name candidate ``index`` trains under (its checkpoints and logged losses)."""
    return f"{PHASE1}_restart{index}"


def candidate_budget(total_seconds: float, done: list[dict[str, Any]], remaining: int) -> float:
    """Seconds of training for the next candidate: an equal share of what the finished candidates
    left, less the selection time (bank + scoring) they took on average, so that all N candidates,
    selection included, fit ``total_seconds``. 0 (no time limit) stays 0."""
    if total_seconds <= 0:
        return 0.0
    spent = sum(r["train_seconds"] + r["selection_seconds"] for r in done)
    overhead = statistics.fmean(r["selection_seconds"] for r in done) if done else 0.0
    return max(1.0, (total_seconds - spent) / max(1, remaining) - overhead)


def selection_score(record: dict[str, Any]) -> float:
    """Mean of the patch path's synthetic image and pixel AUROC (a NaN pixel AUROC counts as 0.5)."""
    pixel = record["synthetic_pixel_auroc"]
    pixel = 0.5 if math.isnan(pixel) else pixel
    return 0.5 * (record["synthetic_image_auroc"] + pixel)


def _read_record(run_dir: Path, steps_done: int | None) -> dict[str, Any] | None:
    path = run_dir / RECORD_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record if steps_done is None or record.get("steps") == steps_done else None


def _end_step(checkpoint: Path) -> int | None:
    if not checkpoint.exists():
        return None
    return int(load_checkpoint(checkpoint).get("step", -1))


def patch_path_scorer(net: FMRNet) -> Scorer:
    """The patch path alone (encoder + memory, no decoder): each pixel gets the mean memory distance
    of the windows covering it, each image its largest window distance (the ``patch`` image rule).
    A phase-1 candidate has no trained decoder yet, so this is what can be measured of it."""

    def score(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        windows = net.patch_scores(images)
        maps = net.stitch_window_scores(windows, images.shape[-2], images.shape[-1])
        return maps, windows.flatten(1).amax(dim=1)

    return score


def score_candidate(
    config: Config, run_dir: Path, phase: str, data: TrainData, device: torch.device
) -> dict[str, float]:
    """Bank from the candidate's encoder (k-means with ``config``'s seed), then the patch path's
    synthetic-defect AUROC on the held-out normals (defects seeded by ``config``, the same for all)."""
    checkpoint = Checkpointer(phase_dir(run_dir)).phase_end(phase)
    bank_path = build_memory_bank(config, checkpoint, run_dir / MEMORY_FILE, images=data.train)
    net, _ = load_encoder_source(config, checkpoint, device)
    net.set_memory(load_memory_bank(bank_path, config)["memory"])
    return training_validation(net, config, data.val, device, scorer=patch_path_scorer(net))


def promote(run_dir: Path, phase: str, out: Path, index: int) -> Path:
    """Copy the winner's phase-end checkpoint to ``out/checkpoints/phase1_end.pt``, renamed to
    phase 1, so the bank stage and phase 2 read it as any phase 1."""
    src = Checkpointer(phase_dir(run_dir)).phase_end(phase)
    dst = Checkpointer(phase_dir(out)).phase_end(PHASE1)
    payload = load_checkpoint(src)
    payload["phase"] = PHASE1
    payload["restart"] = index
    return save_torch_file(payload, dst)


def _train_candidate(
    config: Config,
    i: int,
    run_dir: Path,
    data: TrainData,
    device: torch.device,
    run_candidate: RunCandidate,
    budget: float,
    steps: int,
) -> dict[str, Any]:
    """Train candidate ``i`` (seed ``seed + 1000 i``), score it on rank 0, return its record."""
    phase = candidate_phase(i)
    cand = config.with_overrides({"seed": config.seed + SEED_STRIDE * i})
    result = run_candidate(cand, run_dir, phase, budget, max(1, steps))
    t0 = time.perf_counter()
    if is_main_process():  # one bank and one scoring; the other DDP ranks read the record
        Checkpointer(phase_dir(run_dir)).last.unlink(missing_ok=True)  # a copy of the phase end
        scores = score_candidate(config, run_dir, phase, data, device)
        record = {
            "index": i,
            "seed": cand.seed,
            "steps": result.steps,
            "stopped_by": result.stopped_by,
            "train_seconds": result.seconds,
            "max_seconds": budget,
            "selection_seconds": time.perf_counter() - t0,
            **scores,
        }
        record["score"] = selection_score(record)
        (run_dir / RECORD_FILE).write_text(json.dumps(record, indent=2))
    barrier()
    saved = _read_record(run_dir, None)
    assert saved is not None
    return saved


def select_phase1(
    config: Config,
    out: Path,
    data: TrainData,
    device: torch.device,
    run_candidate: RunCandidate,
    total_seconds: float,
    total_steps: int,
    resume: bool = True,
) -> dict[str, Any]:
    """Train the N candidates (or reuse finished ones), score them, promote the best; returns the
    selection (also written to ``OUT/phase1_restarts/selection.json``)."""
    n = restart_count(config)
    root = out / RESTARTS_DIR
    records: list[dict[str, Any]] = []
    for i in range(n):
        run_dir = root / f"r{i}"
        phase = candidate_phase(i)
        steps_done = _end_step(Checkpointer(phase_dir(run_dir)).phase_end(phase))  # None: not finished
        record = _read_record(run_dir, steps_done) if resume and steps_done is not None else None
        if record is None:
            budget = candidate_budget(total_seconds, records, n - i)
            record = _train_candidate(config, i, run_dir, data, device, run_candidate, budget, total_steps // n)
        log.info(
            "phase-1 restart %d/%d (seed %d, %d steps): synthetic image %.3f, pixel %.3f (patch path)",
            i + 1,
            n,
            record["seed"],
            record["steps"],
            record["synthetic_image_auroc"],
            record["synthetic_pixel_auroc"],
        )
        records.append(record)
    best = max(range(n), key=lambda i: records[i]["score"])  # first of equals
    selection = {
        "restarts": n,
        "chosen": best,
        "rule": "max mean synthetic AUROC of the patch path",
        "candidates": records,
    }
    if is_main_process():
        promote(root / f"r{best}", candidate_phase(best), out, best)
        (root / SELECTION_FILE).write_text(json.dumps(selection, indent=2))
    barrier()
    log.info("phase 1: restart %d of %d kept (score %.3f)", best, n, records[best]["score"])
    return selection


def selection_done(config: Config, out: Path) -> bool:
    """Whether ``out`` holds a finished selection for ``config``'s restart count whose winner is
    the promoted ``phase1_end.pt`` (then phase 1 is complete: ``--phase 2`` never retrains it,
    even where the candidates' folders were not carried along)."""
    selection = read_selection(out)
    promoted = Checkpointer(phase_dir(out)).phase_end(PHASE1)
    if selection is None or selection.get("restarts") != restart_count(config) or not promoted.exists():
        return False
    payload = load_checkpoint(promoted)
    chosen = selection["chosen"]
    return (
        payload.get("restart") == chosen and payload.get("step") == selection["candidates"][chosen]["steps"]
    )


def read_selection(out: Path) -> dict[str, Any] | None:
    """The selection of a run with restarts (for its summary), or None."""
    path = out / RESTARTS_DIR / SELECTION_FILE
    return json.loads(path.read_text()) if path.exists() else None
