"""RB-AE's losses (Luo et al.), one function or module per equation.

- :func:`pixel_discrimination_loss`: eq. (2), makes encoder features differ where a defect was
  pasted and agree elsewhere (:func:`normalise_per_image` is its N(.)).
- :func:`feature_repair_loss`: eq. (9), repaired features should equal the features of the
  defect-free source image.
- :class:`VGGPerceptualLoss`: eqs. (13)/(16), L1 distance of the first five ReLU feature maps of
  an ImageNet VGG-16. Its weights are never downloaded: they come from a file the user names, or
  from torch's hub cache; otherwise :class:`WeightsUnavailableError` says which options switch the
  loss off or replace it.
- :class:`SSIMLoss`: ``1 - mean SSIM``, the explicit weight-free replacement for the perceptual
  loss (``rbae.perceptual=ssim``).

The segmentation loss of eq. (10) is the shared :func:`texinspect.losses.focal_loss`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from texinspect.errors import WeightsUnavailableError
from texinspect.losses import resize_mask
from texinspect.scoring import ssim_map
from texinspect.torch_files import load_torch_file

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- RB-AE eq. (2), (9)


def normalise_per_image(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """N(.) of eq. (2): divide each map (B,1,H,W) by its own maximum, so it lies in [0, 1].

    A map that is zero everywhere (no defect pasted) stays zero.
    """
    peak = x.flatten(1).amax(dim=1).view(-1, *([1] * (x.dim() - 1)))
    return x / (peak + eps)


def pixel_discrimination_loss(
    feats_normal: Sequence[torch.Tensor],
    feats_defect: Sequence[torch.Tensor],
    mask: torch.Tensor,
) -> torch.Tensor:
    """RB-AE eq. (2): mean over layers of ``|| N(M(|Phi_l(Io) - Phi_l(Iad)|^2)) - Im^l ||^2``.

    ``M`` is the mean over channels, ``N`` :func:`normalise_per_image`, ``Im^l`` the mask area-
    resized to layer ``l``; the squared norm is averaged over pixels (a mean squared error) so the
    loss does not grow with the image size.
    """
    if len(feats_normal) != len(feats_defect) or not feats_normal:
        raise ValueError("pixel_discrimination_loss: need the same non-zero number of layers for both images")
    total = mask.new_zeros(())
    for fo, fd in zip(feats_normal, feats_defect, strict=True):
        residual = (fo - fd).pow(2).mean(dim=1, keepdim=True)
        target = resize_mask(mask, tuple(residual.shape[-2:]))
        total = total + F.mse_loss(normalise_per_image(residual), target)
    return total / len(feats_normal)


def feature_repair_loss(repaired: Sequence[torch.Tensor], normal: Sequence[torch.Tensor]) -> torch.Tensor:
    """RB-AE eq. (9): mean squared error between repaired and defect-free features, averaged
    over the RBAM layers (the paper's 1/(l2 - l1) prefactor is read as an average)."""
    if len(repaired) != len(normal) or not repaired:
        raise ValueError("feature_repair_loss: need the same non-zero number of layers")
    losses = [F.mse_loss(r, n) for r, n in zip(repaired, normal, strict=True)]
    return torch.stack(losses).mean()


# --------------------------------------------------------------------------- perceptual

# torchvision's VGG-16 ``features`` indices up to relu3_1; the first five ReLU outputs are taken.
_VGG16_PREFIX: list[int | str] = [64, "R", 64, "R", "M", 128, "R", 128, "R", "M", 256, "R"]
VGG16_RELU_LAYERS = (1, 3, 6, 8, 11)  # relu1_1, relu1_2, relu2_1, relu2_2, relu3_1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HOW_TO_FIX = (
    "set rbae.vgg_weights to a torchvision VGG-16 ImageNet state dict "
    "(--set rbae.vgg_weights=PATH, e.g. vgg16-397923af.pth), put that file in torch's hub cache "
    "({cache}), or train without it: --set rbae.perceptual=none (no perceptual term) or "
    "--set rbae.perceptual=ssim (1 - SSIM instead)"
)


def _vgg16_prefix() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for item in _VGG16_PREFIX:
        if item == "R":
            layers.append(nn.ReLU(inplace=False))
        elif item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers.append(nn.Conv2d(in_ch, int(item), 3, padding=1))
            in_ch = int(item)
    return nn.Sequential(*layers)


