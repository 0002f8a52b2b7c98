"""Post-hoc: pixel map combined with the window memory distances (synthetic validation only)."""

import sys

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from texinspect.config import load_config
from texinspect.models.artifact import load_detector
from texinspect.models.fmrnet.inspection import modality_map, multimodal_map
from texinspect.models.fmrnet.patches import extract_patches, stitch
from texinspect.scoring import gaussian_blur
from texinspect.validation import build_synthetic_validation

torch.set_num_threads(1)
run = sys.argv[1]
cfg = load_config(f"{run}/config.yaml")
det, card = load_detector(f"{run}/model")
det.eval()
vs = build_synthetic_validation(cfg, n_images=40)
x = torch.from_numpy(vs.images)
m = (torch.from_numpy(vs.masks) > 0.5).flatten().numpy()
lab = vs.labels
with torch.no_grad():
    rx, gx = det._reconstruct(x, distances=True)
mx = multimodal_map(x, rx, det.cfg.modalities, 3)
res = modality_map("residual", x, rx)
p, s = det.cfg.patch_size, det.cfg.patch_stride
_, grid = extract_patches(x[:, :1], p, s)
ones = torch.ones(gx.numel(), 1, p, p)
dmean = stitch(ones * gx.flatten().view(-1, 1, 1, 1), grid)[0][:, 0]
dbil = F.interpolate(gx[:, None], size=x.shape[-2:], mode="bilinear", align_corners=True)[:, 0]


def pa(mm):
    return round(roc_auc_score(m, mm.flatten().numpy()), 4), round(
        roc_auc_score(m, gaussian_blur(mm, 4).flatten().numpy()), 4
    )


print("map", pa(mx))
print("residual", pa(res))
print("dist stitched", pa(dmean))
print("dist bilinear", pa(dbil))
print("map*d", pa(mx * dmean))
print("map*d^2", pa(mx * dmean**2))
print("res*d", pa(res * dmean))
print("map*dbil", pa(mx * dbil))
print("res*dbil^2", pa(res * dbil**2))
thr = float(det.patch_threshold)
gate = stitch(torch.ones(gx.numel(), 1, p, p), grid, weights=(gx.flatten() >= thr).float())[1][:, 0] > 0
print(
    "thr",
    thr,
    "flagged frac normals",
    float((gx[torch.from_numpy(lab) == 0] >= thr).float().mean()),
    "defects",
    float((gx[torch.from_numpy(lab) == 1] >= thr).float().mean()),
)
print("map*gate", pa(mx * gate))
print("map*d^3", pa(mx * dmean**3))
print("map*d^4", pa(mx * dmean**4))


def ia(s):
    return round(roc_auc_score(lab, s.numpy()), 4)


print(
    "img: patch",
    ia(gx.flatten(1).amax(1)),
    "map",
    ia(gaussian_blur(mx, 4).flatten(1).amax(1)),
    "map*d^2",
    ia(gaussian_blur(mx * dmean**2, 4).flatten(1).amax(1)),
)
