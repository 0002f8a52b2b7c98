"""Patch-path synthetic AUROC (image, pixel) of trained models, on their trainer's split and defects.

Usage (repository root, PYTHONPATH=src): python patch_path.py DATA POOL RUNS  (RUNS/seed{0,1,2}/model)
Run on 2026-12-06 over the three 15-minute models of soft/ (seeds 0 / 1 / 2).
"""

import sys

import torch

from texinspect.config import load_config
from texinspect.models.artifact import load_detector
from texinspect.models.fmrnet.validation import patch_path_scorer, synthetic_validation
from texinspect.training.common import prepare_training_data

data_root, pool, runs = sys.argv[1:]
torch.set_num_threads(2)
for seed in (0, 1, 2):
    cfg = load_config(
        "params.yaml",
        {
            "model": "fmrnet",
            "data.root": data_root,
            "seed": seed,
            "synthesis.texture_pool": pool,
            "fmrnet.phase1_restarts": 1,
        },
        "cpu",
    )
    data = prepare_training_data(cfg)
    net, _ = load_detector(f"{runs}/seed{seed}/model")
    print(
        seed,
        synthetic_validation(
            net, data.val, data.synthetic.synthesizer, cfg, torch.device("cpu"), scorer=patch_path_scorer(net)
        ),
        flush=True,
    )
