"""Kill ``texinspect train --model rbae`` with SIGKILL mid-run; the rerun resumes from the saved step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from texinspect.data.sample import make_sample_dataset

PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"


def _command(data: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "texinspect", "train", "--model", "rbae", "--profile", "smoke",
        "--config", str(PARAMS), "--data", str(data), "--out", str(out), "--device", "cpu",
        "--set", "train.max_steps_phase1=150", "--set", "train.max_steps_phase2=10",
        "--set", "train.checkpoint_every=5", "--set", "train.progress=false",
        "--set", "synthesis.texture_pool=",
    ]  # fmt: skip


def test_killed_run_resumes_from_last_checkpoint(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_sample_dataset(data, n_train=20, n_test_good=2, n_test_defect_per_type=1, size=64, seed=1)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    last = out / "checkpoints" / "last.pt"
    proc = subprocess.Popen(_command(data, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not last.exists():
            assert proc.poll() is None, (
                f"training ended before its first checkpoint:\n{proc.stdout.read().decode()}"
            )
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        time.sleep(0.3)  # let it get a few checkpoints further into phase 1
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = torch.load(last, weights_only=True)
    assert saved["phase"] == "phase1" and not saved["done"] and 0 < saved["step"] < 150
    assert not (out / "model").exists()

    rerun = subprocess.run(_command(data, out), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["resumed_from"]["phase1"] == saved["step"]  # not 0
    assert summary["phases"]["phase1"]["steps"] == 150 and summary["phases"]["phase2"]["steps"] == 10
    end1 = torch.load(out / "checkpoints" / "phase1_end.pt", weights_only=True)
    steps_logged = [row["step"] for row in end1["history"]]
    assert steps_logged == sorted(steps_logged) and steps_logged[-1] == 150  # one history, continued
    assert (out / "model" / "weights.pt").exists()
