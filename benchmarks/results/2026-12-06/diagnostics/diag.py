"""Diagnose FMR-Net's pixel map on synthetic validation (held-out normals only)."""

import sys

import torch
from sklearn.metrics import roc_auc_score

from texinspect.config import load_config
from texinspect.models.artifact import load_detector
from texinspect.models.fmrnet.inspection import modality_map, multimodal_map
from texinspect.scoring import gaussian_blur
from texinspect.validation import build_synthetic_validation

torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
run = sys.argv[1]
cfg = load_config(f"{run}/config.yaml")
det, card = load_detector(f"{run}/model")
det.eval()
vs = build_synthetic_validation(cfg, n_images=40)
x = torch.from_numpy(vs.images)
with torch.no_grad():
    rec, grid = det._reconstruct(x, distances=True)
m = torch.from_numpy(vs.masks) > 0.5
lab = torch.from_numpy(vs.labels)


def pa(maps):
    return roc_auc_score(m.flatten().numpy(), maps.flatten().numpy())


def ia(s):
    return roc_auc_score(lab.numpy(), s.numpy())


res = {}
for name in ["gms", "ssim", "residual"]:
    mm = modality_map(name, x, rec)
    res[name] = (pa(mm), pa(gaussian_blur(mm, 4)))
full = multimodal_map(x, rec, det.cfg.modalities, 3)
res["product"] = (pa(full), pa(gaussian_blur(full, 4)))
res["product_img_max"] = ia(gaussian_blur(full, 4).flatten(1).amax(1))
res["patch_img"] = ia(grid.flatten(1).amax(1))
# border vs interior residual on normals
r = modality_map("residual", x[lab == 0], rec[lab == 0])
res["res_border8/interior"] = (
    float(r[:, :8].mean() + r[:, -8:].mean() + r[:, :, :8].mean() + r[:, :, -8:].mean())
    / 4
    / float(r[:, 32:-32, 32:-32].mean())
)
res["mse_normals"] = float((x[lab == 0] - rec[lab == 0]).pow(2).mean())
for k, v in res.items():
    print(k, v)
if len(sys.argv) > 2:
    import PIL.Image as I

    rows = []
    for i in list(range(20, 26)):
        t = [x[i, 0], rec[i, 0], m[i].float(), (full[i] / full[i].max())]
        rows.append(torch.cat(t, 1))
    img = (torch.cat(rows, 0).clamp(0, 1) * 255).byte().numpy()
    I.fromarray(img).save(sys.argv[2])
