"""How far above chance at pixel level: image-stratified bootstrap 95% interval of the pixel AUROC.

Usage: python pixel_auroc_ci.py DATA PRED_DIR [PRED_DIR ...]  (each from `texinspect predict`, maps kept).
Pixels of one image are not independent, so the resampling unit is the image: normal and defective
test images are resampled separately (1,000 resamples, seed 0) and the pixel AUROC is recomputed
over the pixels of the drawn images. For speed every image is reduced to histograms of its normal
and defect pixels over 2,048 bins (global quantiles of the scores); the AUROC from the histograms
(ties within a bin count half) is printed beside the exact one as a check of the binning.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from texinspect.evaluation import load_items

BINS = 2048


def hist_auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUROC from per-bin counts of positives and negatives (bins in increasing score order)."""
    below = np.cumsum(neg) - neg  # negatives in lower bins
    return float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))


rng = np.random.default_rng(0)
data = Path(sys.argv[1])
print(
    "| run | pixel AUROC (exact) | binned | 95% bootstrap interval (images resampled) |\n|---|---:|---:|---:|"
)
for pred in sys.argv[2:]:
    items = load_items(Path(pred), data, {}, pd.read_csv(f"{pred}/scores.csv"))
    scores = np.concatenate([it.amap.ravel() for it in items])
    labels = np.concatenate([it.mask.ravel() for it in items])
    exact = roc_auc_score(labels, scores)
    edges = np.quantile(scores[:: max(1, len(scores) // 1_000_000)], np.linspace(0, 1, BINS + 1)[1:-1])
    pos = np.stack([np.bincount(np.searchsorted(edges, it.amap[it.mask]), minlength=BINS) for it in items])
    neg = np.stack([np.bincount(np.searchsorted(edges, it.amap[~it.mask]), minlength=BINS) for it in items])
    kind = np.array([it.label for it in items])
    normal, defect = np.flatnonzero(kind == 0), np.flatnonzero(kind == 1)
    boots = []
    for _ in range(1000):
        idx = np.r_[rng.choice(normal, len(normal)), rng.choice(defect, len(defect))]
        boots.append(hist_auroc(pos[idx].sum(0), neg[idx].sum(0)))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    print(
        f"| {pred} | {exact:.3f} | {hist_auroc(pos.sum(0), neg.sum(0)):.3f} | {lo:.3f} - {hi:.3f} |",
        flush=True,
    )
