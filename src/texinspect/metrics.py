"""Detection and segmentation metrics on plain numpy arrays.

- ``image_auroc``: area under the ROC curve of image scores (scikit-learn).
- ``pixel_auroc``: the same over every pixel of every image, flattened together (the
  Mann-Whitney formula, equal to scikit-learn's and much faster on tens of millions of pixels).
- ``aupro``: normalised area under the per-region-overlap curve up to a false-positive rate
  (RB-AE's PROAUC, the MVTec AD protocol). It weighs every connected defect region equally, so a
  small scratch counts as much as a large stain, unlike pixel AUROC which favours large defects.
- ``precision_recall_f1`` / ``image_prf`` / ``pixel_prf``: decisions at a fixed threshold
  (FMR-Net Table V). A value **at or above** the threshold is a defect.

Masks are arrays of 0/1 (values > 0.5 are defect) with the shape of their maps; the caller resizes
them. Inputs are either one stacked array ``(N, H, W)`` or a sequence of ``(H, W)`` arrays (sizes
may differ between images). All results are plain floats in [0, 1].

Degenerate inputs raise ``ValueError`` with the reason: AUROC with one class only, AUPRO without
normal pixels or without any defect region, mismatched shapes, NaN values. Precision of a set
with no predicted positives is 0 (scikit-learn's ``zero_division=0``), and so is recall with no
actual positives.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

MapsLike = np.ndarray | Sequence[np.ndarray]


class PRF(NamedTuple):
    """Precision, recall and F1 (unpacks like a tuple)."""

    precision: float
    recall: float
    f1: float


# --------------------------------------------------------------------------- input checks


def _vector(values: Iterable[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def _binary_labels(labels: Iterable[float] | np.ndarray, name: str = "labels") -> np.ndarray:
    y = _vector(labels, name)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"{name}: expected 0 (good) or 1 (defect) values")
    return y.astype(bool)


def _pairs(masks: MapsLike, maps: MapsLike) -> list[tuple[np.ndarray, np.ndarray]]:
    """Check and pair masks with maps image by image: (bool mask, float map)."""
    if len(masks) != len(maps):
        raise ValueError(f"got {len(masks)} masks but {len(maps)} maps")
    if len(maps) == 0:
        raise ValueError("no maps given")
    pairs = []
    for i, (mask, amap) in enumerate(zip(masks, maps, strict=True)):
        mask, amap = np.asarray(mask), np.asarray(amap)
        if mask.shape != amap.shape or amap.ndim != 2:
            raise ValueError(f"image {i}: mask shape {mask.shape} differs from map shape {amap.shape} (expected equal (H, W))")
        if not np.all(np.isfinite(amap)):
            raise ValueError(f"image {i}: map contains NaN or infinite values")
        pairs.append((mask > 0.5, amap))
    return pairs


# --------------------------------------------------------------------------- AUROC


def image_auroc(labels: Iterable[float] | np.ndarray, scores: Iterable[float] | np.ndarray) -> float:
    """Image-level ROC AUC; labels 0 good / 1 defect; ValueError unless both classes occur."""
    y = _binary_labels(labels)
    s = _vector(scores, "scores")
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    if y.all() or not y.any():
        raise ValueError("AUROC needs both good (0) and defective (1) images")
    return float(roc_auc_score(y, s))


def pixel_auroc(masks: MapsLike, maps: MapsLike) -> float:
    """Pixel-level ROC AUC over all pixels of all images; ValueError unless both classes occur."""
    pairs = _pairs(masks, maps)
    normal = np.concatenate([a[~m] for m, a in pairs])
    defect = np.concatenate([a[m] for m, a in pairs])
    if normal.size == 0 or defect.size == 0:
        raise ValueError("pixel AUROC needs both normal and defect pixels in the masks")
    return _mann_whitney_auroc(normal, defect)


def _mann_whitney_auroc(normal: np.ndarray, defect: np.ndarray) -> float:
    """ROC AUC as P(defect value > normal value) + 0.5 P(tie), the Mann-Whitney statistic.

    Equal to scikit-learn's value (tested). Sorting the normal values with ``np.sort`` (SIMD)
    and locating the defect values by binary search avoids an argsort of every pixel: 20 M
    pixels (300 maps of 256 x 256) take about 1 s instead of 12 s with ``roc_auc_score`` here.
    """
    normal = np.sort(normal)
    defect = np.sort(defect)  # sorted queries make the binary searches cache-friendly
    below = np.searchsorted(normal, defect, side="left").astype(np.float64)
    at_or_below = np.searchsorted(normal, defect, side="right").astype(np.float64)
    wins = below.sum() + 0.5 * (at_or_below - below).sum()
    return float(wins / (float(normal.size) * float(defect.size)))


# --------------------------------------------------------------------------- AUPRO


def _region_weights(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split pixels into normal values and defect values with weights 1 / (R * region area).

    With these weights, the sum over defect pixels at or above a threshold is the mean over
    all R regions of the share of the region that is detected: the PRO of that threshold.
    """
    normal, defect, weight = [], [], []
    n_regions = 0
    for mask, amap in pairs:
        normal.append(amap[~mask].ravel())
        if not mask.any():
            continue
        labelled, count = ndimage.label(mask)  # 4-connectivity, as the MVTec protocol
        area = np.bincount(labelled.ravel())
        region = labelled[mask]
        defect.append(amap[mask].ravel())
        weight.append(1.0 / area[region])
        n_regions += count
    normal_v = np.concatenate(normal)
    if normal_v.size == 0:
        raise ValueError("AUPRO needs normal pixels (every mask pixel is a defect)")
    if n_regions == 0:
        raise ValueError("AUPRO needs at least one defect region in the masks")
    defect_v = np.concatenate(defect)
    weight_v = np.concatenate(weight) / n_regions
    return normal_v, defect_v, weight_v


