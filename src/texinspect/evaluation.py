"""``texinspect evaluate``: measure the files ``texinspect predict`` wrote against the ground truth.

Reads ``PRED/scores.csv`` (columns ``path``, ``score``; others ignored), ``PRED/maps/<path>.npy``
and, when present, ``PRED/prediction.json`` plus the test split (images, masks) of the dataset,
and writes into ``PRED``:

``metrics.json``   image AUROC, pixel AUROC, AUPRO, image precision/recall/F1 at the threshold,
                   pixel precision/recall/F1 at the pixel threshold (FMR-Net Table V), best F1,
                   thresholds and where they came from, counts
``per_type.csv``   one row per defect type (that type vs the good images), plus ``good``, ``all``
``per_type.md``    the same table in Markdown
``overlays/<type>/<stem>.png``  image | anomaly map | mask | overlay, for a look at the failures
``overview.png``   one picture for people (README, MLflow): ``good`` and each defect type side by
                   side, two images each with the map overlaid, true mask (red) and found region
                   (green) outlined, score and verdict; a 256-colour PNG, small enough to commit
``curves/roc.csv``, ``curves/pr.csv`` (``dvc plots`` input) and ``curves/roc.png``, ``curves/pr.png``

Because only these files are read, every model family (and any outside tool that writes the same
files) is measured by the same code. Images whose mask is empty still count at image level and
add normal pixels at pixel level; AUPRO has no region to take from them.

Without ``prediction.json`` (what an outside tool writes: ``scores.csv`` + ``maps/`` only) the
model's thresholds are unknown: ``metrics.json`` says ``"prediction_json": false`` and
``"family": null``, and the image and pixel thresholds fall back to the same rule as a
``prediction.json`` with null thresholds: ``eval.threshold_rule`` over the test split itself
(k-sigma over the good test images' scores / map pixels, or the best-F1 threshold), named by
``threshold_source`` / ``pixel_threshold_source`` (``k_sigma_test_good``, ``best_f1_test``). P/R/F1
at such a threshold has seen the test labels or test normals, so compare it only with rows
scored the same way; AUROC and AUPRO need no threshold and are unaffected.

A dataset without a ``ground_truth/`` folder (image-level labels only, e.g. ELPV) gets the image
metrics; the pixel metrics (``pixel_auroc``, ``aupro``, ``pixel_precision/recall/f1``) are NaN
(``null`` in metrics.json, ``n/a`` in printed tables) and ``pixel_metrics_unavailable`` says why.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage
from sklearn.metrics import precision_recall_curve, roc_curve
from tqdm import tqdm

from texinspect import metrics
from texinspect.config import EvalConfig
from texinspect.data.images import load_image, load_mask
from texinspect.data.layout import GOOD, TEST, ImageRecord, scan_test
from texinspect.errors import DataError
from texinspect.scoring import best_f1_threshold, k_sigma_threshold

log = logging.getLogger(__name__)

SCORES_FILE = "scores.csv"
PREDICTION_FILE = "prediction.json"
METRICS_FILE = "metrics.json"
REQUIRED_COLUMNS = ("path", "score")


@dataclass
class _Item:
    """One test image with its score, map and mask (at the map's resolution)."""

    record: ImageRecord
    score: float
    amap: np.ndarray
    mask: np.ndarray  # bool (H, W)

    @property
    def label(self) -> int:
        return 0 if self.record.defect_type == GOOD else 1


# --------------------------------------------------------------------------- reading


def read_prediction_meta(pred_dir: Path) -> dict[str, Any]:
    """``prediction.json``, or ``{}`` when absent (an outside tool's folder: thresholds unknown)."""
    path = pred_dir / PREDICTION_FILE
    if not path.exists():
        log.info("%s: not found; thresholds unknown, derived from the test split (see threshold_source)", path)
        return {}
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object")
    for key in ("threshold", "pixel_threshold"):
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise DataError(f"{path}: '{key}' must be a number or null, got {value!r}")
    size = meta.get("image_size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise DataError(f"{path}: 'image_size' must be a positive integer or null, got {size!r}")
    return meta


def read_scores(pred_dir: Path) -> pd.DataFrame:
    path = pred_dir / SCORES_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found (pass the folder `texinspect predict` wrote)")
    try:
        table = pd.read_csv(path, dtype={"path": str}, keep_default_na=False, na_values={"score": [""]})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: unreadable CSV ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, table.columns))})")
    scores = pd.to_numeric(table["score"], errors="coerce")
    bad = table["path"][~np.isfinite(scores.to_numpy(dtype=float))]
    if len(bad):
        raise DataError(f"{path}: column 'score' is not a finite number for '{bad.iloc[0]}'")
    duplicated = table["path"][table["path"].duplicated()]
    if len(duplicated):
        raise DataError(f"{path}: path '{duplicated.iloc[0]}' appears more than once")
    table["score"] = scores.astype(float)
    return table


