import sys

import numpy as np
import torch

from texinspect.config import load_config
from texinspect.models.artifact import load_detector
from texinspect.validation import held_out_normals

torch.set_num_threads(1)
run = sys.argv[1]
cfg = load_config(f"{run}/config.yaml")
det, card = load_detector(f"{run}/model")
det.eval()
ds = held_out_normals(cfg)
x = torch.stack([ds[i]["image"] for i in range(len(ds))])
s = det.patch_scores(x)  # (B, 7, 7)
B, nh, nw = s.shape
arg = s.flatten(1).argmax(1)
cnt = torch.bincount(arg, minlength=nh * nw).reshape(nh, nw)
print("argmax window counts over", B, "held-out normals:\n", cnt.numpy())
print("mean score per window:\n", np.round(s.mean(0).numpy(), 3))
