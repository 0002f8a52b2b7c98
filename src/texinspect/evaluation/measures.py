"""The numbers of ``metrics.json`` and the per-type table, from :class:`TestImage` lists: thresholds
(from ``prediction.json`` or the test split), image/pixel AUROC, AUPRO, P/R/F1."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from texinspect import metrics
from texinspect.config import EvalConfig
from texinspect.data.layout import GOOD
from texinspect.evaluation.reading import TestImage
from texinspect.scoring import best_f1_threshold, k_sigma_threshold

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- metrics


NO_MASKS_REASON = "the dataset has no ground_truth/ folder: image-level labels only, no pixel masks"


def pixel_metrics_unavailable(items: list[TestImage]) -> str | None:
    """Why pixel metrics cannot be measured on ``items``, or None when they can.

    ``scan_test`` requires every defect image's mask once ``ground_truth/`` exists, so defect
    images without any mask mean a dataset with image-level labels only.
    """
    defects = [it for it in items if it.label == 1]
    if defects and all(it.record.mask_path is None for it in defects):
        return NO_MASKS_REASON
    return None


def _guarded(name: str, fn: Callable[..., float], *args: Any, **kwargs: Any) -> float:
    """``fn(...)``, or NaN (logged) when the data cannot give this metric (e.g. one class only)."""
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        log.warning("%s not computed: %s", name, exc)
        return math.nan


def _threshold(
    stored: float | None, rule: str, normal: np.ndarray, labels: np.ndarray, scores: np.ndarray, k: float
) -> tuple[float, str]:
    """The stored threshold, or one from the test data itself (said so in the source)."""
    if stored is not None:
        return float(stored), "model"
    if rule == "best_f1":
        value = _guarded("best-F1 threshold", lambda: best_f1_threshold(labels, scores)[0])
        return value, "best_f1_test"
    return _guarded("k-sigma threshold", k_sigma_threshold, normal, k), "k_sigma_test_good"


def _pixel_k_sigma(items: list[TestImage], k: float) -> float:
    """mean + k * std over every pixel of the good test images' maps (float64 sums)."""
    values = [it.amap.ravel() for it in items if it.label == 0]
    if not values or sum(v.size for v in values) < 2:
        log.warning("pixel threshold not computed: no good test images")
        return math.nan
    flat = np.concatenate(values).astype(np.float64)
    return float(flat.mean() + k * flat.std(ddof=1))


def _pixel_metrics(items: list[TestImage], fpr_limit: float) -> dict[str, float]:
    """Pixel AUROC and AUPRO, NaN (not logged as a failure) when the dataset has no masks."""
    if pixel_metrics_unavailable(items):
        return {"pixel_auroc": math.nan, "aupro": math.nan}
    masks = [it.mask for it in items]
    maps = [it.amap for it in items]
    return {
        "pixel_auroc": _guarded("pixel AUROC", metrics.pixel_auroc, masks, maps),
        "aupro": _guarded("AUPRO", metrics.aupro, masks, maps, fpr_limit=fpr_limit),
    }


def _image_metrics(items: list[TestImage], threshold: float, fpr_limit: float) -> dict[str, float]:
    labels = np.array([it.label for it in items])
    scores = np.array([it.score for it in items])
    out = {
        "image_auroc": _guarded("image AUROC", metrics.image_auroc, labels, scores),
        **_pixel_metrics(items, fpr_limit),
    }
    flagged = scores >= threshold if np.isfinite(threshold) else np.zeros(len(items), bool)
    out["flagged"] = float(flagged.mean()) if len(items) else math.nan
    return out