def _load_map(pred_dir: Path, rel: str, shape: tuple[int, int] | None) -> np.ndarray:
    path = pred_dir / "maps" / f"{rel}.npy"
    if not path.is_file():
        raise DataError(f"{path}: anomaly map not found (written by `texinspect predict` for {rel})")
    try:
        amap = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: unreadable .npy file ({exc})") from None
    if amap.ndim != 2 or (shape is not None and amap.shape != shape):
        expected = f"{shape}" if shape is not None else "(H, W)"
        raise DataError(f"{path}: map has shape {amap.shape}, expected {expected}")
    if amap.shape[0] != amap.shape[1]:
        raise DataError(f"{path}: map has shape {amap.shape}, expected a square (image_size, image_size) map")
    if not np.all(np.isfinite(amap)):
        raise DataError(f"{path}: map contains NaN or infinite values")
    return amap.astype(np.float32, copy=False)


def load_items(pred_dir: Path, data_dir: Path, meta: dict[str, Any], table: pd.DataFrame) -> list[_Item]:
    """Join the test split of ``data_dir`` with the scores and maps of ``pred_dir``."""
    if not (data_dir / TEST).is_dir():
        raise DataError(
            f"{data_dir / TEST}: folder not found (evaluation needs test/<type>/, and ground_truth/<type>/ for "
            "pixel metrics)"
        )
    records = scan_test(data_dir, require_masks=True)
    if not records:
        raise DataError(f"{data_dir / TEST}: no test images")
    scores = dict(zip(table["path"], table["score"], strict=True))
    missing = [r.rel for r in records if r.rel not in scores]
    if missing:
        raise DataError(
            f"{pred_dir / SCORES_FILE}: no score for {len(missing)} of {len(records)} test images, e.g. "
            f"'{missing[0]}' (run `texinspect predict` on {data_dir})"
        )
    extra = len(set(scores) - {r.rel for r in records})
    if extra:
        log.info("%d rows of %s are not test images of %s; ignored", extra, SCORES_FILE, data_dir)
    size = meta.get("image_size")
    shape: tuple[int, int] | None = (size, size) if size else None
    items: list[_Item] = []
    for record in tqdm(records, desc="reading maps", leave=False, disable=len(records) < 50):
        amap = _load_map(pred_dir, record.rel, shape)
        shape = amap.shape  # every map must have the first one's shape
        if record.mask_path is None:
            mask = np.zeros(shape, dtype=bool)
        else:
            mask = load_mask(record.mask_path, shape[0]) > 0.5
        items.append(_Item(record, float(scores[record.rel]), amap, mask))
    return items


# --------------------------------------------------------------------------- metrics


NO_MASKS_REASON = "the dataset has no ground_truth/ folder: image-level labels only, no pixel masks"


def pixel_metrics_unavailable(items: list[_Item]) -> str | None:
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


def _pixel_k_sigma(items: list[_Item], k: float) -> float:
    """mean + k * std over every pixel of the good test images' maps (float64 sums)."""
    values = [it.amap.ravel() for it in items if it.label == 0]
    if not values or sum(v.size for v in values) < 2:
        log.warning("pixel threshold not computed: no good test images")
        return math.nan
    flat = np.concatenate(values).astype(np.float64)
    return float(flat.mean() + k * flat.std(ddof=1))


def _pixel_metrics(items: list[_Item], fpr_limit: float) -> dict[str, float]:
    """Pixel AUROC and AUPRO, NaN (not logged as a failure) when the dataset has no masks."""
    if pixel_metrics_unavailable(items):
        return {"pixel_auroc": math.nan, "aupro": math.nan}
    masks = [it.mask for it in items]
    maps = [it.amap for it in items]
    return {
        "pixel_auroc": _guarded("pixel AUROC", metrics.pixel_auroc, masks, maps),
        "aupro": _guarded("AUPRO", metrics.aupro, masks, maps, fpr_limit=fpr_limit),
    }