def _normalised_area(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float) -> float:
    """Area under (fpr, pro) from 0 to ``fpr_limit`` / fpr_limit; the curve starts at (0, 0).

    ``fpr`` must be non-decreasing and reach ``fpr_limit``; PRO is interpolated linearly at it.
    """
    fpr = np.concatenate([[0.0], fpr])
    pro = np.concatenate([[0.0], pro])
    j = int(np.searchsorted(fpr, fpr_limit, side="left"))  # first point with fpr >= limit
    if j >= fpr.size:
        raise ValueError(f"the FPR never reaches {fpr_limit}")  # cannot happen with all thresholds
    if fpr[j] > fpr_limit:
        t = (fpr_limit - fpr[j - 1]) / (fpr[j] - fpr[j - 1])
        pro_limit = pro[j - 1] + t * (pro[j] - pro[j - 1])
    else:
        pro_limit = pro[j]
    x = np.concatenate([fpr[:j], [fpr_limit]])
    y = np.concatenate([pro[:j], [pro_limit]])
    return float(np.clip(np.trapezoid(y, x) / fpr_limit, 0.0, 1.0))


def aupro(masks: MapsLike, maps: MapsLike, fpr_limit: float = 0.3, num_thresholds: int | None = None) -> float:
    """Normalised area under the per-region-overlap curve for FPR in [0, fpr_limit].

    For a threshold t, PRO(t) is the mean over all connected defect regions (of all images) of
    the share of the region's pixels with map >= t, and FPR(t) the share of all normal pixels (of
    all images, good images included) with map >= t. The curve from (0, 0) is integrated with the
    trapezoid rule up to ``fpr_limit`` (PRO interpolated there) and divided by ``fpr_limit``, so a
    perfect map scores 1.0 and a map that carries no information about 0.5 * fpr_limit.

    ``num_thresholds=None`` evaluates every distinct map value (exact; only the pixels that can
    matter are sorted: those at or above the normal value where the FPR passes the limit).
    An integer evaluates that many thresholds evenly spaced between the smallest and largest
    map value (histogram-based, the classic approximation, less memory).
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    normal, defect, weight = _region_weights(_pairs(masks, maps))
    if num_thresholds is None:
        fpr, pro = _pro_curve_exact(normal, defect, weight, fpr_limit)
    else:
        if num_thresholds < 2:
            raise ValueError(f"num_thresholds must be >= 2 (or None for exact), got {num_thresholds}")
        fpr, pro = _pro_curve_binned(normal, defect, weight, num_thresholds)
    return _normalised_area(fpr, pro, fpr_limit)


def _pro_curve_exact(
    normal: np.ndarray, defect: np.ndarray, weight: np.ndarray, fpr_limit: float
) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO) at every distinct map value, descending thresholds, up to past the limit.

    Thresholds below ``cut`` have FPR > limit, so only values >= cut are candidates (cut itself
    is the first one past the limit). Normal and defect values are sorted separately and the
    counts above each threshold found by binary search: no argsort of every pixel.
    """
    n_normal = normal.size
    m = int(np.floor(fpr_limit * n_normal))
    if m + 1 < n_normal:
        cut = np.partition(normal, n_normal - (m + 1))[n_normal - (m + 1)]
        normal = normal[normal >= cut]
        keep = defect >= cut
        defect, weight = defect[keep], weight[keep]
    normal = np.sort(normal)
    order = np.argsort(defect, kind="stable")  # defect pixels are few
    defect = defect[order]
    # suffix[i] = sum of the weights of defect[i:], i.e. of every defect pixel >= defect[i]
    suffix = np.concatenate([np.cumsum(weight[order][::-1])[::-1], [0.0]])
    thresholds = np.unique(np.concatenate([normal, defect]))[::-1]
    fp = normal.size - np.searchsorted(normal, thresholds, side="left")
    pro = suffix[np.searchsorted(defect, thresholds, side="left")]
    return fp / n_normal, np.minimum(pro, 1.0)


