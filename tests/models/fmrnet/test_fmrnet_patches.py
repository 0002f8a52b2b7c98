"""Sliding-window patches: exact stitching, any image size, the three inference paths agree."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from texinspect.errors import ConfigError, ModelError
from texinspect.models.fmrnet import build
from texinspect.models.fmrnet.inspection import multimodal_map
from texinspect.models.fmrnet.patches import (
    crop,
    defect_corners,
    extract_patches,
    make_grid,
    stitch,
    stitch_values,
)
from texinspect.scoring import gaussian_blur


@pytest.mark.parametrize(
    ("h", "w", "patch", "stride"), [(64, 64, 32, 16), (70, 45, 32, 24), (64, 256, 64, 32), (20, 40, 32, 8)]
)
def test_stitching_overlapping_patches_reproduces_the_image(h: int, w: int, patch: int, stride: int) -> None:
    torch.manual_seed(0)
    images = torch.rand(2, 3, h, w)
    patches, grid = extract_patches(images, patch, stride)
    assert patches.shape == (2 * grid.n_h * grid.n_w, 3, patch, patch)
    assert grid.h_pad >= h and (grid.h_pad - patch) % stride == 0
    out, cover = stitch(patches, grid)
    torch.testing.assert_close(out, images)
    assert out.shape == images.shape and float(cover.min()) >= 1


def test_stitching_averages_overlaps_of_different_patch_values() -> None:
    """Patch i filled with value v_i: each pixel gets the mean of the windows covering it."""
    images = torch.zeros(1, 1, 64, 64)
    patches, grid = extract_patches(images, 32, 16)
    values = torch.arange(patches.shape[0], dtype=torch.float32)
    out, cover = stitch(values.view(-1, 1, 1, 1).expand_as(patches).clone(), grid)
    expected = torch.zeros(64, 64)
    count = torch.zeros(64, 64)
    k = 0
    for i in range(grid.n_h):  # windows row-major
        for j in range(grid.n_w):
            expected[i * 16 : i * 16 + 32, j * 16 : j * 16 + 32] += values[k]
            count[i * 16 : i * 16 + 32, j * 16 : j * 16 + 32] += 1
            k += 1
    torch.testing.assert_close(out[0, 0], expected / count)
    torch.testing.assert_close(cover[0, 0], count)
    # selecting windows: uncovered pixels report zero coverage
    weights = torch.zeros(patches.shape[0])
    weights[0] = 1
    _, cover_sel = stitch(patches, grid, weights)
    assert float(cover_sel[0, 0, :32, :32].min()) == 1 and float(cover_sel[0, 0, 40:, 40:].max()) == 0


def test_window_values_stitch_to_the_mean_of_the_covering_windows() -> None:
    grid = make_grid(2, 64, 64, 32, 16)  # 3 x 3 windows per image
    values = torch.arange(18, dtype=torch.float32)
    out = stitch_values(values, grid)
    assert out.shape == (2, 64, 64)
    assert float(out[0, 0, 0]) == 0.0 and float(out[1, 63, 63]) == 17.0  # corners: one window each
    assert float(out[0, 20, 20]) == pytest.approx((0 + 1 + 3 + 4) / 4)  # rows/cols 16-31: windows 0, 1, 3, 4
    assert float(out[1, 40, 10]) == pytest.approx(9 + (3 + 6) / 2)  # rows 32-47 (windows 3, 6), cols 0-15 (column 0)


@pytest.mark.parametrize(
    ("b", "h", "w", "patch", "stride"), [(2, 256, 256, 64, 32), (1, 70, 45, 32, 16), (1, 100, 64, 64, 48), (2, 50, 90, 32, 32)]
)
def test_window_values_stitch_like_constant_windows(b: int, h: int, w: int, patch: int, stride: int) -> None:
    """The coarse-cell path (stride divides the window) and the general one agree with stitch()."""
    grid = make_grid(b, h, w, patch, stride)
    values = torch.rand(b * grid.per_image)
    windows = values.view(-1, 1, 1, 1).expand(-1, 1, patch, patch)
    torch.testing.assert_close(stitch_values(values, grid), stitch(windows, grid)[0][:, 0])


def test_grid_pads_to_whole_windows() -> None:
    g = make_grid(1, 100, 64, 64, 48)
    assert (g.h_pad, g.w_pad, g.n_h, g.n_w) == (112, 64, 2, 1)
    with pytest.raises(ConfigError, match="patch_size"):
        make_grid(1, 64, 64, 48, 16)
    with pytest.raises(ConfigError, match="patch_stride"):
        make_grid(1, 64, 64, 32, 0)


def test_training_crops_are_the_windows_at_their_corners() -> None:
    torch.manual_seed(3)
    images = torch.rand(2, 3, 40, 50)
    masks = torch.zeros(2, 1, 40, 50)
    masks[0, 0, 30:34, 40:44] = 1
    corners = defect_corners(masks, 4, 16, fraction=1.0)
    patches = crop(images, corners, 16, 4)
    for k, (y, x) in enumerate(corners.tolist()):
        torch.testing.assert_close(patches[k], images[k // 4, :, y : y + 16, x : x + 16])
    # image 0 has a defect: all its windows overlap it; image 1 has none: uniform fallback
    mask_patches = crop(masks, corners, 16, 4)
    assert bool((mask_patches[:4].flatten(1).sum(1) > 0).all())


@pytest.fixture()
def detector(tmp_path, make_config):  # random weights, memory filled: exercises shapes and paths, not quality
    torch.manual_seed(0)
    cfg = make_config(tmp_path)
    net = build(cfg).eval()
    net.set_memory(F.normalize(torch.randn(cfg.fmrnet.memory_size, cfg.fmrnet.latent_dim), dim=1))
    return net


def test_non_square_images_work(detector) -> None:
    images = torch.rand(2, 3, 64, 256)
    maps = detector.anomaly_map(images)
    assert maps.shape == (2, 64, 256) and bool(torch.isfinite(maps).all())
    scores = detector.patch_scores(images)
    assert scores.shape == (2, 2, 8)  # 32 px windows, stride 32
    odd = torch.rand(1, 3, 50, 90)  # not a multiple of the window: padded, then cropped back
    assert detector.anomaly_map(odd).shape == (1, 50, 90)


def test_multilevel_extremes_match_the_two_paths(detector) -> None:
    images = torch.rand(2, 3, 64, 96)
    full = detector.anomaly_map(images)
    everything = detector.multilevel_map(images, patch_threshold=-math.inf)
    torch.testing.assert_close(everything.maps, full)
    assert bool(everything.flagged.all())
    torch.testing.assert_close(everything.patch_scores, detector.patch_scores(images))
    nothing = detector.multilevel_map(images, patch_threshold=math.inf)
    assert float(nothing.maps.abs().max()) == 0.0 and not bool(nothing.flagged.any())


def test_multilevel_only_decodes_flagged_windows(detector) -> None:
    images = torch.rand(1, 3, 64, 64)
    scores = detector.patch_scores(images).flatten()
    thr = float(scores.sort().values[2])  # flags the two highest of four windows
    res = detector.multilevel_map(images, patch_threshold=thr)
    flagged = res.flagged.flatten()
    assert int(flagged.sum()) == 2
    full = detector.anomaly_map(images)
    for k in range(4):
        i, j = divmod(k, 2)
        m = 7  # SSIM window radius 5 + median 1 + GMS 1: away from the seams between windows
        region = (slice(None), slice(i * 32 + m, i * 32 + 32 - m), slice(j * 32 + m, j * 32 + 32 - m))
        if flagged[k]:
            torch.testing.assert_close(res.maps[region], full[region])
        else:
            assert float(res.maps[region].abs().max()) == 0.0


def test_patch_scores_need_a_memory_bank(tmp_path, make_config) -> None:
    net = build(make_config(tmp_path)).eval()
    with pytest.raises(ModelError, match="memory"):
        net.patch_scores(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="expects images"):
        net.anomaly_map(torch.rand(1, 1, 32, 32))


def test_pixel_map_weights_by_window_memory_distance_then_smooths(detector) -> None:
    """Soft multilevel detection: map x (stitched window distance)^power, then a Gaussian blur; the
    same map from anomaly_map, score and the multilevel path with every window flagged."""
    torch.manual_seed(1)
    images = torch.rand(2, 3, 64, 96)
    plain = multimodal_map(images, detector.reconstruct(images), detector.cfg.modalities, detector.cfg.median_filter)
    torch.testing.assert_close(detector.anomaly_map(images), plain)  # paper defaults: 0, 0
    dist = stitch_values(detector.patch_scores(images).flatten(), make_grid(2, 64, 96, 32, 32))
    detector.cfg.patch_weight_power = 2.0
    weighted = detector.anomaly_map(images)
    torch.testing.assert_close(weighted, plain * dist**2)
    assert not torch.allclose(weighted, plain)
    detector.cfg.map_smoothing = 3.0
    smoothed = detector.anomaly_map(images)
    torch.testing.assert_close(smoothed, gaussian_blur(plain * dist**2, 3.0))
    torch.testing.assert_close(detector.score(images, 4.0)[0], smoothed)
    torch.testing.assert_close(detector.multilevel_map(images, patch_threshold=-math.inf).maps, smoothed)
    with pytest.raises(ModelError, match="window scores"):
        detector.pixel_map(images, detector.reconstruct(images))


def test_pixel_map_weighting_waits_for_the_memory_bank(tmp_path, make_config) -> None:
    """Before the k-means bank exists (phase 1) there are no window distances: the map is unweighted."""
    net = build(make_config(tmp_path, {"fmrnet.patch_weight_power": 2.0})).eval()
    assert not net.weights_by_windows
    images = torch.rand(1, 3, 64, 64)
    plain = multimodal_map(images, net.reconstruct(images), net.cfg.modalities, net.cfg.median_filter)
    torch.testing.assert_close(net.anomaly_map(images), plain)


@pytest.mark.parametrize("key", ["patch_weight_power", "map_smoothing"])
def test_negative_map_weighting_is_refused(tmp_path, make_config, key: str) -> None:
    with pytest.raises(ConfigError, match=f"config key 'fmrnet.{key}': expected a value >= 0"):  # by the config layer
        make_config(tmp_path, {f"fmrnet.{key}": -1.0})
    config = make_config(tmp_path)
    setattr(config.fmrnet, key, -1.0)  # a config that skipped the config layer (e.g. edited in code)
    with pytest.raises(ConfigError, match=f"fmrnet.{key} must be >= 0"):
        build(config)
