"""Reference-based attention module (RB-AE section III-C): RBFRM + FFM.

RBFRM (eqs. 3-5) rebuilds every K x K patch of a feature map as a softmax-weighted sum of the
reference image's K x K patches, weighted by cosine similarity. FFM (eqs. 6-8) then chooses, per
element, between the original features and the repairs at each K, with attention maps that sum to
one across branches (SKNet-style).

Temperature: eq. (4) applies the softmax to raw cosines in [-1, 1]; over N reference patches the
largest weight is then at most e^2 / (e^2 + N - 1), i.e. nearly uniform (N = 64: about 0.1), and
the repair degenerates to the mean reference patch. Contextual attention (Yu et al. 2018), which
RBFRM follows, scales the cosines by 10 before the softmax; ``temperature`` is that factor
(``rbae.attention_temperature``; 1.0 is eq. 4 as printed).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _pad_to_multiple(x: torch.Tensor, k: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % k, (-w) % k
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x


def reference_repair(
    features: torch.Tensor,
    reference: torch.Tensor,
    patch_size: int,
    temperature: float = 1.0,
    eps: float = 1e-6,
) -> torch.Tensor:
    """RBFRM, eqs. (3)-(5): ``(B, C, H, W)`` features repaired from ``(1 or B, C, Hr, Wr)`` reference.

    Both maps are cut into non-overlapping ``K x K`` patches (``K`` is clamped to the map size;
    sides that are not multiples of ``K`` are padded by repetition and cropped back). Returns the
    repaired map ``F_rep`` with the shape of ``features``.
    """
    if features.dim() != 4 or reference.dim() != 4 or features.shape[1] != reference.shape[1]:
        raise ValueError(
            f"reference_repair: need (B,C,H,W) features and reference with equal C, got "
            f"{tuple(features.shape)} and {tuple(reference.shape)}"
        )
    b, c, h, w = features.shape
    k = max(1, min(int(patch_size), h, w, reference.shape[-2], reference.shape[-1]))
    x = _pad_to_multiple(features, k)
    r = _pad_to_multiple(reference.to(features.dtype), k)
    hp, wp = x.shape[-2:]
    patches = F.unfold(x, kernel_size=k, stride=k)  # (B, C*K*K, N)
    ref = F.unfold(r, kernel_size=k, stride=k)  # (1|B, C*K*K, Nr)
    p_hat = patches / patches.norm(dim=1, keepdim=True).clamp_min(eps)
    b_hat = ref / ref.norm(dim=1, keepdim=True).clamp_min(eps)
    sim = torch.matmul(p_hat.transpose(1, 2), b_hat)  # (B, N, Nr): eq. (3)
    weights = torch.softmax(sim * temperature, dim=-1)  # eq. (4)
    repaired = torch.matmul(ref, weights.transpose(1, 2))  # (B, C*K*K, N): eq. (5)
    out = F.fold(repaired, output_size=(hp, wp), kernel_size=k, stride=k)
    return out[..., :h, :w]


class RBFRM(nn.Module):
    """Reference-based feature repair module for one patch size ``K`` (no trainable weights)."""

    def __init__(self, patch_size: int, temperature: float = 10.0) -> None:
        super().__init__()
        if patch_size < 1:
            raise ValueError(f"RBFRM patch size must be >= 1, got {patch_size}")
        self.patch_size = int(patch_size)
        self.temperature = float(temperature)

    def forward(self, features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return reference_repair(features, reference, self.patch_size, self.temperature)

    def extra_repr(self) -> str:
        return f"K={self.patch_size}, temperature={self.temperature}"


class FFM(nn.Module):
    """Feature fusion module, eqs. (6)-(8).

    ``F_U = sum of branches`` (eq. 6) -> ``m x m`` conv to ``hidden`` channels (+BN+ReLU, as SKNet's
    squeeze) -> one ``m x m`` conv per branch giving attention logits of the branch's shape ->
    softmax across branches (eq. 7) -> weighted sum (eq. 8).
    """

    def __init__(self, channels: int, n_branches: int = 3, kernel: int = 5, hidden: int = 64) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"FFM kernel m must be odd to keep the map size, got {kernel}")
        pad = kernel // 2
        self.n_branches = n_branches
        self.squeeze = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel, padding=pad, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )
        self.attend = nn.ModuleList(
            nn.Conv2d(hidden, channels, kernel, padding=pad) for _ in range(n_branches)
        )

    def weights(self, branches: Sequence[torch.Tensor]) -> torch.Tensor:
        """Normalised attention maps (B, n_branches, C, H, W); they sum to 1 over dim 1 (eq. 7)."""
        if len(branches) != self.n_branches:
            raise ValueError(f"FFM built for {self.n_branches} branches, got {len(branches)}")
        fused = torch.stack(list(branches), dim=0).sum(dim=0)  # eq. (6)
        z = self.squeeze(fused)
        logits = torch.stack([conv(z) for conv in self.attend], dim=1)
        return torch.softmax(logits, dim=1)

    def forward(self, branches: Sequence[torch.Tensor]) -> torch.Tensor:
        a = self.weights(branches)
        return (a * torch.stack(list(branches), dim=1)).sum(dim=1)  # eq. (8)


class RBAM(nn.Module):
    """RBFRMs at each patch size plus an FFM over [original, repair K1, repair K2, ...]."""

    def __init__(
        self,
        channels: int,
        patch_sizes: Sequence[int] = (2, 4),
        temperature: float = 10.0,
        ffm_kernel: int = 5,
        ffm_hidden: int = 64,
    ) -> None:
        super().__init__()
        self.repairs = nn.ModuleList(RBFRM(k, temperature) for k in patch_sizes)
        self.ffm = FFM(channels, n_branches=1 + len(self.repairs), kernel=ffm_kernel, hidden=ffm_hidden)

    def branches(self, features: torch.Tensor, reference: torch.Tensor) -> list[torch.Tensor]:
        return [features, *(repair(features, reference) for repair in self.repairs)]

    def forward(self, features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.ffm(self.branches(features, reference))