def hub_cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_vgg16_weights(path: str = "") -> Path:
    """The VGG-16 weights file to use: ``path`` if given (must exist), else one in torch's cache."""
    cache = hub_cache_dir()
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsUnavailableError(
                f"rbae.vgg_weights: file not found: {p}; " + HOW_TO_FIX.format(cache=cache)
            )
        return p
    candidates = sorted(cache.glob("vgg16-*.pth")) if cache.is_dir() else []
    if not candidates:
        raise WeightsUnavailableError(
            "the perceptual loss (rbae.perceptual=vgg16) needs ImageNet VGG-16 weights and none were found; "
            + HOW_TO_FIX.format(cache=cache)
        )
    return candidates[0]


def load_vgg16_prefix(path: Path) -> nn.Sequential:
    """VGG-16 up to relu3_1 with the weights of ``path`` (torchvision key names), frozen."""
    state = load_torch_file(
        path,
        f"{path}: not a VGG-16 weights file, or corrupted; refusing to load it; "
        + HOW_TO_FIX.format(cache=hub_cache_dir()),
        WeightsUnavailableError,
    )
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    net = _vgg16_prefix()
    wanted = net.state_dict()
    picked: dict[str, torch.Tensor] = {}
    for key in wanted:
        for stored in (f"features.{key}", key):
            if isinstance(state, dict) and stored in state:
                picked[key] = state[stored]
                break
        else:
            raise WeightsUnavailableError(
                f"{path}: not a VGG-16 state dict (no 'features.{key}'); "
                + HOW_TO_FIX.format(cache=hub_cache_dir())
            )
        if picked[key].shape != wanted[key].shape:
            raise WeightsUnavailableError(
                f"{path}: 'features.{key}' has shape {tuple(picked[key].shape)}, VGG-16 has {tuple(wanted[key].shape)}"
            )
    net.load_state_dict(picked)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class VGGPerceptualLoss(nn.Module):
    """RB-AE eqs. (13)/(16): mean over the first five VGG-16 ReLU maps of the L1 distance.

    Images are (B, C, H, W) in [0, 1]; one-channel images are repeated to RGB, then ImageNet-
    normalised. The network stays frozen and in eval mode whatever ``train()`` is called with.
    """

    def __init__(self, features: nn.Sequential, source: str = "") -> None:
        super().__init__()
        self.features = features
        self.source = source
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_path(cls, path: str = "") -> VGGPerceptualLoss:
        weights = find_vgg16_weights(path)
        log.info("perceptual loss: VGG-16 ImageNet features from %s", weights)
        return cls(load_vgg16_prefix(weights), source=str(weights))

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        super().train(False)
        return self

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ValueError(f"VGG perceptual loss needs 1 or 3 channels, got {x.shape[1]}")
        return (x - self.mean) / self.std

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self._prep(a), self._prep(b)], dim=0)
        total = x.new_zeros(())
        last = max(VGG16_RELU_LAYERS)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG16_RELU_LAYERS:
                fa, fb = x.chunk(2, dim=0)
                total = total + F.l1_loss(fa, fb)
            if i == last:
                break
        return total / len(VGG16_RELU_LAYERS)


class SSIMLoss(nn.Module):
    """``1 - mean local SSIM``: a weight-free structural loss used in place of the perceptual loss."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 1.0 - ssim_map(a, b).mean()


def build_perceptual(kind: str, vgg_weights: str = "") -> tuple[nn.Module | None, str]:
    """The perceptual term named by ``rbae.perceptual`` and a one-line description for logs.

    ``vgg16`` without weights raises :class:`WeightsUnavailableError`; ``none`` and ``ssim`` log a
    warning so that a run without ImageNet features is never silent about it.
    """
    if kind == "vgg16":
        loss = VGGPerceptualLoss.from_path(vgg_weights)
        return loss, f"vgg16 ImageNet features ({loss.source})"
    if kind == "ssim":
        log.warning(
            "perceptual loss replaced by 1 - SSIM (rbae.perceptual=ssim): no ImageNet VGG-16 features used"
        )
        return SSIMLoss(), "ssim (1 - SSIM in place of the VGG-16 perceptual loss)"
    if kind == "none":
        log.warning("perceptual loss switched off (rbae.perceptual=none): eqs. 13/16 are not used")
        return None, "none (perceptual loss switched off)"
    raise ValueError(f"rbae.perceptual: unknown kind '{kind}' (vgg16, ssim, none)")
