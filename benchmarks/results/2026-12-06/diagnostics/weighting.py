"""Soft multilevel weighting of FMR-Net's pixel map: a grid over (power, sigma), synthetic defects only.

Usage: python weighting.py RUN_DIR [N_IMAGES] [--aupro]  (RUN_DIR holds config.yaml and model/).
The map is multimodal_map x (stitched window memory distance)^power, Gaussian sigma px; pixel AUROC
uses the synthesis masks, image AUROC the max of that map. ``--aupro``: eight points only, plus the
AUPRO (FPR <= 0.3) on the synthesis masks. Test labels are never read.
"""

import sys

import torch
from sklearn.metrics import roc_auc_score

from texinspect.config import load_config
from texinspect.metrics import aupro
from texinspect.models.artifact import load_detector
from texinspect.validation import build_synthetic_validation

torch.set_num_threads(1)
run = sys.argv[1]
args = [a for a in sys.argv[2:] if a != "--aupro"]
with_aupro = "--aupro" in sys.argv
n_images = int(args[0]) if args else 152
cfg = load_config(f"{run}/config.yaml")
det, _ = load_detector(f"{run}/model")
det.eval()
vs = build_synthetic_validation(cfg, n_images=n_images)
x = torch.from_numpy(vs.images)
mask = (torch.from_numpy(vs.masks) > 0.5).flatten().numpy()
with torch.no_grad():
    recs, window_scores = det._reconstruct(x, distances=True)
print(
    f"{run}: {len(x)} images, patch-score image AUROC {roc_auc_score(vs.labels, window_scores.flatten(1).amax(1)):.3f}"
)
print(
    "| power | sigma | synthetic pixel AUROC | image AUROC (max of map) |"
    + (" AUPRO |" if with_aupro else "")
)
print("|---:|---:|---:|---:|" + ("---:|" if with_aupro else ""))
grid = (
    [(0.0, 0.0), (0.0, 4.0), (1.0, 0.0), (1.0, 4.0), (2.0, 0.0), (2.0, 2.0), (2.0, 4.0), (3.0, 0.0)]
    if with_aupro
    else [(power, sigma) for power in (0.0, 1.0, 2.0, 3.0) for sigma in (0.0, 2.0, 4.0, 8.0)]
)
for power, sigma in grid:
    det.cfg.patch_weight_power, det.cfg.map_smoothing = power, sigma
    maps = det.pixel_map(x, recs, window_scores).float()
    pix = roc_auc_score(mask, maps.flatten().numpy())
    img = roc_auc_score(vs.labels, maps.flatten(1).amax(1).numpy())
    extra = f" {aupro(vs.masks, maps.numpy()):.3f} |" if with_aupro else ""
    print(f"| {power:g} | {sigma:g} | {pix:.3f} | {img:.3f} |{extra}", flush=True)