def _image_metrics(items: list[_Item], threshold: float, fpr_limit: float) -> dict[str, float]:
    labels = np.array([it.label for it in items])
    scores = np.array([it.score for it in items])
    out = {
        "image_auroc": _guarded("image AUROC", metrics.image_auroc, labels, scores),
        **_pixel_metrics(items, fpr_limit),
    }
    flagged = scores >= threshold if np.isfinite(threshold) else np.zeros(len(items), bool)
    out["flagged"] = float(flagged.mean()) if len(items) else math.nan
    return out


def compute_metrics(items: list[_Item], meta: dict[str, Any], eval_cfg: EvalConfig) -> dict[str, Any]:
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
    items: list[_Item], threshold: float, fpr_limit: float, overall: dict[str, Any] | None = None
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


# --------------------------------------------------------------------------- pictures and curves


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path)


def write_curves(items: list[_Item], threshold: float, out_dir: Path) -> None:
    """Image-level ROC and PR curves as CSV (``dvc plots``) and PNG."""
    labels = np.array([it.label for it in items])
    scores = np.array([it.score for it in items])
    out_dir.mkdir(parents=True, exist_ok=True)
    if len(np.unique(labels)) < 2:
        log.warning("ROC/PR curves not written: the test split needs good and defective images")
        return
    fpr, tpr, roc_t = roc_curve(labels, scores)
    pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": roc_t}).to_csv(out_dir / "roc.csv", index=False)
    precision, recall, pr_t = precision_recall_curve(labels, scores)
    pd.DataFrame({"recall": recall, "precision": precision, "threshold": np.append(pr_t, np.nan)}).to_csv(
        out_dir / "pr.csv", index=False
    )
    auroc = metrics.image_auroc(labels, scores)
    op = metrics.image_prf(labels, scores, threshold) if np.isfinite(threshold) else None
    op_fpr = float((scores[labels == 0] >= threshold).mean()) if op else math.nan

    fig = Figure(figsize=(4.5, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, label=f"AUROC {auroc:.3f}")
    ax.plot([0, 1], [0, 1], ls=":", c="gray")
    if op:
        ax.plot([op_fpr], [op.recall], "o", c="red", label=f"threshold {threshold:.4g}")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="image-level ROC", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right")
    _save(fig, out_dir / "roc.png")

    fig = Figure(figsize=(4.5, 4.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(recall, precision, label="precision-recall")
    if op:
        ax.plot([op.recall], [op.precision], "o", c="red", label=f"threshold {threshold:.4g} (F1 {op.f1:.3f})")
    ax.set(xlabel="recall", ylabel="precision", title="image-level precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left")
    _save(fig, out_dir / "pr.png")


def _display_range(items: list[_Item]) -> tuple[float, float]:
    """One colour scale for every overlay (so maps compare), robust to a few hot pixels."""
    sample = np.concatenate([it.amap.ravel()[::7] for it in items])
    lo, hi = np.percentile(sample, [0.5, 99.9])
    return float(lo), float(hi if hi > lo else lo + 1e-6)


def _outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a binary mask."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


TRUE_COLOUR = (255, 0, 0)  # outline of the ground-truth mask
FOUND_COLOUR = (0, 255, 0)  # outline of the map at or above the pixel threshold


def _rgb8(image: np.ndarray) -> np.ndarray:
    """float (H, W, 3) in [0, 1] -> uint8."""
    return (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def _heat(amap: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """The anomaly map coloured (inferno) on the shared scale ``vmin..vmax``: uint8 (H, W, 3)."""
    norm = np.clip((amap - vmin) / (vmax - vmin), 0.0, 1.0)
    return colormaps["inferno"](norm, bytes=True)[..., :3]


def _found_outline(amap: np.ndarray, pixel_threshold: float) -> np.ndarray | None:
    """Outline of the predicted region (map >= pixel threshold), None without a threshold."""
    return _outline(amap >= pixel_threshold) if np.isfinite(pixel_threshold) else None


def _blend(rgb: np.ndarray, heat: np.ndarray, truth_edge: np.ndarray, found_edge: np.ndarray | None) -> np.ndarray:
    """The map blended over the image, the true mask outlined red and the found region green."""
    over = (0.55 * rgb + 0.45 * heat).astype(np.uint8)
    over[truth_edge] = TRUE_COLOUR
    if found_edge is not None:
        over[found_edge] = FOUND_COLOUR
    return over


def overlay_panel(
    image: np.ndarray, amap: np.ndarray, mask: np.ndarray, vmin: float, vmax: float, pixel_threshold: float
) -> np.ndarray:
    """uint8 (H, 4W + gaps, 3): image | anomaly map | ground truth | overlay.

    The overlay blends the map over the image and outlines the ground truth in red and the
    binarised map (>= pixel threshold) in green, as FMR-Net's Fig. 15 does. Built with numpy,
    not matplotlib figures: about a hundred times faster, which matters for 8 images x 4 types.
    """
    rgb = _rgb8(image)
    heat = _heat(amap, vmin, vmax)
    truth = np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=2)
    over = _blend(rgb, heat, _outline(mask), _found_outline(amap, pixel_threshold))
    gap = np.full((rgb.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([rgb, gap, heat, gap, truth, gap, over], axis=1)


def _overlay_png(it: _Item, vmin: float, vmax: float, threshold: float, pixel_threshold: float) -> Image.Image:
    size = it.amap.shape[0]
    image = load_image(it.record.path, size, 3).transpose(1, 2, 0)
    panel = overlay_panel(image, it.amap, it.mask, vmin, vmax, pixel_threshold)
    zoom = max(1, -(-160 // size))  # small maps are enlarged (nearest) so that they can be seen
    panel = panel.repeat(zoom, axis=0).repeat(zoom, axis=1)
    width = panel.shape[1]
    header = 30
    canvas = Image.new("RGB", (width, panel.shape[0] + header), "white")
    canvas.paste(Image.fromarray(panel), (0, header))
    draw = ImageDraw.Draw(canvas)
    verdict = "defect" if np.isfinite(threshold) and it.score >= threshold else "good"
    draw.text((2, 2), f"{it.record.rel}  score {it.score:.4g} -> {verdict}", fill="black")
    step = (size + 4) * zoom
    for i, name in enumerate(("image", "anomaly map", "ground truth", "red: truth, green: found")):
        draw.text((i * step + 2, 16), name, fill="black")
    return canvas


def write_overlays(
    items: list[_Item], out_dir: Path, per_type: int, threshold: float, pixel_threshold: float
) -> int:
    """image | map | mask | overlay PNGs, the first ``per_type`` images (by name) of each type."""
    if per_type <= 0 or not items:
        return 0
    vmin, vmax = _display_range(items)
    written = 0
    by_type: dict[str, list[_Item]] = {}
    for it in items:
        by_type.setdefault(it.record.defect_type, []).append(it)
    for defect_type, group in by_type.items():
        folder = out_dir / defect_type
        folder.mkdir(parents=True, exist_ok=True)
        for it in sorted(group, key=lambda i: i.record.rel)[:per_type]:
            png = _overlay_png(it, vmin, vmax, threshold, pixel_threshold)
            png.save(folder / f"{Path(it.record.rel).stem}.png", compress_level=3)
            written += 1
    return written


# --------------------------------------------------------------------------- the overview picture


OVERVIEW_FILE = "overview.png"
OVERVIEW_ROWS = 2  # examples per test type
OVERVIEW_TILE = 128  # smaller images are enlarged (nearest, whole factor) to about this side
OVERVIEW_TILE_MAX = 160  # larger images are reduced to this side: keeps the file small
OVERVIEW_MIN_WIDTH = 480  # room for the legend when there are only one or two types
_MARGIN = 4
_PAD = 2  # between the image and its overlay
_BLOCK_GAP = 12  # between the blocks of two types
_ROW_GAP = 6
_CAPTION_H = 14
_LINE_H = 12


def overview_tile(size: int) -> int:
    """Side in px of one picture in the overview for ``size`` x ``size`` maps.

    Whole zoom factors only, so enlarged pixels stay square and outlines sharp; maps above
    OVERVIEW_TILE_MAX are reduced to it.
    """
    if size > OVERVIEW_TILE_MAX:
        return OVERVIEW_TILE_MAX
    zoom = max(1, min(-(-OVERVIEW_TILE // size), OVERVIEW_TILE_MAX // size))
    return size * zoom


@dataclass(frozen=True)
class OverviewLayout:
    """Where things go in ``overview.png``: under a legend, one block per type, side by side,
    of ``rows`` cells (caption above ``image | overlay``) each."""

    tile: int
    n_types: int
    rows: int
    legend_lines: int = 1

    @property
    def cell_width(self) -> int:
        return 2 * self.tile + _PAD

    @property
    def row_height(self) -> int:
        return _CAPTION_H + self.tile + _ROW_GAP

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the picture in px."""
        blocks = 2 * _MARGIN + self.n_types * self.cell_width + (self.n_types - 1) * _BLOCK_GAP
        height = 2 * _MARGIN + self.legend_lines * _LINE_H + self.rows * self.row_height
        return max(blocks, OVERVIEW_MIN_WIDTH), height

    def caption_xy(self, block: int, row: int) -> tuple[int, int]:
        """Top-left corner of a cell's caption."""
        x = _MARGIN + block * (self.cell_width + _BLOCK_GAP)
        return x, _MARGIN + self.legend_lines * _LINE_H + _ROW_GAP + row * self.row_height

    def image_xy(self, block: int, row: int) -> tuple[int, int]:
        """Top-left corner of a cell's image; its overlay is ``tile + _PAD`` px to the right."""
        x, y = self.caption_xy(block, row)
        return x, y + _CAPTION_H

    def overlay_xy(self, block: int, row: int) -> tuple[int, int]:
        x, y = self.image_xy(block, row)
        return x + self.tile + _PAD, y


def _fit(array: np.ndarray, tile: int) -> np.ndarray:
    """An (H, W[, 3]) image, float map or bool outline at ``tile`` px: whole-factor nearest
    enlargement, or area averaging when reduced (an outline keeps every touched pixel, so a thin
    defect does not vanish)."""
    size = array.shape[0]
    if tile >= size:
        zoom = tile // size
        return array.repeat(zoom, axis=0).repeat(zoom, axis=1)
    box = Image.Resampling.BOX
    if array.dtype == bool:
        return np.asarray(Image.fromarray(array.astype(np.float32), "F").resize((tile, tile), box)) > 0
    if array.ndim == 3:
        return np.asarray(Image.fromarray(array).resize((tile, tile), box))
    return np.asarray(Image.fromarray(array.astype(np.float32), "F").resize((tile, tile), box))


def _overview_cell(
    it: _Item, tile: int, vmin: float, vmax: float, pixel_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """(image, overlay) of one test image at ``tile`` px; outlines as in ``overlay_panel``."""
    size = it.amap.shape[0]
    rgb = _fit(_rgb8(load_image(it.record.path, size, 3).transpose(1, 2, 0)), tile)
    found = _found_outline(it.amap, pixel_threshold)
    over = _blend(
        rgb,
        _heat(_fit(it.amap, tile), vmin, vmax),
        _fit(_outline(it.mask), tile),
        None if found is None else _fit(found, tile),
    )
    return rgb, over


def _caption(it: _Item, threshold: float, width: float, measure: Callable[[str], float]) -> str:
    """``type/stem  score  verdict`` in at most ``width`` px (a long name is shortened); the
    verdict (at the image threshold, none without one) says when it is wrong."""
    tail = f"  score {it.score:.4g}"
    if np.isfinite(threshold):
        flagged = it.score >= threshold
        verdict = "defect" if flagged else "good"
        if flagged != bool(it.label):
            verdict += " (false alarm)" if flagged else " (missed)"
        tail += f"  {verdict}"
    name = f"{it.record.defect_type}/{Path(it.record.rel).stem}"
    while len(name) > 4 and measure(name + tail) > width:
        name = name[:-3] + ".."
    return name + tail


def _legend(items: list[_Item], threshold: float, pixel_threshold: float, vmin: float, vmax: float) -> list[str]:
    """What the colours and captions mean, phrase by phrase."""
    phrases = ["each cell: image | overlay"]
    if pixel_metrics_unavailable(items):
        phrases.append("red: n/a (masks not available)")
    else:
        phrases.append("red: true defect")
    if np.isfinite(pixel_threshold):
        phrases.append(f"green: found (map >= pixel threshold {pixel_threshold:.4g})")
    else:
        phrases.append("green: n/a (no pixel threshold)")
    phrases.append(f"colour: anomaly map, one scale {vmin:.3g} (dark) to {vmax:.3g} (bright)")
    if np.isfinite(threshold):
        phrases.append(f"verdict: defect when score >= {threshold:.4g}")
    else:
        phrases.append("no verdict (no image threshold)")
    return phrases


def _wrap(phrases: list[str], width: float, measure: Callable[[str], float]) -> list[str]:
    """Phrases joined with ``;`` into as few lines of at most ``width`` px as whole phrases allow."""
    lines: list[str] = []
    for phrase in phrases:
        joined = f"{lines[-1]}; {phrase}" if lines else phrase
        if lines and measure(joined) <= width:
            lines[-1] = joined
        else:
            lines.append(phrase)
    return lines


def _overview_groups(items: list[_Item], per_type: int) -> list[list[_Item]]:
    """The shown images: ``good`` first, then the defect types sorted; the first ``per_type`` by name."""
    by_type: dict[str, list[_Item]] = {}
    for it in sorted(items, key=lambda i: i.record.rel):
        by_type.setdefault(it.record.defect_type, []).append(it)
    order = sorted(by_type, key=lambda t: (t != GOOD, t))
    return [by_type[t][:per_type] for t in order]


def _save_small_png(canvas: Image.Image, path: Path) -> None:
    """A 256-colour PNG, under a third of the RGB file: the README embeds it (limit 300 KB).

    Textured surfaces are close to noise, which PNG cannot compress: for the 128 px sample
    (4 types x 2 rows) RGB takes about 490 KB, a median-cut palette 257 KB, the octree palette
    used here 142 KB (226 KB for 160 px cells) without a loss visible on the sample. The true and found outline
    colours get palette entries of their own, so they stay pure red and green.
    """
    pixels = np.asarray(canvas)
    quantised = canvas.quantize(colors=254, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    index = np.array(quantised)
    palette = (quantised.getpalette() or [])[: 254 * 3]
    palette += [0] * (254 * 3 - len(palette)) + [*TRUE_COLOUR, *FOUND_COLOUR]
    index[np.all(pixels == TRUE_COLOUR, axis=2)] = 254
    index[np.all(pixels == FOUND_COLOUR, axis=2)] = 255
    out = Image.fromarray(index, "P")
    out.putpalette(palette)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path, optimize=True)


def write_overview(
    items: list[_Item], path: Path, threshold: float, pixel_threshold: float, per_type: int = OVERVIEW_ROWS
) -> Path | None:
    """One picture that shows whether the detector works: ``good`` and each defect type side by side.

    Per type, the first ``per_type`` images by name (the same ones as ``overlays/``: not picked
    for looking good, and the same on every run), each as the image and next to it the map
    blended over it with the true mask outlined red and the map >= pixel threshold outlined
    green, captioned with type, score and verdict, all maps on one colour scale. Rows: as many as
    the largest type fills, at most ``per_type``. Returns the path, or None without images.
    """
    if not items or per_type <= 0:
        return None
    groups = _overview_groups(items, per_type)
    vmin, vmax = _display_range(items)
    font = ImageFont.load_default()
    layout = OverviewLayout(overview_tile(items[0].amap.shape[0]), len(groups), max(len(g) for g in groups))
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def measure(text: str) -> float:
        return scratch.textlength(text, font=font)

    lines = _wrap(_legend(items, threshold, pixel_threshold, vmin, vmax), layout.size[0] - 2 * _MARGIN, measure)
    layout = OverviewLayout(layout.tile, layout.n_types, layout.rows, len(lines))
    canvas = Image.new("RGB", layout.size, "white")
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((_MARGIN, _MARGIN + i * _LINE_H), line, fill="black", font=font)
    for block, group in enumerate(groups):
        for row, it in enumerate(group):
            image, over = _overview_cell(it, layout.tile, vmin, vmax, pixel_threshold)
            canvas.paste(Image.fromarray(image), layout.image_xy(block, row))
            canvas.paste(Image.fromarray(over), layout.overlay_xy(block, row))
            caption = _caption(it, threshold, layout.cell_width, measure)
            draw.text(layout.caption_xy(block, row), caption, fill="black", font=font)
    _save_small_png(canvas, path)
    return path


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
