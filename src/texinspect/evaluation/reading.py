"""What ``evaluate`` reads: ``scores.csv``, ``maps/<path>.npy``, ``prediction.json`` (optional) and the
dataset's test split, joined into one :class:`TestImage` per test image."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from texinspect.data.images import load_mask
from texinspect.data.layout import GOOD, TEST, ImageRecord, scan_test
from texinspect.errors import DataError

log = logging.getLogger(__name__)

SCORES_FILE = "scores.csv"
PREDICTION_FILE = "prediction.json"
METRICS_FILE = "metrics.json"
REQUIRED_COLUMNS = ("path", "score")


@dataclass
class TestImage:
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


def load_items(pred_dir: Path, data_dir: Path, meta: dict[str, Any], table: pd.DataFrame) -> list[TestImage]:
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
    items: list[TestImage] = []
    for record in tqdm(records, desc="reading maps", leave=False, disable=len(records) < 50):
        amap = _load_map(pred_dir, record.rel, shape)
        shape = amap.shape  # every map must have the first one's shape
        if record.mask_path is None:
            mask = np.zeros(shape, dtype=bool)
        else:
            mask = load_mask(record.mask_path, shape[0]) > 0.5
        items.append(TestImage(record, float(scores[record.rel]), amap, mask))
    return items
