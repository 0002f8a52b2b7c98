"""Multimodal inspection on images whose GMS / SSIM / residual are known in closed form."""

from __future__ import annotations

import pytest
import torch

from texinspect.errors import ConfigError
from texinspect.models.fmrnet.inspection import modality_map, multimodal_map
from texinspect.scoring import GMS_C, SSIM_C1


def test_identical_images_give_a_zero_map_in_every_modality() -> None:
    torch.manual_seed(0)
    img = torch.rand(2, 3, 32, 32)
    for name in ("gms", "ssim", "residual"):
        assert float(modality_map(name, img, img).abs().max()) < 1e-5
    assert float(multimodal_map(img, img.clone()).abs().max()) < 1e-12


def test_constant_images_have_closed_form_ssim_and_residual() -> None:
    a = torch.full((1, 1, 24, 24), 0.2)
    b = torch.full((1, 1, 24, 24), 0.6)
    # no variance: SSIM reduces to the luminance term (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)
    ssim = (2 * 0.2 * 0.6 + SSIM_C1) / (0.2**2 + 0.6**2 + SSIM_C1)
    torch.testing.assert_close(
        modality_map("ssim", a, b), torch.full((1, 24, 24), 1 - ssim), rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(
        modality_map("residual", a, b), torch.full((1, 24, 24), 0.4), rtol=1e-5, atol=1e-6
    )
    # both flat: no gradients anywhere, GMS = c / c = 1
    assert float(modality_map("gms", a, b).abs().max()) < 1e-6


def test_gms_of_an_edge_against_a_flat_image() -> None:
    """Prewitt magnitude of a unit step is 1 on both sides of it (filters scaled by 1/3)."""
    edge = torch.zeros(1, 1, 16, 16)
    edge[..., 8:] = 1.0
    flat = torch.full_like(edge, 0.5)
    m = modality_map("gms", edge, flat)
    g = 1.0  # |d/dx| = (1+1+1)/3 at columns 7 and 8
    expected_edge = 1 - GMS_C / (g**2 + GMS_C)  # 1 - (2*g*0 + c) / (g^2 + 0 + c)
    torch.testing.assert_close(m[0, :, 7], torch.full((16,), expected_edge), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m[0, :, 8], torch.full((16,), expected_edge), rtol=1e-5, atol=1e-6)
    assert float(m[0, :, :6].abs().max()) < 1e-6 and float(m[0, :, 10:].abs().max()) < 1e-6


def test_fusion_is_the_product_of_median_filtered_modalities() -> None:
    torch.manual_seed(1)
    a, b = torch.rand(1, 3, 20, 20), torch.rand(1, 3, 20, 20)
    fused = multimodal_map(a, b, ["gms", "ssim", "residual"], median=0)
    expected = modality_map("gms", a, b) * modality_map("ssim", a, b) * modality_map("residual", a, b)
    torch.testing.assert_close(fused, expected)
    # each modality alone (Table III) is that modality's map
    torch.testing.assert_close(multimodal_map(a, b, ["ssim"], median=0), modality_map("ssim", a, b))


def test_median_filter_removes_an_isolated_hot_pixel_but_keeps_a_region() -> None:
    a = torch.zeros(1, 1, 16, 16)
    b = a.clone()
    b[..., 3, 3] = 1.0  # one noisy pixel
    b[..., 8:13, 8:13] = 1.0  # a 5x5 defect
    m = multimodal_map(a, b, ["residual"], median=3)
    assert float(m[0, 3, 3]) == 0.0
    assert float(m[0, 10, 10]) == pytest.approx(1.0)


def test_unknown_modality_is_a_config_error() -> None:
    a = torch.rand(1, 1, 8, 8)
    with pytest.raises(ConfigError, match="fmrnet.modalities"):
        multimodal_map(a, a, ["gms", "lbp"])
    with pytest.raises(ConfigError, match="fmrnet.modalities"):
        multimodal_map(a, a, [])
