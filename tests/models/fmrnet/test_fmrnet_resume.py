"""Kill-and-resume: SIGKILL a training process once a checkpoint exists, rerun, it continues."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[3]

SCRIPT = """
import logging, sys, torch
torch.set_num_threads(1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
from texinspect.config import load_config
from texinspect.models.fmrnet import train
cfg = load_config(sys.argv[1], {
    "model": "fmrnet", "data.root": sys.argv[2], "device": "cpu", "train.progress": False,
    "synthesis.texture_pool": "", "train.max_steps_phase1": 60, "train.max_steps_phase2": 5,
    "train.checkpoint_every": 5,
}, profile="smoke")
train(cfg, sys.argv[3], resume=True)
"""


def _run(args: list[str], **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_training_resumes_after_sigkill(sample_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [str(REPO / "params.yaml"), str(sample_root), str(out)]
    last = out / "checkpoints" / "last.pt"
    proc = _run(args)
    deadline = time.time() + 120
    while not last.exists():
        assert proc.poll() is None, (
            f"training ended before its first checkpoint: {proc.communicate()[1][-2000:]}"
        )
        assert time.time() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    time.sleep(0.3)  # let it go a little past the first checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    saved = torch.load(last, weights_only=True)
    assert saved["phase"] == "phase1" and not saved["done"], (
        "the kill came too late to test a mid-phase resume"
    )
    saved_step = saved["step"]
    assert 0 < saved_step < 60

    proc2 = _run(args)
    _, err = proc2.communicate(timeout=300)
    assert proc2.returncode == 0, err[-3000:]
    assert f"phase1: resuming from step {saved_step}" in err, err[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    phase1 = summary["phases"]["phase1"]
    assert phase1["steps"] == 60
    logged = [int(row["step"]) for row in phase1["history"]]
    assert logged == sorted(logged) and logged[0] <= saved_step  # history from before the kill was kept
    assert (out / "model" / "weights.pt").exists() and (out / "memory_bank.pt").exists()