def compute_metrics(items: list[TestImage], meta: dict[str, Any], eval_cfg: EvalConfig) -> dict[str, Any]:
    labels = np.array([it.label for it in items])
    scores = np.array([it.score for it in items])
    normal = scores[labels == 0]
    masks = [it.mask for it in items]
    maps = [it.amap for it in items]
    threshold, source = _threshold(meta.get("threshold"), eval_cfg.threshold_rule, normal, labels, scores, eval_cfg.k_sigma)
    stored_pixel = meta.get("pixel_threshold")
    if stored_pixel is not None:
        pixel_threshold, pixel_source = float(stored_pixel), "model"
    else:
        pixel_threshold, pixel_source = _pixel_k_sigma(items, eval_cfg.k_sigma), "k_sigma_test_good"
    no_pixels = pixel_metrics_unavailable(items)
    if no_pixels:
        log.warning("pixel metrics not available: %s", no_pixels)
    result: dict[str, Any] = {
        "image_auroc": _guarded("image AUROC", metrics.image_auroc, labels, scores),
        **_pixel_metrics(items, eval_cfg.aupro_fpr_limit),
        "aupro_fpr_limit": float(eval_cfg.aupro_fpr_limit),
        "pixel_metrics_unavailable": no_pixels,
    }
    prf = metrics.image_prf(labels, scores, threshold) if np.isfinite(threshold) else None
    result.update(
        precision=prf.precision if prf else math.nan,
        recall=prf.recall if prf else math.nan,
        f1=prf.f1 if prf else math.nan,
        threshold=threshold,
        threshold_source=source,
    )
    pix = metrics.pixel_prf(masks, maps, pixel_threshold) if np.isfinite(pixel_threshold) and not no_pixels else None
    result.update(
        pixel_precision=pix.precision if pix else math.nan,
        pixel_recall=pix.recall if pix else math.nan,
        pixel_f1=pix.f1 if pix else math.nan,
        pixel_threshold=pixel_threshold,
        pixel_threshold_source=pixel_source,
    )
    try:
        best_t, best_f1 = best_f1_threshold(labels, scores)
    except ValueError as exc:
        log.warning("best F1 not computed: %s", exc)
        best_t, best_f1 = math.nan, math.nan
    result.update(best_f1=best_f1, best_f1_threshold=best_t)
    result.update(
        n_images=len(items),
        n_good=int((labels == 0).sum()),
        n_defect=int((labels == 1).sum()),
        n_defect_empty_mask=None if no_pixels else int(sum(1 for it in items if it.label == 1 and not it.mask.any())),
        n_defect_regions=None if no_pixels else int(sum(ndimage.label(it.mask)[1] for it in items if it.mask.any())),
        prediction_json=bool(meta),
        family=meta.get("family"),
        image_size=items[0].amap.shape[0] if items else None,
    )
    return result


def per_type_table(
    items: list[TestImage], threshold: float, fpr_limit: float, overall: dict[str, Any] | None = None
) -> pd.DataFrame:
    """One row per defect type measured against the good images, then ``good`` and ``all``.

    ``flagged`` is the share of the row's images scoring at or above the image threshold: the
    recall for a defect type, the false-alarm rate for ``good``, the alarm rate for ``all``.
    ``overall`` (the metrics of all images, when already computed) saves recomputing the last row.
    """
    good = [it for it in items if it.label == 0]
    types = sorted({it.record.defect_type for it in items if it.label == 1})
    rows = []
    for defect_type in types:
        defects = [it for it in items if it.record.defect_type == defect_type]
        row = _image_metrics(good + defects, threshold, fpr_limit)
        scores = np.array([it.score for it in defects])
        row["flagged"] = float((scores >= threshold).mean()) if np.isfinite(threshold) else math.nan
        rows.append({"defect_type": defect_type, "n": len(defects), **row})
    if good:
        scores = np.array([it.score for it in good])
        flagged = float((scores >= threshold).mean()) if np.isfinite(threshold) else math.nan
        rows.append(
            {"defect_type": GOOD, "n": len(good), "image_auroc": math.nan, "pixel_auroc": math.nan,
             "aupro": math.nan, "flagged": flagged}
        )
    if overall is not None:
        scores = np.array([it.score for it in items])
        flagged = float((scores >= threshold).mean()) if np.isfinite(threshold) else math.nan
        all_row = {key: overall[key] for key in ("image_auroc", "pixel_auroc", "aupro")} | {"flagged": flagged}
    else:
        all_row = _image_metrics(items, threshold, fpr_limit)
    rows.append({"defect_type": "all", "n": len(items), **all_row})
    columns = ["defect_type", "n", "image_auroc", "pixel_auroc", "aupro", "flagged"]
    return pd.DataFrame(rows, columns=columns)


def markdown_table(table: pd.DataFrame, digits: int = 3, na: str = "n/a") -> str:
    """A GitHub Markdown table (NaN shown as ``na``), without needing the tabulate package."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return na if math.isnan(value) else f"{value:.{digits}f}"
        return str(value)

    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(table.columns))) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"
