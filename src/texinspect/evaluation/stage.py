"""The ``evaluate`` stage: read, measure, write every file of the contract (see the package docstring)."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from texinspect.config import EvalConfig
from texinspect.evaluation.measures import compute_metrics, markdown_table, per_type_table
from texinspect.evaluation.pictures import OVERVIEW_FILE, write_curves, write_overlays, write_overview
from texinspect.evaluation.reading import METRICS_FILE, load_items, read_prediction_meta, read_scores

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- the stage


def _json_ready(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _json_ready(value.item())
    return value


def evaluate(pred_dir: str | Path, data_dir: str | Path, eval_cfg: EvalConfig) -> dict[str, Any]:
    """Measure ``pred_dir`` (written by ``predict``, or by an outside tool) against ``data_dir``'s test split.

    Writes ``metrics.json``, ``per_type.csv``/``.md``, ``overview.png``, ``overlays/`` and ``curves/`` into
    ``pred_dir`` and returns the metrics (NaN where the data cannot give a metric; ``null`` in
    the JSON file). Raises DataError naming the file for a missing map, a map of the wrong shape
    or a scores.csv without the required columns. ``prediction.json`` is optional: without it the
    thresholds come from the test split (``threshold_source``, see the module docstring); a
    dataset without ``ground_truth/`` gives image metrics only (``pixel_metrics_unavailable``).
    """
    pred = Path(pred_dir)
    data = Path(os.path.abspath(os.fspath(data_dir)))
    meta = read_prediction_meta(pred)
    table = read_scores(pred)
    items = load_items(pred, data, meta, table)
    result = compute_metrics(items, meta, eval_cfg)
    threshold = float(result["threshold"])
    per_type = per_type_table(items, threshold, eval_cfg.aupro_fpr_limit, overall=result)
    per_type.to_csv(pred / "per_type.csv", index=False)
    (pred / "per_type.md").write_text(markdown_table(per_type))
    write_curves(items, threshold, pred / "curves")
    if (pred / "overlays").is_dir():
        shutil.rmtree(pred / "overlays")  # evaluate's own output: no stale pictures of a previous run
    result["n_overlays"] = write_overlays(
        items, pred / "overlays", eval_cfg.overlays, threshold, float(result["pixel_threshold"])
    )
    (pred / OVERVIEW_FILE).unlink(missing_ok=True)
    write_overview(items, pred / OVERVIEW_FILE, threshold, float(result["pixel_threshold"]))
    clean = {key: _json_ready(value) for key, value in result.items()}
    (pred / METRICS_FILE).write_text(json.dumps(clean, indent=2) + "\n")
    log.info(
        "evaluated %d images: image AUROC %s, pixel AUROC %s, AUPRO %s",
        result["n_images"], _fmt(result["image_auroc"]), _fmt(result["pixel_auroc"]), _fmt(result["aupro"]),
    )
    return result


def _fmt(value: Any) -> str:
    return "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.4f}"
