"""How well does the synthetic validation predict the real test ranking? (issue 17, item 5)

Reads the per-run CSVs of ``diagnose.py`` (columns ``surface``, ``<yardstick>_image``,
``<yardstick>_pixel`` for each synthetic set, ``test_image``, ``test_pixel``) and prints, per
surface and synthetic set, the Spearman rank correlation between the synthetic-defect AUROC
(held-out normals, the only signal choices are made on) and the test split's AUROC over every
run, with the number of runs and scipy's two-sided p-value::

    python benchmarks/selection.py benchmarks/results/2026-12-07/diagnose_*.csv

A candidate synthetic set is judged on models that already exist, without training: ``--models``
measures each model folder (any family, trained by any benchmark) on every ``--yardstick`` (the
profile's synthesis with that set's overrides, drawn on the held-out normals of the model's own
seed and surface, so never on an image it trained on) and on its test split, writes the runs to
``--csv`` and prints the correlations of those sets. It also writes each model's ``exposure_rho``
(:func:`exposure_rho`: does the score of a good part follow its brightness?)::

    python benchmarks/selection.py --models benchmarks/runs/*/elpv*/**/model \\
        --yardstick syn: --yardstick dark:synthesis.intensity_match=1.0 --csv rank.csv
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Row, RunSettings, row_config, score, setup_logging, surface_name  # noqa: E402
from diagnose import parse_variant  # noqa: E402

from texinspect.config import Config  # noqa: E402
from texinspect.errors import TexinspectError  # noqa: E402
from texinspect.models.artifact import load_card, load_detector  # noqa: E402
from texinspect.training.validation import held_out_normals, synthetic_validation  # noqa: E402

log = logging.getLogger("benchmarks.selection")
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


EXPOSURE_GAINS = (0.8, 1.0, 1.25)


@torch.no_grad()
def exposure_rho(model_dir: Path, config: Config) -> float:
    """Spearman correlation between held-out normals' image scores and their mean brightness, each
    normal as it is and relit by 0.8 and 1.25 (no labels needed). Near 0: exposure does not move the
    score; near +-1: bright (or dark) good parts are flagged (FMR-Net on ELPV, issue 17 round 6).
    ``config`` is the model's own: its data and seed, so its held-out split."""
    detector, card = load_detector(model_dir)
    detector.eval()
    normals = held_out_normals(config, card.image_size, card.channels)
    images = np.stack([normals[i]["image"].numpy() for i in range(len(normals))])
    relit = np.concatenate([np.clip(images * np.float32(g), 0.0, 1.0) for g in EXPOSURE_GAINS])
    scores = np.concatenate([detector.score(torch.from_numpy(relit[i : i + 8]), card.score_smoothing)[1].numpy()
                             for i in range(0, len(relit), 8)])
    return float(spearmanr(scores, relit.mean(axis=(1, 2, 3)))[0])


def measure_model(model_dir: Path, sets: list[tuple[str, list[str]]], args: argparse.Namespace) -> dict[str, Any]:
    """One model on every synthetic set and on its surface's test split (the model's own data and seed)."""
    card = load_card(model_dir)
    trained = card.resolved_config()
    data = str(trained.data.root)
    settings = RunSettings(data=data, minutes=0.0, profile=args.profile or None, threads=args.threads,
                           overrides=["tracking.enabled=false"])
    result: dict[str, Any] = {"model": str(model_dir), "family": card.family, "surface": surface_name(data),
                              "seed": trained.seed}
    for name, extra in sets:
        config = row_config(Row(name, card.family, tuple(extra)), settings, trained.seed)
        syn = synthetic_validation(model_dir, config, n_images=args.val_images)
        result.update({f"{name}_image": syn["image_auroc"], f"{name}_pixel": syn["pixel_auroc"],
                       f"{name}_aupro": syn["aupro"]})
    result["exposure_rho"] = exposure_rho(model_dir, trained)
    test = score(Row("model", card.family), model_dir, data, model_dir.parent / "pred_selection", trained)
    return {**result, "test_image": test.get("image_auroc"), "test_pixel": test.get("pixel_auroc"),
            "test_aupro": test.get("aupro")}


def measure_models(args: argparse.Namespace) -> pd.DataFrame:
    """``--models`` on ``--yardstick``; each run is appended to ``--csv`` as it finishes."""
    sets = [parse_variant(text) for text in args.yardstick]
    csv = Path(args.csv)
    csv.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, model_dir in enumerate(args.models, 1):
        log.info("[%d/%d] %s", i, len(args.models), model_dir)
        try:
            rows.append(measure_model(Path(model_dir), sets, args))
        except (TexinspectError, RuntimeError) as exc:  # e.g. a model of an older, incompatible version
            log.warning("skipped %s: %s", model_dir, exc)
            continue
        pd.DataFrame(rows).to_csv(csv, index=False)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv_in", nargs="*", metavar="csv", help="diagnose.py run CSVs")
    p.add_argument("--models", nargs="+", default=[], help="model folders to measure instead of reading CSVs")
    p.add_argument("--yardstick", action="append", default=[],
                   help="NAME:key=value,... a synthetic set: the profile with these synthesis overrides (NAME: its own)")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--val-images", type=int, default=80, help="synthetic validation images (half get a defect)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--csv", default="benchmarks/results/selection_runs.csv", help="where --models writes its runs")
    args = p.parse_args(argv)
    if bool(args.models) == bool(args.csv_in):
        p.error("give diagnose.py CSVs or --models, not both and not neither")
    if args.models and not args.yardstick:
        p.error("--models needs at least one --yardstick (e.g. 'syn:' for the profile's own set)")
    if args.models:
        setup_logging()
        torch.set_num_threads(args.threads)
        runs = measure_models(args)
    else:
        runs = pd.concat([pd.read_csv(path) for path in args.csv_in], ignore_index=True)
    print(rank_correlations(runs).to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="n/a"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
