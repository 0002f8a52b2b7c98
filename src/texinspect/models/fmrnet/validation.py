"""Synthetic-defect validation: how well a trained model finds artificial defects on held-out normals.

The only honest tuning signal without labelled defects: the held-out normal images (never trained
on) are scored as they are and with a seeded synthetic defect each; image AUROC compares the two
sets, pixel AUROC uses the synthesis masks. Written to ``train_summary.json`` so sweeps (Optuna)
and the benchmark can read it; real test labels are never involved.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import Dataset

from texinspect.config import Config
from texinspect.models.base import Detector
from texinspect.models.fmrnet.network import FMRNet
from texinspect.synthesis.dataset import SyntheticDefectDataset
from texinspect.synthesis.synthesizer import DefectSynthesizer

VALIDATION_SEED = 1_000_003  # a synthesis stream training never draws from

# images -> (maps (B, H, W), image scores (B,))
Scorer = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def patch_path_scorer(net: FMRNet) -> Scorer:
    """The patch path alone (encoder + memory, no decoder): each pixel gets the mean memory distance
    of the windows covering it, each image its largest window distance (the ``patch`` image rule)."""

    def score(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        windows = net.patch_scores(images)
        maps = net.stitch_window_scores(windows, images.shape[-2], images.shape[-1])
        return maps, windows.flatten(1).amax(dim=1)

    return score


@torch.no_grad()
def synthetic_validation(
    detector: Detector,
    normal: Dataset,
    synthesizer: DefectSynthesizer,
    config: Config,
    device: torch.device,
    batch_size: int = 8,
    scorer: Scorer | None = None,
) -> dict[str, float]:
    """Image and pixel AUROC of ``detector`` on ``normal`` vs the same images with synthetic defects.

    ``scorer`` replaces ``detector.score`` (e.g. :func:`patch_path_scorer` for a phase-1 encoder);
    the defects depend on ``config.seed`` only, so models scored with one config see the same ones.
    """
    detector.eval()
    score: Scorer = scorer or (lambda x: detector.score(x, config.eval.score_smoothing))

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
        m_clean, s_clean = (t.float().cpu() for t in score(clean))
        m_broken, s_broken = (t.float().cpu() for t in score(broken))
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
