"""One synthetic validation for every family (issue 17, item 5): each trainer's ``synthetic_*``
summary keys are the shared set of ``texinspect.training.validation``, measured on the very model it saved,
so the number means the same for RB-AE, FMR-Net and AE-SSIM (and equals what a sweep or
``benchmarks/diagnose.py`` measures on that model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from texinspect.config import load_config
from texinspect.data.sample import make_sample_dataset
from texinspect.models import family_module
from texinspect.training.validation import DEFAULT_IMAGES, SUMMARY_KEYS, VALIDATION_SEED, synthetic_validation

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("families_data") / "sample"
    make_sample_dataset(root, n_train=16, n_test_good=2, n_test_defect_per_type=1, size=64, seed=9)
    return root


@pytest.mark.parametrize("family", ["rbae", "fmrnet", "aessim"])
def test_the_train_summary_holds_the_shared_validation_of_the_saved_model(family: str, sample: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    # config.model names the papers' families only (issue 18); AE-SSIM trains from any config
    config = load_config(
        PARAMS,
        [f"model={'rbae' if family == 'aessim' else family}", f"data.root={sample}", "device=cpu", "train.progress=false", "synthesis.texture_pool=",
         "train.max_steps_phase1=4", "train.max_steps_phase2=4", "fmrnet.phase1_restarts=1"],
        profile="smoke",
    )
    model_dir = family_module(family).train(config, tmp_path, resume=False)
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    for key in SUMMARY_KEYS:
        assert 0.0 <= summary[key] <= 1.0, f"{family}: {key} = {summary.get(key)}"
    again = synthetic_validation(model_dir, config, n_images=DEFAULT_IMAGES, seed=VALIDATION_SEED)
    for metric in ("image_auroc", "pixel_auroc", "aupro"):
        assert summary[f"synthetic_{metric}"] == pytest.approx(again[metric], abs=1e-6), (family, metric)
