"""Metrics against scikit-learn and against a slow, obviously correct AUPRO reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

from texinspect.metrics import (
    aupro,
    image_auroc,
    image_prf,
    pixel_auroc,
    pixel_prf,
    precision_recall_f1,
)


def brute_force_aupro(masks, maps, fpr_limit, thresholds=None):
    """Loop over thresholds; measure every region's overlap explicitly; trapezoid-integrate."""
    masks = [np.asarray(m) > 0.5 for m in masks]
    values = np.concatenate([a.ravel() for a in maps])
    ts = np.unique(values) if thresholds is None else np.asarray(thresholds)
    regions = []
    for i, m in enumerate(masks):
        labelled, n = ndimage.label(m)
        regions += [(i, labelled == r) for r in range(1, n + 1)]
    n_normal = sum(int((~m).sum()) for m in masks)
    fprs, pros = [0.0], [0.0]
    for t in sorted(ts, reverse=True):
        fp = sum(int(((a >= t) & ~m).sum()) for m, a in zip(masks, maps, strict=True))
        overlaps = [(maps[i][region] >= t).sum() / region.sum() for i, region in regions]
        fprs.append(fp / n_normal)
        pros.append(float(np.mean(overlaps)))
    fprs, pros = np.array(fprs), np.array(pros)
    inside = fprs <= fpr_limit
    x, y = list(fprs[inside]), list(pros[inside])
    beyond = np.flatnonzero(fprs > fpr_limit)
    if beyond.size:
        j = beyond[0]
        w = (fpr_limit - fprs[j - 1]) / (fprs[j] - fprs[j - 1])
        x.append(fpr_limit)
        y.append(pros[j - 1] + w * (pros[j] - pros[j - 1]))
    return np.trapezoid(y, x) / fpr_limit


def random_case(seed: int, n_images: int = 3, size: int = 12, levels: int | None = None):
    """Images with 0-3 rectangular regions each; maps brighter inside regions, plus noise."""
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    for i in range(n_images):
        mask = np.zeros((size, size), np.float32)
        for _ in range(0 if i == 0 else rng.integers(1, 4)):
            y, x = rng.integers(0, size - 3, 2)
            h, w = rng.integers(1, 5, 2)
            mask[y : y + h, x : x + w] = 1
        amap = rng.random((size, size)) + mask * rng.uniform(0.2, 1.0)
        if levels:
            amap = np.round(amap * levels) / levels  # many ties
        masks.append(mask)
        maps.append(amap.astype(np.float32))
    return masks, maps


# --------------------------------------------------------------------------- AUROC


def test_image_auroc_matches_sklearn_on_random_data() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200) + 0.3 * labels, 2)  # ties included
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_pixel_auroc_matches_sklearn_over_flattened_pixels() -> None:
    masks, maps = random_case(1, n_images=4, size=16, levels=20)
    expected = roc_auc_score(np.concatenate([m.ravel() for m in masks]), np.concatenate([a.ravel() for a in maps]))
    assert pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-12)
    # a stacked array gives the same as a list, and images may differ in size
    assert pixel_auroc(np.stack(masks), np.stack(maps)) == pytest.approx(expected, abs=1e-12)
    small_mask, small_map = np.zeros((4, 6)), np.full((4, 6), 0.5, np.float32)
    mixed = roc_auc_score(
        np.concatenate([m.ravel() for m in masks] + [small_mask.ravel()]),
        np.concatenate([a.ravel() for a in maps] + [small_map.ravel()]),
    )
    assert pixel_auroc([*masks, small_mask], [*maps, small_map]) == pytest.approx(mixed, abs=1e-12)


def test_perfect_maps_give_auroc_one() -> None:
    masks, _ = random_case(2)
    assert pixel_auroc(masks, [m.copy() for m in masks]) == 1.0


def test_auroc_with_one_class_raises() -> None:
    with pytest.raises(ValueError, match="both"):
        image_auroc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="both"):
        pixel_auroc([np.zeros((4, 4))], [np.ones((4, 4))])


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="length"):
        image_auroc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        image_auroc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="image 1: mask shape"):
        pixel_auroc([np.zeros((4, 4)), np.zeros((4, 4))], [np.zeros((4, 4)), np.zeros((5, 4))])
    with pytest.raises(ValueError, match="2 masks but 1 maps"):
        aupro([np.zeros((4, 4))] * 2, [np.zeros((4, 4))])


