"""Post-hoc: image/pixel AUROC on synthetic validation with memory = k-means(L) vs all training codes."""

import sys

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import roc_auc_score

from texinspect.config import load_config
from texinspect.models.artifact import load_detector
from texinspect.models.fmrnet.cmfm import nearest_entry_distance
from texinspect.models.fmrnet.patches import extract_patches
from texinspect.training.common import prepare_training_data
from texinspect.validation import build_synthetic_validation

torch.set_num_threads(2)
run = sys.argv[1]
cfg = load_config(f"{run}/config.yaml")
det, card = load_detector(f"{run}/model")
det.eval()
data = prepare_training_data(cfg)
codes = []
with torch.no_grad():
    for i in range(0, len(data.train), 16):
        x = torch.stack([data.train[j]["image"] for j in range(i, min(len(data.train), i + 16))])
        pt, _ = extract_patches(x, det.cfg.patch_size, det.cfg.patch_stride)
        codes.append(det.encode(pt)[1])
codes = torch.cat(codes)
print("codes", codes.shape)
vs = build_synthetic_validation(cfg, n_images=40)
x = torch.from_numpy(vs.images)
lab = vs.labels
with torch.no_grad():
    pt, grid = extract_patches(x, det.cfg.patch_size, det.cfg.patch_stride)
    z = det.encode(pt)[1]


def img(mem):
    d = nearest_entry_distance(z, mem).reshape(len(x), -1)
    return round(roc_auc_score(lab, d.amax(1).numpy()), 4)


print("bank512", img(det.memory))
print("all codes", img(codes))
rng = np.random.default_rng(0)
for L in [512, 2048]:
    sub = codes[rng.choice(len(codes), 8192 if L <= 512 else 16384, replace=False)].numpy()
    km = KMeans(L, n_init=1, max_iter=30, random_state=0).fit(sub)
    print("kmeans", L, img(torch.from_numpy(km.cluster_centers_).float()))
