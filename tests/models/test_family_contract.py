"""One model test suite that every registered family passes (segmentation_models_pytorch's base
tester): build, train a few steps, save, load, predict, resume. A new folder under
``src/texinspect/models/`` with a ``config.py`` is discovered by the registry and tested here
without touching this file.

Family-specific behaviour (that the losses learn, exact resume after a kill, the papers'
equations) is tested in each family's own folder and in ``tests/training/``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from texinspect.config import Config, load_config
from texinspect.data.sample import make_sample_dataset
from texinspect.models.artifact import CARD_FILE, WEIGHTS_FILE, load_detector
from texinspect.models.base import Detector
from texinspect.models.registry import MODELS_PACKAGE, discover, family_module
from texinspect.prediction import predict
from texinspect.training.validation import SUMMARY_KEYS

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
# the families that live in src/texinspect/models/ (test doubles registered elsewhere are not)
FAMILIES = sorted(name for name, spec in discover().items() if spec.module.startswith(MODELS_PACKAGE + "."))
SIZE = 64


@dataclass
class Trained:
    config: Config
    out: Path
    model_dir: Path


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("contract_data") / "sample"
    make_sample_dataset(root, n_train=16, n_test_good=2, n_test_defect_per_type=1, size=SIZE, seed=5)
    return root


def _config(family: str, root: Path) -> Config:
    return load_config(
        PARAMS,
        [f"model={family}", f"data.root={root}", f"data.image_size={SIZE}", "device=cpu",
         "train.progress=false", "synthesis.texture_pool=", "train.max_steps_phase1=3",
         "train.max_steps_phase2=3", "fmrnet.phase1_restarts=1"],
        profile="smoke",
    )


@pytest.fixture(scope="module", params=FAMILIES)
def trained(request: pytest.FixtureRequest, sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    family = request.param
    torch.manual_seed(0)
    config = _config(family, sample)
    out = tmp_path_factory.mktemp(f"contract_{family}")
    model_dir = family_module(family).train(config, out, resume=False)
    return Trained(config, out, Path(model_dir))


def test_the_families_are_discovered_from_their_folders() -> None:
    assert {"rbae", "fmrnet", "aessim"} <= set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_build_gives_an_untrained_detector_of_the_family(family: str, sample: Path) -> None:
    detector = family_module(family).build(_config(family, sample))
    assert isinstance(detector, Detector) and detector.family == family
    assert sum(p.numel() for p in detector.parameters()) > 0


def test_the_trained_detector_maps_images_at_their_size(trained: Trained) -> None:
    detector, _ = load_detector(trained.model_dir, "cpu")
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        maps, scores = detector.eval().score(images, smoothing=2.0)
    assert maps.shape == (2, SIZE, SIZE) and scores.shape == (2,)
    assert torch.isfinite(maps).all() and torch.isfinite(scores).all()


def test_training_writes_a_calibrated_artifact_of_its_family(trained: Trained) -> None:
    family = trained.config.model
    assert (trained.model_dir / CARD_FILE).is_file() and (trained.model_dir / WEIGHTS_FILE).is_file()
    detector, card = load_detector(trained.model_dir, "cpu")
    assert isinstance(detector, Detector)
    assert card.family == family and card.config["model"] == family
    assert card.threshold is not None and np.isfinite(card.threshold)
    summary = json.loads((trained.out / "train_summary.json").read_text())
    assert set(SUMMARY_KEYS) <= set(summary), "the shared synthetic validation is missing from the summary"
    assert summary["family"] == family


def test_a_loaded_model_scores_like_the_saved_one(trained: Trained) -> None:
    """Save and load round-trip: two loads give the same maps on the same images."""
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    first, _ = load_detector(trained.model_dir, "cpu")
    second, _ = load_detector(trained.model_dir, "cpu")
    with torch.no_grad():
        a, sa = first.eval().score(images, 2.0)
        b, sb = second.eval().score(images, 2.0)
    assert torch.equal(a, b) and torch.equal(sa, sb)


def test_predict_scores_every_test_image(trained: Trained, sample: Path, tmp_path: Path) -> None:
    predict(trained.model_dir, sample, tmp_path)
    with (tmp_path / "scores.csv").open() as f:
        rows = list(csv.DictReader(f))
    tests = sorted(p for p in (sample / "test").rglob("*.png"))
    assert len(rows) == len(tests)
    assert all(np.isfinite(float(r["score"])) for r in rows)
    assert len(list((tmp_path / "maps").rglob("*.npy"))) == len(tests)


def test_resume_of_a_finished_run_keeps_its_model(trained: Trained) -> None:
    """``train(resume=True)`` on a finished folder trains nothing more: the same weights, bit for bit
    (interrupted runs resume exactly: tests/training/test_exact_resume.py, for every family)."""
    before = load_detector(trained.model_dir, "cpu")[0].state_dict()
    again = family_module(trained.config.model).train(trained.config, trained.out, resume=True)
    assert Path(again) == trained.model_dir
    after = load_detector(again, "cpu")[0].state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
