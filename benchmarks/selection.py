"""How well does the synthetic validation predict the real test ranking? (issue 17, item 5)

Reads the per-run CSVs of ``diagnose.py`` (columns ``surface``, ``syn_image``, ``test_image``,
``syn_pixel``, ``test_pixel``) and prints, per surface, the Spearman rank correlation between
the synthetic-defect AUROC (held-out normals, the only signal choices are made on) and the test
split's AUROC over every run, with the number of runs and scipy's two-sided p-value::

    python benchmarks/selection.py benchmarks/results/2026-12-07/diagnose_*.csv
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
from scipy.stats import spearmanr

PAIRS = (("image", "syn_image", "test_image"), ("pixel", "syn_pixel", "test_pixel"))


def rank_correlations(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per surface and level: runs, Spearman rho, p-value (NaN where fewer than 3 runs)."""
    rows = []
    for surface, group in runs.groupby("surface", sort=False):
        for level, syn, test in PAIRS:
            pair = group[[syn, test]].apply(pd.to_numeric, errors="coerce").dropna()
            rho, p = (spearmanr(pair[syn], pair[test]) if len(pair) >= 3 else (float("nan"), float("nan")))
            rows.append({"surface": surface, "level": level, "runs": len(pair), "spearman_rho": rho, "p_value": p})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("csv", nargs="+", help="diagnose.py run CSVs")
    args = p.parse_args(argv)
    runs = pd.concat([pd.read_csv(path) for path in args.csv], ignore_index=True)
    print(rank_correlations(runs).to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="n/a"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
