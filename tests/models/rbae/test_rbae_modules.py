"""RB-AE building blocks: shapes, RBFRM against a direct loop over eqs. (3)-(5), FFM weights."""

from __future__ import annotations

import math

import pytest
import torch

from texinspect.config import load_config
from texinspect.errors import ConfigError, ModelError
from texinspect.models.blocks import DownBlock, Encoder, UpBlock
from texinspect.models.rbae import build
from texinspect.models.rbae.config import RBAEConfig
from texinspect.models.rbae.decoder import Decoder
from texinspect.models.rbae.msfdm import MSFDM, msfr_map, pixel_gap_map
from texinspect.models.rbae.network import RBAENet
from texinspect.models.rbae.rbam import FFM, RBAM, RBFRM, reference_repair

torch.set_num_threads(1)
LIGHT = RBAEConfig(widths=[4, 8, 8, 16, 16], ffm_channels=8, msfdm_hidden=8)


def loop_rbfrm(features: torch.Tensor, reference: torch.Tensor, k: int, temperature: float) -> torch.Tensor:
    """Eqs. (3)-(5) written out patch by patch for one image (C, H, W) and reference (C, Hr, Wr)."""

    def patches(x: torch.Tensor) -> list[tuple[int, int, torch.Tensor]]:
        out = []
        for r in range(0, x.shape[1], k):
            for c in range(0, x.shape[2], k):
                out.append((r, c, x[:, r : r + k, c : c + k]))
        return out

    p_list = patches(features)
    b_list = patches(reference)
    result = torch.zeros_like(features)
    for r, c, p in p_list:
        sims = []
        for _, _, b in b_list:
            sims.append(float((p * b).sum()) / (float(p.norm()) * float(b.norm())))  # eq. (3)
        exps = [math.exp(temperature * s) for s in sims]
        total = sum(exps)
        weights = [e / total for e in exps]  # eq. (4)
        repaired = sum(w * b for w, (_, _, b) in zip(weights, b_list, strict=True))  # eq. (5)
        result[:, r : r + k, c : c + k] = repaired
    return result


@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("temperature", [1.0, 10.0])
def test_rbfrm_equals_direct_loop(k: int, temperature: float) -> None:
    g = torch.Generator().manual_seed(k * 10 + int(temperature))
    feats = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    ref = torch.randn(1, 3, 8, 4, generator=g, dtype=torch.float64)  # reference may differ in size
    got = RBFRM(k, temperature)(feats, ref)
    for i in range(feats.shape[0]):
        want = loop_rbfrm(feats[i], ref[0], k, temperature)
        torch.testing.assert_close(got[i], want, rtol=1e-9, atol=1e-9)


def test_rbfrm_repairs_towards_reference_patches() -> None:
    """A patch identical to a reference patch is rebuilt from that patch when the softmax is sharp."""
    ref = torch.randn(1, 4, 4, 4)
    feats = ref.clone()
    feats[..., :2, :2] = 5 * torch.randn(1, 4, 2, 2)  # a "defect" patch
    out = reference_repair(feats, ref, 2, temperature=1000.0)
    torch.testing.assert_close(out[..., 2:, 2:], ref[..., 2:, 2:])
    # every output patch is a convex combination of reference patches: within their value range
    assert out.min() >= ref.min() - 1e-5 and out.max() <= ref.max() + 1e-5


def test_rbfrm_pads_sides_that_are_not_multiples_of_k() -> None:
    feats, ref = torch.randn(1, 2, 6, 5), torch.randn(1, 2, 6, 6)
    assert reference_repair(feats, ref, 4, 10.0).shape == feats.shape
    assert reference_repair(feats, ref, 16, 10.0).shape == feats.shape  # K clamped to the map


def test_ffm_weights_sum_to_one_and_mix_branches() -> None:
    ffm = FFM(channels=6, n_branches=3, kernel=5, hidden=4)
    branches = [torch.randn(2, 6, 5, 7) for _ in range(3)]
    w = ffm.weights(branches)
    assert w.shape == (2, 3, 6, 5, 7)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(2, 6, 5, 7))
    assert (w > 0).all()
    out = ffm(branches)
    torch.testing.assert_close(out, (w * torch.stack(branches, 1)).sum(1))  # eq. (8)


def test_ffm_rejects_even_kernel_and_wrong_branch_count() -> None:
    with pytest.raises(ValueError, match="odd"):
        FFM(4, kernel=4)
    with pytest.raises(ValueError, match="3 branches"):
        FFM(4).weights([torch.zeros(1, 4, 2, 2)] * 2)


def test_rbam_output_shape() -> None:
    rbam = RBAM(8, patch_sizes=(2, 4), temperature=10.0, ffm_kernel=5, ffm_hidden=4)
    x, ref = torch.randn(3, 8, 8, 8), torch.randn(1, 8, 8, 8)
    assert rbam(x, ref).shape == x.shape
    assert len(rbam.branches(x, ref)) == 3


