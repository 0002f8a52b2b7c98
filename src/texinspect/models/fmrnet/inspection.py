"""Multimodal inspection (FMR-Net Sec. III-F, eqs. 17-23).

A = (1 - GMS) * (1 - SSIM) * |I - I_rec|: gradient-magnitude similarity with 3x3 Prewitt filters,
Gaussian-window SSIM and the per-pixel residual, each optionally median-filtered, fused by an
element-wise product. Any subset of modalities can be used (the paper's Table III). The map
operators are the shared ones in :mod:`texinspect.scoring`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from texinspect.errors import ConfigError
from texinspect.scoring import gms_map, median_filter, ssim_map

MODALITIES = ("gms", "ssim", "residual")


def check_modalities(modalities: Sequence[str]) -> None:
    if not modalities:
        raise ConfigError("fmrnet.modalities is empty: name at least one of gms, ssim, residual")
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise ConfigError(f"fmrnet.modalities: unknown {unknown} (known: {', '.join(MODALITIES)})")


def residual_map(images: torch.Tensor, recs: torch.Tensor) -> torch.Tensor:
    """Eq. (22): per-pixel Euclidean residual over channels, divided by sqrt(C) to stay in [0, 1]."""
    c = images.shape[1]
    return (images.float() - recs.float()).pow(2).sum(dim=1).sqrt() / c**0.5


def modality_map(name: str, images: torch.Tensor, recs: torch.Tensor) -> torch.Tensor:
    """One modality's anomaly map (B, H, W), larger = more anomalous."""
    if name == "gms":
        return 1.0 - gms_map(images, recs)  # eq. (19)
    if name == "ssim":
        return (1.0 - ssim_map(images, recs)).clamp_min(0.0)  # eq. (21); SSIM may dip below 0
    if name == "residual":
        return residual_map(images, recs)
    raise ConfigError(f"fmrnet.modalities: unknown modality '{name}' (known: {', '.join(MODALITIES)})")


def multimodal_map(
    images: torch.Tensor,
    recs: torch.Tensor,
    modalities: Sequence[str] = MODALITIES,
    median: int = 3,
) -> torch.Tensor:
    """Eq. (23): product of the chosen modality maps, each median-filtered with a ``median`` window."""
    check_modalities(modalities)
    out: torch.Tensor | None = None
    for name in modalities:
        m = median_filter(modality_map(name, images, recs), median)
        out = m if out is None else out * m
    assert out is not None
    return out
