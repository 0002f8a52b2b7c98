"""The sweep's yardstick: a fixed synthetic-defect set from held-out normals, and its metrics."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from texinspect.config import load_config
from texinspect.data.sample import make_sample_dataset
from texinspect.errors import ConfigError, DataError
from texinspect.models.artifact import ModelCard, save_detector
from texinspect.models.base import Detector
from texinspect.training.common import prepare_training_data
from texinspect.training.validation import (
    SUMMARY_KEYS,
    VALIDATION_SEED,
    build_synthetic_validation,
    evaluate_detector,
    labelled_validation,
    synthetic_validation,
    training_validation,
)

from .conftest import REPO


def _config(root: Path, size: int = 64, **extra):
    overrides = {"data.root": str(root), "data.image_size": size, "synthesis.texture_pool": "", **extra}
    return load_config(REPO / "params.yaml", overrides)


class LookupDetector(Detector):
    """Answers with the stored map of the stored image nearest to each input (an oracle, or its inverse)."""

    def __init__(self, images: np.ndarray, maps: np.ndarray) -> None:
        super().__init__()
        self.images = torch.from_numpy(images).flatten(1)
        self.maps = torch.from_numpy(maps)

    def anomaly_map(self, images: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(images.flatten(1).float(), self.images)
        return self.maps[d.argmin(dim=1)]


def _card(size: int, smoothing: float = 0.0) -> ModelCard:
    return ModelCard(family="rbae", config={}, image_size=size, channels=3, score_smoothing=smoothing)


def test_the_set_is_fixed_for_a_seed_half_normal_half_defect(sample_root: Path) -> None:
    config = _config(sample_root)
    a = build_synthetic_validation(config, 10, seed=11)
    b = build_synthetic_validation(config, 10, seed=11)
    c = build_synthetic_validation(config, 10, seed=12)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert list(a.labels) == [0] * 5 + [1] * 5
    assert not a.masks[:5].any() and all(a.masks[i].any() for i in range(5, 10))
    assert np.array_equal(a.images[:5], c.images[:5])  # same normals
    assert not np.array_equal(a.images[5:], c.images[5:])  # other defects
    # defect 0 is drawn on held-out image 0 (= normal 0): the change lies where its mask says
    diff = np.abs(a.images[5] - a.images[0]).mean(axis=0)
    inside, outside = diff[a.masks[5] > 0].mean(), diff[a.masks[5] == 0].mean()
    assert inside > 0.01 and inside > 5 * outside


def test_normals_are_the_trainers_held_out_images_never_training_ones(sample_root: Path) -> None:
    config = _config(sample_root)
    vset = build_synthetic_validation(config, 8, seed=11)
    data = prepare_training_data(config)
    val = np.stack([data.val[i]["image"].numpy() for i in range(len(data.val))])
    train = np.stack([data.train[i]["image"].numpy() for i in range(len(data.train))])
    for image in vset.images[:4]:
        assert any(np.array_equal(image, v) for v in val)
        assert not any(np.array_equal(image, t) for t in train)
    assert vset.info["held_out_normals"] == len(data.val)


def test_the_validation_seed_must_differ_from_the_training_seed(sample_root: Path) -> None:
    with pytest.raises(ConfigError, match="training seed"):
        build_synthetic_validation(_config(sample_root, seed=5), 8, seed=5)


def test_metrics_are_one_for_an_oracle_and_chance_for_a_blind_detector(sample_root: Path) -> None:
    vset = build_synthetic_validation(_config(sample_root), 12, seed=11)
    oracle = LookupDetector(vset.images, vset.masks)
    m = evaluate_detector(oracle, _card(64), vset)
    assert m == {"image_auroc": 1.0, "pixel_auroc": 1.0, "aupro": pytest.approx(1.0)}
    inverse = LookupDetector(vset.images, 1.0 - vset.masks)
    assert evaluate_detector(inverse, _card(64), vset)["pixel_auroc"] == 0.0
    blind = LookupDetector(vset.images, np.zeros_like(vset.masks))
    b = evaluate_detector(blind, _card(64), vset)
    assert b["image_auroc"] == 0.5 and b["pixel_auroc"] == 0.5


def test_trainers_measure_the_same_set_through_the_detector_or_a_scorer(sample_root: Path) -> None:
    """One validation for every family (issue 17 item 5): a trainer's held-out normals give the very
    set that sweeps and benchmarks build, its summary keys are the shared ones, and a ``scorer``
    (FMR-Net's patch path for phase-1 candidates) replaces ``detector.score`` on the same images."""
    config = _config(sample_root)
    data = prepare_training_data(config)
    vset = build_synthetic_validation(config, 12, VALIDATION_SEED)
    again = build_synthetic_validation(config, 12, VALIDATION_SEED, normals=data.val)
    assert np.array_equal(vset.images, again.images) and np.array_equal(vset.masks, again.masks)
    oracle = LookupDetector(vset.images, vset.masks)
    summary = training_validation(oracle, config, data.val, torch.device("cpu"), n_images=12)
    assert tuple(summary) == SUMMARY_KEYS
    assert summary["synthetic_image_auroc"] == 1.0 and summary["synthetic_pixel_auroc"] == 1.0

    def inverse(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = 1.0 - oracle.anomaly_map(images)
        return maps, -oracle.anomaly_map(images).amax(dim=(1, 2))

    flipped = training_validation(oracle, config, data.val, torch.device("cpu"), scorer=inverse, n_images=12)
    assert flipped["synthetic_image_auroc"] == 0.0 and flipped["synthetic_pixel_auroc"] == 0.0
    with pytest.raises(DataError, match="no held-out normal"):
        build_synthetic_validation(config, 12, VALIDATION_SEED, normals=Subset(data.val, []))


def test_forty_images_at_128px_are_cheap_on_one_core(tmp_path: Path, fake_family: str) -> None:
    from tuning.sweep_fake_family import build

    root = tmp_path / "data128"
    make_sample_dataset(root, n_train=20, n_test_good=1, n_test_defect_per_type=1, size=128, seed=4)
    config = _config(root, size=128, **{"rbae.ffm_kernel": 5})
    model_dir = tmp_path / "model"
    card = ModelCard(family="rbae", config=config.to_dict(), image_size=128, channels=3, score_smoothing=4.0)
    save_detector(build(config), card, model_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        metrics = synthetic_validation(model_dir, config, n_images=40, seed=11)
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    assert set(metrics) == {"image_auroc", "pixel_auroc", "aupro"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert seconds < 20.0, f"validation took {seconds:.1f} s"


def test_a_labelled_folder_is_used_but_never_the_test_split(sample_root: Path, tmp_path: Path) -> None:
    config = _config(sample_root)
    with pytest.raises(ConfigError, match="test split"):
        labelled_validation(sample_root / "test", config)
    with pytest.raises(ConfigError, match="test split"):
        labelled_validation(sample_root, config)
    other = tmp_path / "labelled"
    make_sample_dataset(other, n_train=1, n_test_good=3, n_test_defect_per_type=1, size=64, seed=9)
    vset = labelled_validation(other, config)
    assert sorted(vset.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert all(vset.masks[i].any() == bool(vset.labels[i]) for i in range(len(vset)))
