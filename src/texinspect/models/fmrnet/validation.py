"""Synthetic-defect validation: how well a trained model finds artificial defects on held-out normals.

The only honest tuning signal without labelled defects: the held-out normal images (never trained
on) are scored as they are and with a seeded synthetic defect each; image AUROC compares the two
sets, pixel AUROC uses the synthesis masks. Written to ``train_summary.json`` so sweeps (Optuna)
and the benchmark can read it; real test labels are never involved.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import Dataset

from texinspect.config import Config
from texinspect.models.base import Detector
from texinspect.synthesis.dataset import SyntheticDefectDataset
from texinspect.synthesis.synthesizer import DefectSynthesizer

VALIDATION_SEED = 1_000_003  # a synthesis stream training never draws from


@torch.no_grad()
def synthetic_validation(
    detector: Detector,
    normal: Dataset,
    synthesizer: DefectSynthesizer,
    config: Config,
    device: torch.device,
    batch_size: int = 8,
) -> dict[str, float]:
    """Image and pixel AUROC of ``detector`` on ``normal`` vs the same images with synthetic defects."""
    detector.eval()
    synthetic = SyntheticDefectDataset(
        normal, synthesizer, seed=VALIDATION_SEED + config.seed, defect_probability=1.0
    )
    normal_scores, defect_scores, pixel_scores, pixel_labels = [], [], [], []
    n = len(normal)  # type: ignore[arg-type]
    for start in range(0, n, batch_size):
        items = [synthetic[i] for i in range(start, min(n, start + batch_size))]
        clean = torch.stack([it["image"] for it in items]).to(device)
        broken = torch.stack([it["defect"] for it in items]).to(device)
        masks = torch.stack([it["mask"][0] for it in items])
        m_clean, s_clean = (t.float().cpu() for t in detector.score(clean, config.eval.score_smoothing))
        m_broken, s_broken = (t.float().cpu() for t in detector.score(broken, config.eval.score_smoothing))
        normal_scores.append(s_clean)
        defect_scores.append(s_broken)
        pixel_scores += [m_clean.flatten(), m_broken.flatten()]
        pixel_labels += [torch.zeros(m_clean.numel()), (masks > 0.5).float().flatten()]
    s = torch.cat(normal_scores + defect_scores).numpy()
    y = np.r_[np.zeros(sum(len(t) for t in normal_scores)), np.ones(sum(len(t) for t in defect_scores))]
    py = torch.cat(pixel_labels).numpy()
    out = {"synthetic_image_auroc": float(roc_auc_score(y, s))}
    out["synthetic_pixel_auroc"] = (
        float(roc_auc_score(py, torch.cat(pixel_scores).numpy())) if 0 < py.sum() < py.size else float("nan")
    )
    return out
