"""How well does the synthetic validation predict the real test ranking? (issue 17, item 5)

Reads the per-run CSVs of ``diagnose.py`` (columns ``surface``, ``<yardstick>_image``,
``<yardstick>_pixel`` for each synthetic set, ``test_image``, ``test_pixel``) and prints, per
surface and synthetic set, the Spearman rank correlation between the synthetic-defect AUROC
(held-out normals, the only signal choices are made on) and the test split's AUROC over every
run, with the number of runs and scipy's two-sided p-value::

    python benchmarks/selection.py benchmarks/results/2026-12-07/diagnose_*.csv
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
from scipy.stats import spearmanr

LEVELS = ("image", "pixel")


def yardsticks(runs: pd.DataFrame) -> list[str]:
    """Synthetic sets in the CSVs: every ``<name>_image`` column with a ``<name>_pixel`` beside it, but the test split."""
    return [c[: -len("_image")] for c in runs.columns
            if c.endswith("_image") and c != "test_image" and f"{c[: -len('_image')]}_pixel" in runs.columns]


def rank_correlations(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per surface, yardstick and level: runs, Spearman rho, p-value (NaN where fewer than 3 runs)."""
    rows = []
    for surface, group in runs.groupby("surface", sort=False):
        for name in yardsticks(runs):
            for level in LEVELS:
                syn, test = f"{name}_{level}", f"test_{level}"
                pair = group[[syn, test]].apply(pd.to_numeric, errors="coerce").dropna()
                rho, p = (spearmanr(pair[syn], pair[test]) if len(pair) >= 3 else (float("nan"), float("nan")))
                rows.append({"surface": surface, "yardstick": name, "level": level, "runs": len(pair),
                             "spearman_rho": rho, "p_value": p})
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
