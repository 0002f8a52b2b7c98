"""Synthetic-defect validation: how well a detector finds artificial defects on held-out normals.

This is the only quality signal training may look at (the test labels are for reporting only):
artificial defects are drawn, with a fixed seed, on the held-out normal images, and the image
and pixel AUROC of the detector's maps against them are computed with scikit-learn.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader, Dataset

from texinspect.models.base import Detector


@torch.no_grad()
def synthetic_auroc(
    detector: Detector,
    synthetic: Dataset,
    device: torch.device,
    score_smoothing: float = 4.0,
    batch_size: int = 8,
    max_pixels: int = 2_000_000,
    seed: int = 0,
) -> dict[str, float]:
    """Image AUROC (score = shared rule), pixel AUROC, on ``SyntheticDefectDataset`` items.

    Items' ``defect`` images are scored against ``has_defect`` and ``mask``. Pixels are subsampled
    (seeded) to ``max_pixels`` to bound the cost. NaN where only one class is present.
    """
    was_training = detector.training
    detector.eval()
    scores, labels, maps_all, masks_all = [], [], [], []
    try:
        for batch in DataLoader(synthetic, batch_size=batch_size, shuffle=False):
            images = batch["defect"].to(device)
            maps = detector.anomaly_map(images).float()
            scores.append(detector.image_score(images, maps, score_smoothing).float().cpu().numpy())
            labels.append(batch["has_defect"].numpy())
            maps_all.append(maps.cpu().numpy().ravel())
            masks_all.append(batch["mask"][:, 0].numpy().ravel())
    finally:
        detector.train(was_training)
    y_img = np.concatenate(labels) > 0.5
    s_img = np.concatenate(scores)
    y_pix = np.concatenate(masks_all) > 0.5
    s_pix = np.concatenate(maps_all)
    if y_pix.size > max_pixels:
        keep = np.random.default_rng(seed).choice(y_pix.size, size=max_pixels, replace=False)
        y_pix, s_pix = y_pix[keep], s_pix[keep]
    return {
        "synthetic_image_auroc": _auc(y_img, s_img),
        "synthetic_pixel_auroc": _auc(y_pix, s_pix),
        "synthetic_images": float(y_img.size),
    }


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < y.size else float("nan")
