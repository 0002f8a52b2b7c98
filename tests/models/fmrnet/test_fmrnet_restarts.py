"""Phase-1 restarts: budget shares, selection by synthetic defects, promotion, resume, phase split."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from texinspect.cli import main as cli_main
from texinspect.errors import ConfigError
from texinspect.models.fmrnet import train
from texinspect.models.fmrnet.memory_bank import load_encoder_source, load_memory_bank
from texinspect.models.fmrnet.patches import make_grid, stitch_values
from texinspect.models.fmrnet.restarts import (
    RECORD_FILE,
    RESTARTS_DIR,
    SELECTION_FILE,
    candidate_budget,
    candidate_phase,
    patch_path_scorer,
    selection_score,
)

REPO = Path(__file__).resolve().parents[3]
STEPS = 16  # phase 1's step budget, shared by the restarts


def _config(make_config, root: Path, restarts: int = 2, **extra: object):
    return make_config(
        root,
        {
            "fmrnet.phase1_restarts": restarts,
            "train.max_steps_phase1": STEPS,
            "train.max_steps_phase2": 6,
            **extra,
        },
    )


@pytest.fixture(scope="module")
def restarted(
    sample_root: Path, make_config, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, object]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("fmrnet_restarts")
    cfg = _config(make_config, sample_root)
    train(cfg, out, resume=False)
    return out, cfg


def _encoder(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, weights_only=True)["modules"]["generator"]
    return {k: v for k, v in state.items() if k.startswith(("encoder.", "to_latent."))}


def _candidate_end(out: Path, i: int) -> Path:
    return out / RESTARTS_DIR / f"r{i}" / "checkpoints" / f"{candidate_phase(i)}_end.pt"


def test_candidate_budget_shares_what_is_left_less_the_selection_time() -> None:
    assert candidate_budget(0.0, [], 3) == 0.0  # no time limit stays none
    assert candidate_budget(300.0, [], 3) == pytest.approx(100.0)
    done = [{"train_seconds": 100.0, "selection_seconds": 20.0}]
    assert candidate_budget(300.0, done, 2) == pytest.approx((300 - 120) / 2 - 20)
    done.append({"train_seconds": 70.0, "selection_seconds": 10.0})
    assert candidate_budget(300.0, done, 1) == pytest.approx(300 - 200 - 15)
    assert candidate_budget(100.0, done, 1) == 1.0  # over budget: a token second, not a negative limit


def test_selection_score_is_the_mean_auroc_and_a_missing_pixel_auroc_counts_as_chance() -> None:
    assert selection_score({"synthetic_image_auroc": 0.9, "synthetic_pixel_auroc": 0.7}) == pytest.approx(0.8)
    assert selection_score(
        {"synthetic_image_auroc": 0.9, "synthetic_pixel_auroc": math.nan}
    ) == pytest.approx(0.7)


def test_restarts_train_candidates_and_promote_the_best(restarted) -> None:
    out, cfg = restarted
    selection = json.loads((out / RESTARTS_DIR / SELECTION_FILE).read_text())
    records = selection["candidates"]
    assert selection["restarts"] == 2 and len(records) == 2
    assert [r["seed"] for r in records] == [cfg.seed, cfg.seed + 1000]
    assert [r["steps"] for r in records] == [STEPS // 2, STEPS // 2]  # the step budget is shared
    for r in records:
        assert 0.0 <= r["synthetic_image_auroc"] <= 1.0
        assert r["score"] == pytest.approx(selection_score(r))
    chosen = selection["chosen"]
    assert chosen == int(np.argmax([r["score"] for r in records]))
    for i in range(2):  # a finished candidate keeps its phase end, not a second copy as last.pt
        assert _candidate_end(out, i).exists() and not (_candidate_end(out, i).parent / "last.pt").exists()
    # the promoted phase-1 end is the chosen candidate's, renamed to phase 1
    promoted = out / "checkpoints" / "phase1_end.pt"
    payload = torch.load(promoted, weights_only=True)
    assert payload["phase"] == "phase1" and payload["restart"] == chosen and payload["step"] == STEPS // 2
    enc = _encoder(promoted)
    for i in range(2):
        same = all(torch.equal(v, _encoder(_candidate_end(out, i))[k]) for k, v in enc.items())
        assert same == (i == chosen), (
            f"candidate {i}: encoder {'differs from' if i == chosen else 'equals'} the promoted one"
        )
    # the bank stage after phase 1 rebuilds exactly the bank the candidate was scored with
    final = load_memory_bank(out / "memory_bank.pt", cfg)["memory"]
    scored = load_memory_bank(out / RESTARTS_DIR / f"r{chosen}" / "memory_bank.pt", cfg)["memory"]
    torch.testing.assert_close(final, scored, rtol=0, atol=0)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["phase1_restarts"]["chosen"] == chosen
    assert summary["phases"]["phase1"]["steps"] == STEPS // 2
    assert (out / "model" / "model.yaml").exists()


def test_patch_path_scorer_stitches_window_distances(restarted) -> None:
    out, cfg = restarted
    net, _ = load_encoder_source(cfg, out / "checkpoints" / "phase1_end.pt", torch.device("cpu"))
    net.set_memory(load_memory_bank(out / "memory_bank.pt", cfg)["memory"])
    net.eval()
    images = torch.rand(2, 3, 64, 64)
    maps, scores = patch_path_scorer(net)(images)
    windows = net.patch_scores(images)
    grid = make_grid(2, 64, 64, cfg.fmrnet.patch_size, cfg.fmrnet.patch_stride)
    torch.testing.assert_close(maps, stitch_values(windows.flatten(), grid))
    torch.testing.assert_close(scores, windows.flatten(1).amax(1))


def test_rerun_reuses_finished_candidates(restarted, sample_root: Path, make_config) -> None:
    out, cfg = restarted
    stamps = {
        p: p.stat().st_mtime_ns
        for i in range(2)
        for p in (_candidate_end(out, i), out / RESTARTS_DIR / f"r{i}" / RECORD_FILE)
    }
    selection = out / RESTARTS_DIR / SELECTION_FILE
    before = json.loads(selection.read_text())
    train(cfg, out, resume=True)
    # killed between the last candidate and the promotion: the records are reused, not retrained
    selection.unlink()
    train(cfg, out, resume=True)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps, (
        "a finished candidate was retrained or rescored"
    )
    assert json.loads(selection.read_text()) == before


def test_phase_split_selects_in_phase1_and_phase2_continues(sample_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    common = [
        "--config", str(REPO / "params.yaml"), "--profile", "smoke", "--data", str(sample_root), "--out", str(out),
        "--no-track",
        "--set", "model=fmrnet", "--set", "device=cpu", "--set", "train.progress=false",
        "--set", "synthesis.texture_pool=", "--set", "fmrnet.phase1_restarts=2",
        "--set", f"train.max_steps_phase1={STEPS}", "--set", "train.max_steps_phase2=4",
    ]  # fmt: skip
    assert cli_main(["train", *common, "--phase", "1"]) == 0
    assert (out / RESTARTS_DIR / SELECTION_FILE).exists()
    assert (out / "checkpoints" / "phase1_end.pt").exists()
    assert not (out / "checkpoints" / "phase2_end.pt").exists() and not (out / "model").exists()
    stamp = _candidate_end(out, 0).stat().st_mtime_ns
    assert cli_main(["train", *common, "--phase", "2"]) == 0
    assert (out / "model" / "model.yaml").exists()
    assert _candidate_end(out, 0).stat().st_mtime_ns == stamp  # phase 2 did not retrain phase 1


def test_restart_count_below_one_is_refused(sample_root: Path, make_config, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fmrnet.phase1_restarts"):
        train(_config(make_config, sample_root, restarts=0), tmp_path / "run")


def test_a_candidate_without_its_checkpoint_is_retrained_not_trusted(restarted, tmp_path: Path) -> None:
    src, cfg = restarted
    out = tmp_path / "run"
    shutil.copytree(src, out)
    (out / RESTARTS_DIR / SELECTION_FILE).unlink()  # killed while candidate 1 trained...
    _candidate_end(out, 1).unlink()  # ...so it has no end checkpoint, only a stale record
    kept = _candidate_end(out, 0).stat().st_mtime_ns
    stale = (out / RESTARTS_DIR / "r1" / RECORD_FILE).stat().st_mtime_ns
    train(cfg, out, resume=True)
    assert _candidate_end(out, 0).stat().st_mtime_ns == kept
    assert _candidate_end(out, 1).exists()
    assert (out / RESTARTS_DIR / "r1" / RECORD_FILE).stat().st_mtime_ns > stale
    assert (out / RESTARTS_DIR / SELECTION_FILE).exists()
