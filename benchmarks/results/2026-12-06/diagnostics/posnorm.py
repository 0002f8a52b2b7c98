"""Post-hoc: per-position standardisation of window scores and pixel maps, stats from held-out
normals NOT used by the synthetic validation set (val[20:]); evaluated on the synthetic set (val[:20])."""

import sys

import torch
from sklearn.metrics import roc_auc_score

from texinspect.config import load_config
from texinspect.models.artifact import load_detector
from texinspect.models.fmrnet.inspection import multimodal_map
from texinspect.scoring import gaussian_blur
from texinspect.validation import build_synthetic_validation, held_out_normals

torch.set_num_threads(1)
run = sys.argv[1]
cfg = load_config(f"{run}/config.yaml")
det, card = load_detector(f"{run}/model")
det.eval()
ds = held_out_normals(cfg)
ref = torch.stack([ds[i]["image"] for i in range(20, len(ds))])
vs = build_synthetic_validation(cfg, n_images=40)
x = torch.from_numpy(vs.images)
m = torch.from_numpy(vs.masks) > 0.5
lab = vs.labels
with torch.no_grad():
    rr, gr = det._reconstruct(ref, distances=True)
    rx, gx = det._reconstruct(x, distances=True)
mr = multimodal_map(ref, rr, det.cfg.modalities, 3)
mx = multimodal_map(x, rx, det.cfg.modalities, 3)
mu_g, sd_g = gr.mean(0), gr.std(0)
print("img patch raw", roc_auc_score(lab, gx.flatten(1).amax(1)))
print("img patch z  ", roc_auc_score(lab, ((gx - mu_g) / sd_g).flatten(1).amax(1)))
print("img patch -mu", roc_auc_score(lab, (gx - mu_g).flatten(1).amax(1)))
for s in [0, 4, 8]:
    mu = mr.mean(0, keepdim=True)
    sd = mr.std(0, keepdim=True)
    if s:
        mu, sd = gaussian_blur(mu, s), gaussian_blur(sd, s)
    z = (mx - mu) / (sd + 1e-6)
    d = mx - mu
    for name, mm in [("raw", mx), ("z", z), ("-mu", d)]:
        print(
            f"pix stats-blur {s} {name}",
            round(roc_auc_score(m.flatten(), mm.flatten()), 4),
            round(roc_auc_score(m.flatten(), gaussian_blur(mm, 4).flatten()), 4),
        )
