"""The papers' losses on inputs whose value is known by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from texinspect.errors import WeightsUnavailableError
from texinspect.losses import focal_loss, resize_mask
from texinspect.models.rbae.losses import (
    SSIMLoss,
    VGGPerceptualLoss,
    _vgg16_prefix,
    build_perceptual,
    feature_repair_loss,
    normalise_per_image,
    pixel_discrimination_loss,
)

torch.set_num_threads(1)


def test_focal_loss_known_values() -> None:
    logits = torch.zeros(4)
    target = torch.tensor([1.0, 1.0, 0.0, 0.0])
    # p = 0.5 everywhere: CE = ln 2, (1 - p_t)^2 = 0.25; alpha_t = 0.25 (positives), 0.75 (negatives)
    want = (2 * 0.25 + 2 * 0.75) * math.log(2) * 0.25 / 4
    assert focal_loss(logits, target, alpha=0.25, gamma=2.0).item() == pytest.approx(want)
    # gamma 0 and no alpha: plain binary cross-entropy
    assert focal_loss(logits, target, alpha=-1, gamma=0).item() == pytest.approx(math.log(2))
    # confident and right: almost nothing; confident and wrong: much more than BCE/4
    assert focal_loss(torch.tensor([8.0]), torch.tensor([1.0])).item() < 1e-7
    wrong = focal_loss(torch.tensor([-4.0]), torch.tensor([1.0]), alpha=-1, gamma=2.0).item()
    assert wrong == pytest.approx(math.log1p(math.exp(4.0)) * (1 - 1 / (1 + math.exp(4.0))) ** 2)
    with pytest.raises(ValueError, match="differ"):
        focal_loss(torch.zeros(2), torch.zeros(3))


def test_normalise_per_image_divides_by_each_max() -> None:
    x = torch.tensor([[[[1.0, 2.0], [4.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    n = normalise_per_image(x)
    torch.testing.assert_close(n[0], x[0] / 4, atol=1e-6, rtol=1e-6)
    assert n[1].abs().max() == 0  # no defect, no residual: stays zero


def test_pixel_discrimination_loss_known_inputs() -> None:
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :2] = 1.0
    f_o = [torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 2, 2)]
    # residual exactly where the mask is, at both layers -> normalised residual == resized mask
    f_ad = [f_o[0] + 2 * mask, f_o[1] + torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])]
    assert pixel_discrimination_loss(f_o, f_ad, mask).item() == pytest.approx(0.0, abs=1e-10)
    # no residual at all while a defect is marked: layer 1 error = mean(mask) = 1/4, layer 2 = 1/4
    assert pixel_discrimination_loss(f_o, f_o, mask).item() == pytest.approx(0.25)
    # residual everywhere: normalised to 1, error = 1 - mean(mask) on both layers
    f_all = [f + 1.0 for f in f_o]
    assert pixel_discrimination_loss(f_o, f_all, mask).item() == pytest.approx(0.75)


def test_resize_mask_is_area_share() -> None:
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 0, 0] = 1
    assert resize_mask(mask, (2, 2))[0, 0, 0, 0].item() == pytest.approx(0.25)


def test_feature_repair_loss_known_inputs() -> None:
    a = [torch.zeros(1, 2, 2, 2), torch.zeros(1, 1, 1, 1)]
    b = [torch.ones(1, 2, 2, 2), 3 * torch.ones(1, 1, 1, 1)]
    assert feature_repair_loss(a, b).item() == pytest.approx((1.0 + 9.0) / 2)
    assert feature_repair_loss(b, b).item() == 0.0
    with pytest.raises(ValueError):
        feature_repair_loss(a, b[:1])


def test_missing_vgg_weights_name_the_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsUnavailableError) as err:
        build_perceptual("vgg16", "")
    msg = str(err.value)
    assert (
        "rbae.vgg_weights" in msg and "--set rbae.vgg_weights=PATH" in msg and "rbae.perceptual=none" in msg
    )
    with pytest.raises(WeightsUnavailableError, match="file not found"):
        build_perceptual("vgg16", str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"something": torch.zeros(1)}, bad)
    with pytest.raises(WeightsUnavailableError, match="not a VGG-16"):
        build_perceptual("vgg16", str(bad))


def _fake_vgg_file(path: Path) -> Path:
    net = _vgg16_prefix()
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in net.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # extra keys of a full VGG-16 are ignored
    torch.save(state, path)
    return path


def test_vgg_perceptual_from_path_and_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = _fake_vgg_file(tmp_path / "vgg16-fake.pth")
    loss, desc = build_perceptual("vgg16", str(weights))
    assert isinstance(loss, VGGPerceptualLoss) and str(weights) in desc
    assert not any(p.requires_grad for p in loss.parameters())
    a = torch.rand(2, 3, 32, 32)
    b = torch.rand(2, 3, 32, 32, requires_grad=True)
    assert loss(a, a).item() == 0.0
    value = loss(a, b)
    assert value.item() > 0
    value.backward()
    assert b.grad is not None and b.grad.abs().sum() > 0
    assert loss(a[:, :1], a[:, :1]).item() == 0.0  # grayscale input is repeated to RGB
    loss.train()
    assert not loss.training  # stays in eval mode
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    _fake_vgg_file(cache / "vgg16-397923af.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    cached, desc = build_perceptual("vgg16", "")
    assert "vgg16-397923af.pth" in desc


def test_perceptual_off_or_replaced_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        none, desc = build_perceptual("none")
    assert none is None and desc.startswith("none") and "switched off" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        ssim, desc = build_perceptual("ssim")
    assert isinstance(ssim, SSIMLoss) and "SSIM" in caplog.text
    x = torch.rand(1, 1, 24, 24)
    assert ssim(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert ssim(x, torch.rand(1, 1, 24, 24)).item() > 0.3
    with pytest.raises(ValueError, match="unknown"):
        build_perceptual("lpips")
