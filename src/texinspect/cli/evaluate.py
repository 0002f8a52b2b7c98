"""``texinspect evaluate --pred OUT --data DIR``: the evaluate stage on the command line.

Only parses arguments, calls :func:`texinspect.evaluation.evaluate` and prints the results; the
``eval`` section of the config (k-sigma, threshold rule, AUPRO limit, overlays) comes from
``--config`` / ``--profile`` / ``--set`` like every other stage.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from texinspect.cli.common import add_config_args, config_from_args

# Rows of the printed summary: (key in metrics.json, label).
SUMMARY_ROWS: list[tuple[str, str]] = [
    ("image_auroc", "image AUROC"),
    ("pixel_auroc", "pixel AUROC"),
    ("aupro", "AUPRO (FPR <= {aupro_fpr_limit:g})"),
    ("precision", "image precision"),
    ("recall", "image recall"),
    ("f1", "image F1"),
    ("threshold", "image threshold ({threshold_source})"),
    ("best_f1", "best image F1 (at {best_f1_threshold:.4g})"),
    ("pixel_precision", "pixel precision"),
    ("pixel_recall", "pixel recall"),
    ("pixel_f1", "pixel F1"),
    ("pixel_threshold", "pixel threshold ({pixel_threshold_source})"),
]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` sub-command to the texinspect CLI."""
    parser = subparsers.add_parser(
        "evaluate",
        help="measure a prediction folder against the dataset's masks: metrics.json, per-type table, overview.png, overlays, curves",
    )
    parser.add_argument(
        "--pred", required=True, help="folder written by `texinspect predict`, or scores.csv + maps/ of an outside tool (results go here too)",
    )
    parser.add_argument(
        "--data", required=True, help="dataset folder in MVTec layout (test/; ground_truth/ optional: without it image metrics only)",
    )
    add_config_args(parser)
    parser.set_defaults(func=run)
    return parser


def _value(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def format_summary(result: dict[str, Any]) -> str:
    """The headline metrics, one per line, aligned."""
    lines = []
    for key, label in SUMMARY_ROWS:
        try:
            text = label.format(**{k: (math.nan if v is None else v) for k, v in result.items()})
        except (KeyError, ValueError, TypeError):
            text = label.split(" (")[0]
        lines.append(f"{text:<42} {_value(result.get(key))}")
    counts = f"{result.get('n_images')} images: {result.get('n_good')} good, {result.get('n_defect')} defective"
    notes = []
    if result.get("pixel_metrics_unavailable"):
        notes.append(f"pixel metrics n/a: {result['pixel_metrics_unavailable']}")
    if result.get("prediction_json") is False:
        notes.append("no prediction.json: model thresholds unknown, thresholds derived from the test split")
    return "\n".join([counts, *lines, *notes])


def run(args: argparse.Namespace) -> int:
    """Handler of ``texinspect evaluate``; returns the exit code."""
    from texinspect.evaluation import OVERVIEW_FILE, evaluate, markdown_table

    config = config_from_args(args)
    result = evaluate(args.pred, args.data, config.eval)
    print(format_summary(result))
    per_type = Path(args.pred) / "per_type.csv"
    if per_type.is_file():
        import pandas as pd

        print()
        print(markdown_table(pd.read_csv(per_type)), end="")
    print(f"\nwritten to {Path(args.pred)}: metrics.json, per_type.csv, per_type.md, {OVERVIEW_FILE}, curves/, overlays/")
    return 0
