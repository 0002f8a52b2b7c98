"""GFRM: the batched implementation equals a direct loop over eqs. (6)-(9)."""

from __future__ import annotations

import math

import pytest
import torch

from texinspect.models.fmrnet.gfrm import GFRM


def direct_gfrm(
    skip: torch.Tensor, memory_map: torch.Tensor, k: int, temperature: float, kernel: torch.Tensor
) -> torch.Tensor:
    """Eqs. (6)-(9) written out with loops, in float64, for one sample (C, H, W)."""
    c, h, w = skip.shape
    hh, ww = h // k, w // k
    # textons b_i: the K x K blocks of F, row-major
    textons = [
        memory_map[:, k * pi : k * pi + k, k * qi : k * qi + k] for pi in range(hh) for qi in range(ww)
    ]
    n = len(textons)
    d = torch.zeros(n, hh, ww, dtype=torch.float64)
    for i, b in enumerate(textons):
        b_star = b / b.norm()
        for p in range(hh):
            for q in range(ww):
                window = skip[:, k * p : k * p + k, k * q : k * q + k]
                window_star = window / window.norm()
                total = 0.0
                for m in range(k):  # eq. (8): sum over m, n of F_D*(eta p + m, eta q + n) b_i*(m, n)
                    for nn_ in range(k):
                        total += float((window_star[:, m, nn_] * b_star[:, m, nn_]).sum())
                d[i, p, q] = total
    s = torch.zeros_like(d)
    for p in range(hh):
        for q in range(ww):
            denom = sum(math.exp(temperature * d[j, p, q]) for j in range(n))
            for i in range(n):
                s[i, p, q] = math.exp(temperature * d[i, p, q]) / denom  # eq. (6)
    r = kernel.shape[0] // 2
    s_star = torch.zeros_like(s)
    for i in range(n):  # the convolution on the similarity map (zero padding, cross-correlation)
        for p in range(hh):
            for q in range(ww):
                acc = 0.0
                for u in range(kernel.shape[0]):
                    for v in range(kernel.shape[1]):
                        pp, qq = p + u - r, q + v - r
                        if 0 <= pp < hh and 0 <= qq < ww:
                            acc += float(kernel[u, v]) * float(s[i, pp, qq])
                s_star[i, p, q] = acc
    g = torch.zeros(c, h, w, dtype=torch.float64)
    for p in range(hh):  # eq. (9): transposed convolution, stride K, textons as filters
        for q in range(ww):
            for i, b in enumerate(textons):
                g[:, k * p : k * p + k, k * q : k * q + k] += s_star[i, p, q] * b
    return g


@pytest.mark.parametrize("temperature", [1.0, 10.0])
def test_gfrm_matches_direct_loop(temperature: float) -> None:
    torch.manual_seed(0)
    module = GFRM(texton_size=2, temperature=temperature, kernel=3)
    with torch.no_grad():
        module.sim_conv.weight.copy_(torch.randn_like(module.sim_conv.weight))  # not the identity start
    skip = torch.randn(2, 3, 4, 6)
    memory_map = torch.randn(2, 3, 4, 6)
    out = module(skip, memory_map)
    assert out.shape == skip.shape
    kernel = module.sim_conv.weight.detach()[0, 0].double()
    for b in range(2):
        expected = direct_gfrm(skip[b].double(), memory_map[b].double(), 2, temperature, kernel)
        torch.testing.assert_close(out[b].double(), expected, rtol=1e-4, atol=1e-5)


def test_gfrm_rebuilds_a_defect_from_normal_textons_only() -> None:
    """With a sharp softmax each skip block becomes the most similar normal texton (the 'texton principle')."""
    torch.manual_seed(1)
    module = GFRM(texton_size=2, temperature=200.0, kernel=3)  # identity kernel at start
    memory_map = torch.randn(1, 4, 4, 4)
    skip = memory_map.clone()
    skip[:, :, :2, :2] = -memory_map[:, :, 2:, 2:]  # a "defect" block: anti-aligned with a texton
    with torch.no_grad():
        out = module(skip, memory_map)
    # normal blocks are kept (they match their own texton) ...
    torch.testing.assert_close(out[:, :, 2:, :], memory_map[:, :, 2:, :], atol=1e-3, rtol=1e-3)
    # ... and the defect block is replaced by a texton of the memory map, never copied through
    block = out[0, :, :2, :2]
    textons = [memory_map[0, :, i : i + 2, j : j + 2] for i in (0, 2) for j in (0, 2)]
    assert min(float((block - t).abs().max()) for t in textons) < 1e-3
    assert float((block - skip[0, :, :2, :2]).abs().max()) > 0.5


def test_gfrm_rejects_mismatched_maps() -> None:
    module = GFRM()
    with pytest.raises(ValueError, match="equal shape"):
        module(torch.randn(1, 3, 4, 4), torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="not divisible"):
        module(torch.randn(1, 3, 5, 4), torch.randn(1, 3, 5, 4))