def _pro_curve_binned(
    normal: np.ndarray, defect: np.ndarray, weight: np.ndarray, num_thresholds: int
) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO) at ``num_thresholds`` evenly spaced thresholds, descending."""
    lo = min(normal.min(), defect.min() if defect.size else np.inf)
    hi = max(normal.max(), defect.max() if defect.size else -np.inf)
    thresholds = np.linspace(lo, hi, num_thresholds)
    # A value v is at or above thresholds[:k] with k = searchsorted(thresholds, v, "right").
    k_normal = np.searchsorted(thresholds, normal, side="right")
    k_defect = np.searchsorted(thresholds, defect, side="right")
    fp_hist = np.bincount(k_normal, minlength=num_thresholds + 1)
    pro_hist = np.bincount(k_defect, weights=weight, minlength=num_thresholds + 1)
    # count at threshold i = number of values with k > i: reverse cumulative sum from the top.
    fp_at = np.cumsum(fp_hist[::-1])[::-1][1:]
    pro_at = np.cumsum(pro_hist[::-1])[::-1][1:]
    return fp_at[::-1] / normal.size, np.minimum(pro_at[::-1], 1.0)


# --------------------------------------------------------------------------- thresholded decisions


def _prf_from_counts(tp: int, fp: int, fn: int) -> PRF:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PRF(float(precision), float(recall), float(f1))


def precision_recall_f1(y_true: Iterable[float] | np.ndarray, y_pred: Iterable[float] | np.ndarray) -> PRF:
    """Precision, recall, F1 of binary decisions (1 = defect)."""
    t = _binary_labels(y_true, "y_true")
    p = _binary_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    return _prf_from_counts(int((t & p).sum()), int((~t & p).sum()), int((t & ~p).sum()))


def image_prf(labels: Iterable[float] | np.ndarray, scores: Iterable[float] | np.ndarray, threshold: float) -> PRF:
    """Image-level precision/recall/F1 when images scoring >= ``threshold`` are called defective."""
    s = _vector(scores, "scores")
    return precision_recall_f1(labels, (s >= threshold).astype(float))


def pixel_prf(masks: MapsLike, maps: MapsLike, threshold: float) -> PRF:
    """Pixel-level precision/recall/F1 of the binarised maps (map >= threshold), all pixels pooled."""
    tp = fp = fn = 0
    for mask, amap in _pairs(masks, maps):
        pred = amap >= threshold
        tp += int((pred & mask).sum())
        fp += int((pred & ~mask).sum())
        fn += int((~pred & mask).sum())
    return _prf_from_counts(tp, fp, fn)