# --------------------------------------------------------------------------- AUPRO


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
def test_aupro_exact_matches_brute_force(seed: int, fpr_limit: float) -> None:
    masks, maps = random_case(seed, levels=10 if seed % 2 else None)
    assert aupro(masks, maps, fpr_limit=fpr_limit) == pytest.approx(brute_force_aupro(masks, maps, fpr_limit), abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_aupro_binned_matches_brute_force_at_the_same_thresholds(seed: int) -> None:
    masks, maps = random_case(seed + 10)
    values = np.concatenate([a.ravel() for a in maps])
    thresholds = np.linspace(values.min(), values.max(), 50)
    expected = brute_force_aupro(masks, maps, 0.3, thresholds=thresholds)
    assert aupro(masks, maps, 0.3, num_thresholds=50) == pytest.approx(expected, abs=1e-9)


def test_aupro_of_a_perfect_map_is_one() -> None:
    masks, _ = random_case(3)
    assert aupro(masks, [m.astype(np.float32) for m in masks]) == pytest.approx(1.0)


def test_aupro_of_an_uninformative_map_is_half_the_limit() -> None:
    # one threshold: FPR 1 and PRO 1 -> the diagonal; area up to 0.3 is 0.045, normalised 0.15
    masks, _ = random_case(4)
    assert aupro(masks, [np.zeros_like(m) for m in masks], fpr_limit=0.3) == pytest.approx(0.15)


def test_aupro_weighs_regions_equally_not_pixels() -> None:
    # A big region (30 px) found perfectly, a small one (2 px) missed: PRO 0.5 at FPR 0.
    # Curve (0,0) -> (0,0.5) -> (1,1): area to 0.3 = 0.3 * (0.5 + 0.65) / 2, normalised 0.575.
    mask = np.zeros((10, 10))
    mask[0:5, 0:6] = 1
    mask[8, 8:10] = 1
    amap = np.zeros((10, 10))
    amap[0:5, 0:6] = 1.0
    assert aupro([mask], [amap], fpr_limit=0.3) == pytest.approx(0.575)


def test_aupro_counts_normal_pixels_of_good_images() -> None:
    mask = np.zeros((10, 10))
    mask[2:5, 2:5] = 1
    amap = mask * 0.8
    good_hot = np.zeros((10, 10))
    good_hot[:, :] = 0.9  # a good image brighter than the defect: every threshold finding it is a false alarm
    with_good = aupro([mask, np.zeros((10, 10))], [amap, good_hot])
    assert with_good < aupro([mask], [amap]) == pytest.approx(1.0)
    assert with_good == pytest.approx(brute_force_aupro([mask, np.zeros((10, 10))], [amap, good_hot], 0.3))


def test_aupro_degenerate_inputs_raise() -> None:
    with pytest.raises(ValueError, match="defect region"):
        aupro([np.zeros((4, 4))], [np.random.default_rng(0).random((4, 4))])
    with pytest.raises(ValueError, match="normal pixels"):
        aupro([np.ones((4, 4))], [np.zeros((4, 4))])
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro([np.eye(4)], [np.eye(4)], fpr_limit=0.0)


# --------------------------------------------------------------------------- precision / recall / F1


def test_precision_recall_f1_matches_sklearn() -> None:
    rng = np.random.default_rng(5)
    y_true, y_pred = rng.integers(0, 2, 100), rng.integers(0, 2, 100)
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="binary")
    assert tuple(precision_recall_f1(y_true, y_pred)) == pytest.approx((p, r, f))


def test_precision_without_predicted_positives_is_zero() -> None:
    assert tuple(precision_recall_f1([1, 0, 1], [0, 0, 0])) == (0.0, 0.0, 0.0)


def test_image_prf_calls_scores_at_the_threshold_defective() -> None:
    # threshold 0.5: predictions [0, 1, 1, 1]; tp 2, fp 1, fn 0
    prf = image_prf([0, 0, 1, 1], [0.1, 0.5, 0.7, 0.9], 0.5)
    assert prf.precision == pytest.approx(2 / 3)
    assert prf.recall == 1.0
    assert prf.f1 == pytest.approx(0.8)


def test_pixel_prf_pools_pixels_of_all_images() -> None:
    mask_a = np.array([[1, 1], [0, 0]])
    map_a = np.array([[0.9, 0.1], [0.8, 0.0]])  # tp 1, fn 1, fp 1
    mask_b = np.zeros((2, 2))
    map_b = np.array([[0.6, 0.0], [0.0, 0.0]])  # fp 1
    prf = pixel_prf([mask_a, mask_b], [map_a, map_b], threshold=0.5)
    assert prf.precision == pytest.approx(1 / 3)
    assert prf.recall == pytest.approx(1 / 2)
    assert prf.f1 == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
