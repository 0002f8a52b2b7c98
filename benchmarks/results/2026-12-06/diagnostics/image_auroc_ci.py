"""How far above chance: stratified bootstrap 95% interval of the test image AUROC of each run.

Usage: python image_auroc_ci.py PRED_DIR [PRED_DIR ...]  (each holds the scores.csv `predict` wrote).
Normals and defects are resampled separately (2,000 resamples, seed 0), so every resample keeps
the split's class sizes; the interval is the 2.5th-97.5th percentile.
"""

import sys

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

rng = np.random.default_rng(0)
print("| run | image AUROC | 95% bootstrap interval |\n|---|---:|---:|")
for pred in sys.argv[1:]:
    df = pd.read_csv(f"{pred}/scores.csv")
    good = df.loc[df.label == 0, "score"].to_numpy()
    bad = df.loc[df.label == 1, "score"].to_numpy()
    y = np.r_[np.zeros(len(good)), np.ones(len(bad))]
    boots = [
        roc_auc_score(y, np.r_[rng.choice(good, len(good)), rng.choice(bad, len(bad))]) for _ in range(2000)
    ]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    print(f"| {pred} | {roc_auc_score(y, np.r_[good, bad]):.3f} | {lo:.3f} - {hi:.3f} |")
