"""Image-score rule, thresholds, and the SSIM / GMS / median map operators on known images."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import ndimage

from texinspect.scoring import (
    GMS_C,
    SSIM_C1,
    SSIM_C2,
    best_f1_threshold,
    gaussian_blur,
    gaussian_kernel1d,
    gms_map,
    image_scores,
    k_sigma_threshold,
    median_filter,
    ssim_map,
)


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- blur and image score


def test_gaussian_blur_matches_scipy_with_edge_repeat() -> None:
    maps = rand(2, 20, 24)
    ours = gaussian_blur(maps, 2.0).numpy()
    for b in range(2):
        ref = ndimage.gaussian_filter(maps[b].double().numpy(), 2.0, mode="nearest", truncate=3.0)
        np.testing.assert_allclose(ours[b], ref, atol=1e-5)


def test_gaussian_blur_sigma_zero_is_identity_and_constant_maps_stay_constant() -> None:
    maps = rand(1, 8, 8)
    assert torch.equal(gaussian_blur(maps, 0.0), maps)
    flat = torch.full((1, 9, 9), 0.7)
    torch.testing.assert_close(gaussian_blur(flat, 3.0), flat)


def test_image_score_is_max_of_smoothed_map() -> None:
    maps = torch.zeros(2, 32, 32)
    maps[0, 16, 16] = 1.0  # one hot pixel of noise
    maps[1, 10:20, 10:20] = 0.5  # a dimmer but real 10x10 defect
    assert image_scores(maps, 0.0).tolist() == [1.0, 0.5]
    smoothed = image_scores(maps, 2.0)
    k = gaussian_kernel1d(2.0)
    assert smoothed[0].item() == pytest.approx(float(k.max() ** 2), rel=1e-5)  # peak of a blurred impulse
    assert smoothed[1] > smoothed[0]  # the rule prefers the defect to the speck


def test_blur_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        gaussian_blur(torch.zeros(1, 1, 4, 4), 1.0)


# --------------------------------------------------------------------------- thresholds


def test_k_sigma_threshold_known_values() -> None:
    # mean 2, sample std 1
    assert k_sigma_threshold([1.0, 2.0, 3.0], 1.0) == pytest.approx(3.0)
    assert k_sigma_threshold(torch.tensor([1.0, 2.0, 3.0]), 3.0) == pytest.approx(5.0)
    assert k_sigma_threshold(np.array([4.0, 4.0]), 3.0) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="at least 2"):
        k_sigma_threshold([1.0], 3.0)


def test_best_f1_threshold_on_separable_scores() -> None:
    threshold, f1 = best_f1_threshold([0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.9])
    assert (threshold, f1) == (0.7, 1.0)


def test_best_f1_threshold_hand_computed() -> None:
    # t=0.8: F1 2/3; t=0.4: 1/2; t=0.35: P 2/3, R 1 -> 0.8; t=0.1: 2/3
    threshold, f1 = best_f1_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert threshold == 0.35
    assert f1 == pytest.approx(0.8)


def test_best_f1_threshold_equals_exhaustive_search() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60) + 0.4 * labels, 2)
    best = 0.0
    for t in np.unique(scores):
        pred = scores >= t
        tp, fp, fn = (pred & (labels == 1)).sum(), (pred & (labels == 0)).sum(), (~pred & (labels == 1)).sum()
        best = max(best, 2 * tp / (2 * tp + fp + fn))
    threshold, f1 = best_f1_threshold(labels, scores)
    assert f1 == pytest.approx(best)
    pred = scores >= threshold
    tp, fp, fn = (pred & (labels == 1)).sum(), (pred & (labels == 0)).sum(), (~pred & (labels == 1)).sum()
    assert 2 * tp / (2 * tp + fp + fn) == pytest.approx(best)


def test_best_f1_threshold_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both"):
        best_f1_threshold([0, 0], [0.1, 0.2])


# --------------------------------------------------------------------------- SSIM


def test_ssim_of_identical_images_is_one_everywhere() -> None:
    a = rand(2, 3, 16, 16)
    torch.testing.assert_close(ssim_map(a, a.clone()), torch.ones(2, 16, 16), atol=1e-5, rtol=0)


def test_ssim_of_constant_images_with_an_offset() -> None:
    a = torch.full((1, 1, 12, 12), 0.2)
    b = a + 0.3
    expected = (2 * 0.2 * 0.5 + SSIM_C1) / (0.2**2 + 0.5**2 + SSIM_C1)  # no variance: contrast term is C2/C2
    torch.testing.assert_close(ssim_map(a, b), torch.full((1, 12, 12), expected), atol=1e-6, rtol=0)


def test_ssim_centre_pixel_hand_computed() -> None:
    a, b = rand(1, 1, 15, 15, seed=1), rand(1, 1, 15, 15, seed=2)
    x = np.arange(-5, 6)
    g = np.exp(-(x**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()  # 11x11 Gaussian window, fully inside the image at (7, 7)
    pa, pb = a[0, 0, 2:13, 2:13].double().numpy(), b[0, 0, 2:13, 2:13].double().numpy()
    mu_a, mu_b = (w * pa).sum(), (w * pb).sum()
    var_a, var_b = (w * pa**2).sum() - mu_a**2, (w * pb**2).sum() - mu_b**2
    cov = (w * pa * pb).sum() - mu_a * mu_b
    expected = ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2)
    )
    assert ssim_map(a, b)[0, 7, 7].item() == pytest.approx(expected, abs=1e-5)


def test_ssim_averages_channels_and_drops_with_noise() -> None:
    a = rand(1, 2, 16, 16, seed=4)
    b = (a + 0.2 * rand(1, 2, 16, 16, seed=5)).clamp(0, 1)
    both = ssim_map(a, b)
    per_channel = [ssim_map(a[:, c : c + 1], b[:, c : c + 1]) for c in range(2)]
    torch.testing.assert_close(both, (per_channel[0] + per_channel[1]) / 2)
    assert both.mean() < 0.99
    worse = ssim_map(a, (a + 0.5 * rand(1, 2, 16, 16, seed=6)).clamp(0, 1))
    assert worse.mean() < both.mean()


def test_ssim_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="equal shape"):
        ssim_map(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))
    with pytest.raises(ValueError, match="odd"):
        ssim_map(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), window=4)


# --------------------------------------------------------------------------- GMS


def test_gms_of_identical_images_and_of_a_constant_offset_is_one() -> None:
    a = rand(2, 3, 16, 16)
    ones = torch.ones(2, 16, 16)
    torch.testing.assert_close(gms_map(a, a.clone()), ones, atol=1e-6, rtol=0)
    torch.testing.assert_close(gms_map(a * 0.5, a * 0.5 + 0.3), ones, atol=1e-5, rtol=0)


def test_gms_of_a_step_edge_against_a_flat_image_hand_computed() -> None:
    # Columns 0-3 are 0, columns 4-7 are 1. Prewitt/3 x-gradient is 1 at columns 3 and 4 and 0
    # elsewhere; the flat image has no gradient: GMS = c / (1 + c) there, 1 elsewhere.
    a = torch.zeros(1, 1, 8, 8)
    a[..., 4:] = 1.0
    b = torch.full((1, 1, 8, 8), 0.5)
    expected = torch.ones(1, 8, 8)
    expected[..., 3:5] = GMS_C / (1.0 + GMS_C)
    torch.testing.assert_close(gms_map(a, b), expected, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- median filter


@pytest.mark.parametrize("k", [3, 5])
def test_median_filter_matches_scipy(k: int) -> None:
    maps = rand(2, 11, 13)
    ours = median_filter(maps, k).numpy()
    for b in range(2):
        np.testing.assert_allclose(ours[b], ndimage.median_filter(maps[b].numpy(), size=k, mode="nearest"))


def test_median_filter_removes_isolated_speckles() -> None:
    maps = torch.zeros(1, 9, 9)
    for y, x in itertools.product((2, 6), (2, 6)):
        maps[0, y, x] = 1.0
    assert median_filter(maps, 3).abs().sum() == 0
    assert torch.equal(median_filter(maps, 1), maps)
    with pytest.raises(ValueError, match="odd"):
        median_filter(maps, 4)


def test_median_filter_3x3_network_handles_ties() -> None:
    """The 3x3 min/max network equals scipy also when most values repeat (few distinct levels)."""
    maps = torch.randint(0, 3, (3, 17, 9)).float()
    ours = median_filter(maps, 3).numpy()
    for b in range(3):
        np.testing.assert_array_equal(ours[b], ndimage.median_filter(maps[b].numpy(), size=3, mode="nearest"))
