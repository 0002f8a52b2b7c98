"""Threshold calibration with a tiny fake detector whose maps are known in advance."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from texinspect.calibration import calibrate
from texinspect.config import EvalConfig
from texinspect.errors import DataError
from texinspect.models.base import Detector


class ChannelMeanDetector(Detector):
    """Anomaly map = mean over channels; records how it was called."""

    family = "fake"

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.calls: list[tuple[bool, bool]] = []  # (inference mode, training mode)

    def anomaly_map(self, images: torch.Tensor) -> torch.Tensor:
        self.calls.append((torch.is_inference_mode_enabled(), self.training))
        return images.mean(dim=1) * self.scale


class ListDataset(Dataset):
    def __init__(self, images: list[torch.Tensor], labels: list[int] | None = None) -> None:
        self.images = images
        self.labels = labels or [0] * len(images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.images[i], "label": self.labels[i], "rel": f"{i}.png"}


def constant_images(values: list[float], size: int = 8) -> list[torch.Tensor]:
    return [torch.full((3, size, size), v) for v in values]


def test_k_sigma_thresholds_from_constant_maps() -> None:
    values = [0.1, 0.2, 0.3, 0.4, 0.5]
    detector = ChannelMeanDetector()
    cfg = EvalConfig(k_sigma=2.0, score_smoothing=1.0)
    out = calibrate(detector, ListDataset(constant_images(values)), cfg, "cpu", batch_size=2)
    scores = np.array(values)  # a constant map's smoothed max is its value
    assert out["threshold_rule"] == "k_sigma"
    assert out["threshold"] == pytest.approx(scores.mean() + 2.0 * scores.std(ddof=1))
    assert out["normal_score_mean"] == pytest.approx(0.3)
    assert out["normal_score_std"] == pytest.approx(scores.std(ddof=1))
    pixels = np.repeat(scores, 64)
    assert out["pixel_threshold"] == pytest.approx(pixels.mean() + 2.0 * pixels.std(ddof=1))
    assert out["n_normal"] == 5 and out["n_defect"] == 0


def test_pixel_statistics_over_uneven_batches_match_numpy() -> None:
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 10, 10, generator=gen) * (1 + i) / 7 for i in range(7)]
    detector = ChannelMeanDetector()
    cfg = EvalConfig(k_sigma=3.0, score_smoothing=0.0)
    out = calibrate(detector, ListDataset(images), cfg, torch.device("cpu"), batch_size=3)
    maps = torch.stack(images).mean(dim=1).double().numpy()
    scores = maps.reshape(7, -1).max(axis=1)
    assert out["threshold"] == pytest.approx(scores.mean() + 3 * scores.std(ddof=1))
    assert out["pixel_mean"] == pytest.approx(maps.mean())
    assert out["pixel_std"] == pytest.approx(maps.std(ddof=1))
    assert out["pixel_threshold"] == pytest.approx(maps.mean() + 3 * maps.std(ddof=1))


def test_runs_in_inference_mode_and_restores_training_mode() -> None:
    detector = ChannelMeanDetector()
    detector.train()
    calibrate(detector, ListDataset(constant_images([0.1, 0.2, 0.3])), EvalConfig(), "cpu", batch_size=2)
    assert detector.calls == [(True, False), (True, False)]
    assert detector.training


def test_best_f1_rule_uses_labelled_defects_and_keeps_them_out_of_normal_statistics() -> None:
    values = [0.1, 0.2, 0.3, 0.8, 0.9]
    labels = [0, 0, 0, 1, 1]
    cfg = EvalConfig(threshold_rule="best_f1", score_smoothing=0.0, k_sigma=1.0)
    out = calibrate(ChannelMeanDetector(), ListDataset(constant_images(values), labels), cfg, "cpu")
    assert out["threshold_rule"] == "best_f1"
    assert out["threshold"] == pytest.approx(0.8)  # the lowest defect score separates perfectly
    assert out["normal_score_mean"] == pytest.approx(0.2)
    assert out["pixel_threshold"] == pytest.approx(np.mean([0.1, 0.2, 0.3]) + np.repeat([0.1, 0.2, 0.3], 64).std(ddof=1))
    assert out["n_defect"] == 2


def test_best_f1_rule_without_defects_falls_back_to_k_sigma() -> None:
    cfg = EvalConfig(threshold_rule="best_f1", score_smoothing=0.0, k_sigma=1.0)
    out = calibrate(ChannelMeanDetector(), ListDataset(constant_images([1.0, 2.0, 3.0])), cfg, "cpu")
    assert out["threshold_rule"] == "k_sigma"
    assert out["threshold"] == pytest.approx(3.0)


def test_too_few_normal_images_is_a_data_error() -> None:
    with pytest.raises(DataError, match="at least 2"):
        calibrate(ChannelMeanDetector(), ListDataset(constant_images([0.5])), EvalConfig(), "cpu")
    with pytest.raises(DataError, match="empty"):
        calibrate(ChannelMeanDetector(), ListDataset([]), EvalConfig(), "cpu")
