"""Probe for fmrnet.phase1_restarts: phase-1 candidates on one data split, scored by their patch path.

Usage (from the repository root, PYTHONPATH=src): python restart_probe.py DATA POOL SPLIT_SEED SEED [SEED ...]
Each SEED trains phase 1 for 150 s (cpu profile, train.max_minutes 5 x phase1_fraction 0.5) on the
split of SPLIT_SEED, builds the memory bank, and prints the synthetic-defect image / pixel AUROC of
the patch path (window memory distances, stitched; the largest as the image score) on the held-out
normals, the defects seeded as the trainer's validation. Test labels are never read.
Run on 2026-12-06 as: restart_probe.py ../shared/datasets/magnetic_tile ../shared/datasets/texture_pool 2 2 1002 2002
"""

import copy
import json
import logging
import sys
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from texinspect.config import load_config
from texinspect.models.fmrnet.memory_bank import build_memory_bank, load_encoder_source, load_memory_bank
from texinspect.models.fmrnet.patches import make_grid, stitch_values
from texinspect.models.fmrnet.training import train_phase1
from texinspect.models.fmrnet.validation import VALIDATION_SEED
from texinspect.synthesis.dataset import SyntheticDefectDataset
from texinspect.training.common import prepare_training_data

logging.basicConfig(level=logging.INFO)
torch.set_num_threads(2)
data_root, pool, split_seed, *seeds = sys.argv[1:]
base = load_config(
    "params.yaml",
    {
        "model": "fmrnet",
        "data.root": data_root,
        "seed": int(split_seed),
        "train.max_minutes": 5.0,
        "train.progress": False,
        "synthesis.texture_pool": pool,
        "fmrnet.phase1_restarts": 1,
    },
    "cpu",
)
data = prepare_training_data(base)
syn = SyntheticDefectDataset(
    data.val, data.synthetic.synthesizer, seed=VALIDATION_SEED + base.seed, defect_probability=1.0
)
items = [syn[i] for i in range(len(data.val))]
for s in [int(a) for a in seeds]:
    cfg = copy.deepcopy(base)
    cfg.seed = s
    out = f"runs/restart_probe/c{s}"
    t0 = time.time()
    r = train_phase1(cfg, out, data=data)
    build_memory_bank(base, f"{out}/checkpoints/phase1_end.pt", f"{out}/memory_bank.pt", images=data.train)
    net, _ = load_encoder_source(base, f"{out}/checkpoints/phase1_end.pt", torch.device("cpu"))
    net.set_memory(load_memory_bank(f"{out}/memory_bank.pt", base)["memory"])
    net.eval()
    sc, sd, pm, pl = [], [], [], []
    for st in range(0, len(items), 8):
        it = items[st : st + 8]
        for key, lab in (("image", 0), ("defect", 1)):
            x = torch.stack([i[key] for i in it])
            w = net.patch_scores(x)
            (sc if lab == 0 else sd).append(w.flatten(1).amax(1))
            g = make_grid(
                x.shape[0], x.shape[2], x.shape[3], base.fmrnet.patch_size, base.fmrnet.patch_stride
            )
            pm.append(stitch_values(w.flatten(), g).flatten())
            pl.append(
                torch.zeros(pm[-1].numel())
                if lab == 0
                else (torch.stack([i["mask"][0] for i in it]) > 0.5).float().flatten()
            )
    s_all = torch.cat(sc + sd).numpy()
    y = np.r_[np.zeros(len(items)), np.ones(len(items))]
    res = {
        "seed": s,
        "steps": r.steps,
        "img": roc_auc_score(y, s_all),
        "pix": roc_auc_score(torch.cat(pl).numpy(), torch.cat(pm).numpy()),
        "wall": time.time() - t0,
    }
    print("RESULT", json.dumps(res), flush=True)
