"""Thresholds from held-out defect-free images, stored in the model artifact.

Unsupervised training sees no defects, so the decision thresholds come from how the trained
detector scores normal images it was not trained on (FMR-Net's k-sigma rule):

- image threshold = mean + k * std of the image scores (``eval.k_sigma``);
- pixel threshold = mean + k * std of every pixel value of those images' anomaly maps, the
  binarisation behind FMR-Net's precision / recall / F1 (Table V).

With ``eval.threshold_rule: best_f1`` and a calibration set that holds labelled defects too, the
image threshold is the best-F1 one instead; without defects it falls back to k-sigma (logged).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from texinspect.config import EvalConfig
from texinspect.errors import DataError
from texinspect.models.base import Detector
from texinspect.scoring import best_f1_threshold, k_sigma_threshold

log = logging.getLogger(__name__)


class _RunningStats:
    """Mean and variance of a stream of batches in float64 (Chan et al.'s parallel update)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations from the mean

    def update(self, values: torch.Tensor) -> None:
        x = values.detach().double().flatten()
        n_b = x.numel()
        if n_b == 0:
            return
        mean_b = float(x.mean())
        m2_b = float(((x - mean_b) ** 2).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta**2 * self.n * n_b / n
        self.n = n

    def std(self) -> float:
        """Sample standard deviation (ddof=1), as ``k_sigma_threshold`` uses."""
        return float(np.sqrt(self.m2 / (self.n - 1))) if self.n > 1 else 0.0


def calibrate(
    detector: Detector,
    dataset: Dataset,
    eval_cfg: EvalConfig,
    device: torch.device | str,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Run ``detector`` over ``dataset`` and return the thresholds and normal-score statistics.

    ``dataset`` yields ``{"image": (C,H,W) tensor in [0,1], "label": int}`` (``ImageDataset``);
    a missing label or -1 (unknown) counts as normal: the calibration set is held-out training
    data. Returns ``threshold``, ``threshold_rule`` (the rule actually used), ``pixel_threshold``,
    ``normal_score_mean``, ``normal_score_std``, ``pixel_mean``, ``pixel_std``, ``n_normal`` and
    ``n_defect``.
    """
    all_scores, defect, pixels = _score_calibration_set(detector, dataset, eval_cfg.score_smoothing, device, batch_size)
    normal_scores = all_scores[~defect]
    if normal_scores.size < 2:
        raise DataError(
            f"calibration needs at least 2 defect-free images, got {normal_scores.size} "
            "(raise the validation share of the training images)"
        )
    threshold, rule = _image_threshold(eval_cfg, all_scores, defect)
    pixel_threshold = pixels.mean + eval_cfg.k_sigma * pixels.std()
    result: dict[str, Any] = {
        "threshold": float(threshold),
        "threshold_rule": rule,
        "pixel_threshold": float(pixel_threshold),
        "normal_score_mean": float(normal_scores.mean()),
        "normal_score_std": float(normal_scores.std(ddof=1)),
        "pixel_mean": float(pixels.mean),
        "pixel_std": pixels.std(),
        "k_sigma": float(eval_cfg.k_sigma),
        "n_normal": int(normal_scores.size),
        "n_defect": int(defect.sum()),
    }
    log.info(
        "calibrated on %d normal images: threshold %.6g (%s), pixel threshold %.6g",
        result["n_normal"], result["threshold"], rule, result["pixel_threshold"],
    )
    return result


def _score_calibration_set(
    detector: Detector, dataset: Dataset, smoothing: float, device: torch.device | str, batch_size: int
) -> tuple[np.ndarray, np.ndarray, _RunningStats]:
    """(image scores, is-defect flags, running statistics of the normal images' pixels)."""
    device = torch.device(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    scores: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    pixels = _RunningStats()
    was_training = detector.training
    detector.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                images = batch["image"].to(device)
                label = batch.get("label")
                label = torch.zeros(images.shape[0], dtype=torch.long) if label is None else torch.as_tensor(label)
                maps, image_scores = detector.score(images, smoothing)
                if maps.dim() != 3 or maps.shape[0] != images.shape[0]:
                    raise ValueError(f"{type(detector).__name__}.anomaly_map returned shape {tuple(maps.shape)}, expected (B, H, W)")
                is_defect = (label == 1).to(maps.device)
                pixels.update(maps[~is_defect])
                scores.append(image_scores.float().cpu().numpy())
                labels.append(is_defect.cpu().numpy())
    finally:
        detector.train(was_training)
    if not scores:
        raise DataError("calibration set is empty: hold out some defect-free training images")
    return np.concatenate(scores).astype(np.float64), np.concatenate(labels), pixels


def _image_threshold(eval_cfg: EvalConfig, scores: np.ndarray, defect: np.ndarray) -> tuple[float, str]:
    """(threshold, the rule actually used): best F1 needs defective images, else k-sigma."""
    if eval_cfg.threshold_rule == "best_f1" and defect.any():
        threshold, f1 = best_f1_threshold(defect.astype(float), scores)
        log.info("image threshold %.6g (best F1 %.3f on the calibration set)", threshold, f1)
        return float(threshold), "best_f1"
    if eval_cfg.threshold_rule == "best_f1":
        log.warning("threshold_rule best_f1 needs defective calibration images; none given, using k-sigma")
    return float(k_sigma_threshold(scores[~defect], eval_cfg.k_sigma)), "k_sigma"