def test_blocks_and_encoder_shapes() -> None:
    assert DownBlock(3, 5)(torch.rand(2, 3, 16, 16)).shape == (2, 5, 8, 8)
    assert UpBlock(5, 3)(torch.rand(2, 5, 8, 8)).shape == (2, 3, 16, 16)
    enc = Encoder(1, [4, 8, 16, 16, 32])
    feats = enc(torch.rand(2, 1, 64, 64))
    assert [tuple(f.shape) for f in feats] == [
        (2, 4, 32, 32),
        (2, 8, 16, 16),
        (2, 16, 8, 8),
        (2, 16, 4, 4),
        (2, 32, 2, 2),
    ]
    assert len(enc(torch.rand(1, 1, 64, 64), depth=3)) == 3
    with pytest.raises(ConfigError):
        Encoder(3, [4, 0])


@pytest.mark.parametrize("size", [32, 64, 96])
def test_decoder_and_msfdm_shapes(size: int) -> None:
    widths = [4, 8, 8, 16, 16]
    feats = Encoder(3, widths)(torch.rand(2, 3, size, size))
    rec = Decoder(widths, 3)(feats)
    assert rec.shape == (2, 3, size, size) and rec.min() >= 0 and rec.max() <= 1
    msfdm = MSFDM(widths[:3], hidden=4)
    logits = msfdm(feats[:3], feats[:3])
    assert [lg.shape[-1] for lg in logits] == [size // 2, size // 4, size // 8]
    fused = msfdm.fuse(logits, (size, size))
    assert fused.shape == (2, size, size)
    up = [torch.nn.functional.interpolate(torch.sigmoid(lg), (size, size), mode="bilinear") for lg in logits]
    torch.testing.assert_close(fused, (0.2 * up[0] + 0.2 * up[1] + 0.6 * up[2])[:, 0])  # eq. (11)
    assert pixel_gap_map(rec, rec).abs().max() == 0
    assert msfr_map(feats[:3], feats[:3], (size, size)).shape == (2, size, size)


@pytest.mark.parametrize("segmentation", ["msfdm", "pixel_gap", "msfr", "ssim"])
@pytest.mark.parametrize("net_size,input_size", [(32, 32), (64, 64), (64, 100), (64, 48), (96, 96)])
def test_network_map_at_input_resolution(segmentation: str, net_size: int, input_size: int) -> None:
    cfg = RBAEConfig(**{**LIGHT.__dict__, "segmentation": segmentation})
    net = RBAENet(cfg, 3, net_size).eval()
    net.set_reference(torch.rand(1, 3, net_size, net_size))
    with torch.no_grad():
        amap = net.anomaly_map(torch.rand(2, 3, input_size, input_size))
    assert amap.shape == (2, input_size, input_size)
    assert torch.isfinite(amap).all()


def test_network_needs_reference_and_valid_sizes() -> None:
    net = RBAENet(LIGHT, 1, 64).eval()
    with pytest.raises(ModelError, match="reference"):
        net.anomaly_map(torch.rand(1, 1, 64, 64))
    with pytest.raises(ConfigError, match="multiple of 32"):
        RBAENet(LIGHT, 1, 48)
    with pytest.raises(ConfigError, match="5 encoder layers"):
        RBAENet(RBAEConfig(widths=[4, 8, 8]), 1, 64)
    with pytest.raises(ValueError, match="expects images"):
        net.anomaly_map(torch.rand(1, 3, 64, 64))


def test_reference_buffers_travel_in_state_dict() -> None:
    net = RBAENet(LIGHT, 3, 64).eval()
    ref = torch.rand(1, 3, 64, 64)
    net.set_reference(ref)
    state = net.state_dict()
    assert {
        "reference_image",
        "reference_feat3",
        "reference_feat4",
        "reference_feat5",
        "reference_ready",
    } <= set(state)
    other = RBAENet(LIGHT, 3, 64).eval()
    other.load_state_dict(state)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(other.anomaly_map(x), net.anomaly_map(x))
        torch.testing.assert_close(other.reference_feat4, net.encoder(ref)[3])


def test_without_rbam_has_no_rbam_parameters() -> None:
    cfg = RBAEConfig(**{**LIGHT.__dict__, "use_rbam": False})
    net = RBAENet(cfg, 3, 64).eval()
    assert len(net.rbams) == 0
    with torch.no_grad():
        assert net.anomaly_map(torch.rand(1, 3, 64, 64)).shape == (1, 64, 64)  # no reference needed


def test_build_uses_config_sizes() -> None:
    cfg = load_config(
        None,
        {"data.image_size": 64, "data.channels": 1, "rbae.widths": [4, 8, 8, 16, 16], "rbae.train_size": 32},
    )
    net = build(cfg)
    assert isinstance(net, RBAENet) and net.size == 32 and net.channels == 1
