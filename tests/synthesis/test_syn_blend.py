"""RB-AE eq. (1) and FMR-Net eq. (1) on hand-made arrays with exact expected values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from texinspect.synthesis.blend import blend, paste

IO = np.array([[[0.2, 0.4], [0.6, 0.8]]], np.float32)  # (1,2,2)
SRC = np.array([[[1.0, 0.0], [0.5, 0.5]]], np.float32)
MASK = np.array([[1.0, 0.0], [0.5, 0.0]], np.float32)


def test_paste_is_rbae_eq1() -> None:
    out = paste(IO, SRC, MASK)
    # I_o*(1-I_m) + I_n*I_m pixel by pixel
    expected = np.array([[[1.0, 0.4], [0.6 * 0.5 + 0.5 * 0.5, 0.8]]], np.float32)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-7)
    assert out.dtype == np.float32


def test_blend_global_is_fmrnet_eq1_as_printed() -> None:
    lam = 0.25
    out = blend(IO, SRC, MASK, lam, region_only=False)
    inner = IO * (1 - MASK) + SRC * MASK
    expected = lam * inner + (1 - lam) * SRC
    np.testing.assert_allclose(out, expected, atol=1e-7)
    # by hand: top-right pixel (mask 0): 0.25*0.4 + 0.75*0.0 = 0.1; it changed although unmasked
    assert out[0, 0, 1] == pytest.approx(0.1)
    assert out[0, 1, 1] == pytest.approx(0.25 * 0.8 + 0.75 * 0.5)


def test_blend_region_only_leaves_unmasked_pixels_alone() -> None:
    lam = 0.25
    out = blend(IO, SRC, MASK, lam, region_only=True)
    # (1 - lam*m)*I_o + lam*m*I_d
    assert out[0, 0, 0] == pytest.approx(0.75 * 0.2 + 0.25 * 1.0)
    assert out[0, 1, 0] == pytest.approx((1 - 0.125) * 0.6 + 0.125 * 0.5)
    assert out[0, 0, 1] == pytest.approx(0.4) and out[0, 1, 1] == pytest.approx(0.8)


@pytest.mark.parametrize("region_only", [True, False])
def test_opaque_blend_equals_paste(region_only: bool) -> None:
    np.testing.assert_allclose(blend(IO, SRC, MASK, 1.0, region_only), paste(IO, SRC, MASK), atol=1e-7)


def test_torch_tensors_and_batches() -> None:
    io = torch.rand(2, 3, 8, 8)
    src = torch.rand(2, 3, 8, 8)
    mask = (torch.rand(2, 8, 8) > 0.5).float()
    out = blend(io, src, mask, 0.4)
    assert isinstance(out, torch.Tensor) and out.shape == io.shape
    ref = blend(io[1].numpy(), src[1].numpy(), mask[1].numpy(), 0.4)
    np.testing.assert_allclose(out[1].numpy(), ref, atol=1e-6)
    np.testing.assert_allclose(paste(io, src, mask[:, None]).numpy(), paste(io, src, mask).numpy())


def test_mismatched_mask_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="does not fit image"):
        paste(IO, SRC, np.zeros((2,), np.float32))
