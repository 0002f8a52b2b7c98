"""Data-parallel training for real: 2 CPU processes (gloo) run the shared loop and the trainers.

The loop's contract under DDP (one launch, several phases): rank 0's clock stops every rank at
the same step, logged losses are the ranks' means, a non-finite loss on one rank stops all of
them, ranks that drift apart are caught, only rank 0 writes checkpoints, and a killed phase
resumes on every rank from rank 0's checkpoint. Then RB-AE through the pipeline's own phase
steps (``steps.run_training(..., world_size=2)``, as the Kubeflow components call it) and FMR-Net
through its ``train``: both finish with the same weights on both ranks, one artifact set written
by rank 0 alone, and a model that ``texinspect predict`` loads and scores with.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import pathlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from torch import nn

from texinspect.config import load_config, save_config
from texinspect.data.sample import make_sample_dataset
from texinspect.errors import ModelError
from texinspect.kubeflow import steps
from texinspect.training import distributed
from texinspect.training.checkpoint import Checkpointer
from texinspect.training.loop import run_phase

REPO = Path(__file__).resolve().parents[2]
STEPS1, STEPS2 = 4, 3
N_TRAIN, N_TEST_GOOD, N_DEFECT_PER_TYPE = 16, 2, 1


# --------------------------------------------------------------------------- the loop


class _Killed(Exception):
    """Stands in for a pod killed in the middle of a phase."""


def _linear() -> tuple[nn.Linear, torch.optim.SGD]:
    torch.manual_seed(3)
    model = nn.Linear(3, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


def _endless(start: int) -> Iterator[None]:
    return itertools.repeat(None)


def _loop_worker(out_dir: str) -> None:
    """Every scenario in one launch (a spawn costs seconds); each records what this rank saw."""
    torch.set_num_threads(1)
    ctx = distributed.init_distributed("cpu")
    out = Path(out_dir)
    rank = ctx.rank
    seen: dict[str, Any] = {}
    x = torch.full((2, 3), float(rank + 1))  # each rank its own data

    # 1. rank 0's budget stops both (rank 1 has none); losses are averaged; rank 0 alone writes
    model, opt = _linear()
    sync = distributed.DDPForward([model])

    def step(batch: Any) -> dict[str, float]:
        loss = sync(lambda: model(x).pow(2).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": float(rank + 1)}

    ckpt_dir = out / f"own{rank}"
    r = run_phase(
        "budget",
        step,
        _endless,
        {"m": model},
        {"sgd": opt},
        Checkpointer(ckpt_dir),
        max_steps=100_000,
        max_seconds=0.6 if rank == 0 else 0.0,
        checkpoint_every=5,
        log_every=2,
        progress=False,
    )
    seen["budget"] = {
        "steps": r.steps,
        "stopped_by": r.stopped_by,
        "losses": r.losses(),
        "checksums": r.rank_checksums,
        "files": sorted(p.name for p in ckpt_dir.iterdir()),
    }

    # 2. a NaN on rank 1 only: both ranks stop at that step instead of one waiting forever
    model, opt = _linear()
    sync = distributed.DDPForward([model])
    calls = itertools.count(1)

    def nan_step(batch: Any) -> dict[str, float]:
        loss = sync(lambda: model(x).pow(2).mean())
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": math.nan if rank == 1 and next(calls) == 3 else 1.0}

    try:
        run_phase(
            "nan",
            nan_step,
            _endless,
            {"m": model},
            {"sgd": opt},
            Checkpointer(out / f"nan{rank}"),
            max_steps=10,
            progress=False,
        )
    except FloatingPointError as exc:
        seen["nan"] = str(exc)

    # 3. a module trained outside DDPForward drifts apart across ranks: caught at the phase end
    model, opt = _linear()

    def unsynced(batch: Any) -> dict[str, float]:
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    try:
        run_phase(
            "drift",
            unsynced,
            _endless,
            {"m": model},
            {"sgd": opt},
            Checkpointer(out / f"drift{rank}"),
            max_steps=3,
            progress=False,
        )
    except ModelError as exc:
        seen["drift"] = str(exc)

    # 4. killed after step 2 (checkpointed), relaunched: both ranks resume at step 2 and end
    #    exactly where an uninterrupted run ends
    def resumable_run(ckpt: Checkpointer, kill_after: int | None = None, relaunch: bool = False) -> Any:
        model, opt = _linear()
        if relaunch:  # a different start: only the checkpoint can bring the weights back
            with torch.no_grad():
                model.weight.fill_(7.0)
        sync = distributed.DDPForward([model])
        done = [0]

        def step(batch: Any) -> dict[str, float]:
            if done[0] == kill_after:
                raise _Killed
            done[0] += 1
            loss = sync(lambda: model(x).pow(2).mean())
            opt.zero_grad()
            loss.backward()
            opt.step()
            return {"loss": float(loss.detach())}

        def batches(start: int) -> Iterator[None]:
            starts.append(start)
            return itertools.repeat(None)

        return run_phase(
            "resume",
            step,
            batches,
            {"m": model},
            {"sgd": opt},
            ckpt,
            max_steps=6,
            checkpoint_every=2,
            log_every=1,
            progress=False,
        )

    starts: list[int] = []
    straight = resumable_run(Checkpointer(out / "straight"))
    starts.clear()
    shared = Checkpointer(out / "shared")
    try:
        resumable_run(shared, kill_after=2)
    except _Killed:
        pass
    distributed.barrier()  # a relaunch starts once every process is gone
    resumed = resumable_run(shared, relaunch=True)
    seen["resume"] = {
        "starts": starts,
        "steps": resumed.steps,
        "rows": len(resumed.history),
        "checksums": resumed.rank_checksums,
        "straight": straight.rank_checksums,
    }
    (out / f"seen{rank}.json").write_text(json.dumps(seen))


@pytest.fixture(scope="module")
def loop_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("loop")
    distributed.launch(_loop_worker, world_size=2, args=(str(out),), backend="gloo")
    r0, r1 = (json.loads((out / f"seen{r}.json").read_text()) for r in (0, 1))
    return r0, r1, out


def test_rank_zero_clock_stops_every_rank_and_losses_are_means(loop_runs) -> None:  # noqa: ANN001
    r0, r1, _ = loop_runs
    b0, b1 = r0["budget"], r1["budget"]
    assert b0["stopped_by"] == b1["stopped_by"] == "time"  # rank 1 had no budget of its own
    assert b0["steps"] == b1["steps"] < 100_000
    assert b0["losses"] == b1["losses"] and set(b0["losses"]) == {1.5}  # mean of 1.0 and 2.0
    assert b0["checksums"] == b1["checksums"] and b0["checksums"][0] == b0["checksums"][1]
    assert b0["files"] == ["budget_end.pt", "last.pt"]
    assert b1["files"] == []  # rank 1 wrote no checkpoint


def test_a_nan_on_one_rank_stops_all_and_drift_is_caught(loop_runs) -> None:  # noqa: ANN001
    r0, r1, _ = loop_runs
    for seen in (r0, r1):
        assert "nan: non-finite loss at step 3" in seen["nan"]
        assert "drift: DDP ranks hold different weights" in seen["drift"]


def test_a_killed_phase_resumes_on_every_rank(loop_runs) -> None:  # noqa: ANN001
    r0, r1, out = loop_runs
    for seen in (r0, r1):
        assert seen["resume"]["starts"] == [0, 2]
        assert seen["resume"]["steps"] == 6 and seen["resume"]["rows"] == 6
    assert r0["resume"]["checksums"] == r1["resume"]["checksums"] == r0["resume"]["straight"]
    saved = torch.load(out / "shared" / "resume_end.pt", weights_only=True)
    assert saved["step"] == 6


# --------------------------------------------------------------------------- the trainers


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "tiles"
    make_sample_dataset(
        root, n_train=N_TRAIN, n_test_good=N_TEST_GOOD, n_test_defect_per_type=N_DEFECT_PER_TYPE, size=64
    )
    return root


def _config_file(family: str, data: Path, path: Path) -> Path:
    config = load_config(
        REPO / "params.yaml",
        [
            f"model={family}",
            f"train.max_steps_phase1={STEPS1}",
            f"train.max_steps_phase2={STEPS2}",
            "train.batch_size=2",
            "train.checkpoint_every=2",
            "train.log_every=2",
            "train.progress=false",
            "tracking.enabled=false",
            "device=cpu",
        ],
        "smoke",
    )
    config.data.root = str(data)
    save_config(config, path)
    return path


def _check_ranks_agree(summary: dict[str, Any]) -> None:
    ddp = summary["distributed"]
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo"
    assert ddp["global_batch_size"] == 2 * ddp["batch_size_per_process"] == 4
    for phase in ("phase1", "phase2"):
        sums = ddp["rank_checksums"][phase]
        assert len(sums) == 2 and sums[0] == sums[1], (phase, sums)
    assert ddp["rank_checksums"]["phase1"] != ddp["rank_checksums"]["phase2"]  # phase 2 trained


def _predicts(model_dir: Path, data: Path, out: Path) -> None:
    from texinspect.cli import main

    assert (
        main(
            ["predict", "--model", str(model_dir), "--data", str(data), "--out", str(out), "--device", "cpu"]
        )
        == 0
    )
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == N_TEST_GOOD + 3 * N_DEFECT_PER_TYPE
    assert scores["score"].map(math.isfinite).all()


@pytest.mark.timeout(600)
def test_rbae_phases_as_pipeline_steps_with_world_size_two(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one torch thread per spawned rank
    config = _config_file("rbae", dataset, tmp_path / "config.yaml")
    run = tmp_path / "run"
    steps.run_training(str(config), str(dataset), str(run), phase="1", world_size=2)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt", "phase1_end.pt"]
    steps.run_training(str(config), str(dataset), str(run), phase="2", world_size=2)

    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert files == [
        "checkpoints/last.pt",
        "checkpoints/phase1_end.pt",
        "checkpoints/phase2_end.pt",
        "config.yaml",
        "model/model.yaml",
        "model/weights.pt",
        "train_summary.json",
    ]
    summary = json.loads((run / "train_summary.json").read_text())
    _check_ranks_agree(summary)
    assert summary["resumed_from"] == {"phase1": STEPS1, "phase2": 0}  # phase 1 reloaded, not retrained
    assert {k: (v["steps"], v["stopped_by"]) for k, v in summary["phases"].items()} == {
        "phase1": (STEPS1, "steps"),
        "phase2": (STEPS2, "steps"),
    }
    _predicts(run / "model", dataset, tmp_path / "pred")


def _fmrnet_rank(config_path: str, out_dir: str, log_dir: str) -> None:
    """One rank of FMR-Net's ``train``, recording every file this process writes (files are written
    whole through ``texinspect.outputs.write_atomic``, which ends in ``os.replace``)."""
    from texinspect.models import family_module

    torch.set_num_threads(1)
    written: list[str] = []
    real_replace, real_write = os.replace, pathlib.Path.write_text

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        written.append(Path(dst).name)
        real_replace(src, dst, *args, **kwargs)

    def write_text(self: Path, *args: Any, **kwargs: Any) -> int:
        written.append(self.name)
        return real_write(self, *args, **kwargs)

    os.replace, pathlib.Path.write_text = replace, write_text
    try:
        family_module("fmrnet").train(load_config(config_path), out_dir)
    finally:
        os.replace, pathlib.Path.write_text = real_replace, real_write
    rank = os.environ["RANK"]
    (Path(log_dir) / f"written{rank}.json").write_text(json.dumps(written))


@pytest.mark.timeout(600)
def test_fmrnet_two_processes_write_one_artifact_set(dataset: Path, tmp_path: Path) -> None:
    config = _config_file("fmrnet", dataset, tmp_path / "config.yaml")
    run = tmp_path / "run"
    distributed.launch(
        _fmrnet_rank, world_size=2, args=(str(config), str(run), str(tmp_path)), backend="gloo"
    )

    w0, w1 = (json.loads((tmp_path / f"written{r}.json").read_text()) for r in (0, 1))
    assert w1 == []  # rank 1 trained but wrote nothing
    assert w0.count("memory_bank.pt") == 1  # one k-means, on rank 0
    assert {"phase1_end.pt", "phase2_end.pt", "weights.pt", "model.yaml", "train_summary.json"} <= set(w0)
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert files == [
        "checkpoints/last.pt",
        "checkpoints/phase1_end.pt",
        "checkpoints/phase2_end.pt",
        "config.yaml",
        "memory_bank.pt",
        "model/model.yaml",
        "model/weights.pt",
        "train_summary.json",
    ]
    summary = json.loads((run / "train_summary.json").read_text())
    _check_ranks_agree(summary)
    assert summary["phase1_steps"] == STEPS1 and summary["phase2_steps"] == STEPS2
    _predicts(run / "model", dataset, tmp_path / "pred")
