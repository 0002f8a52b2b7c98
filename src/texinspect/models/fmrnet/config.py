"""FMR-Net hyper-parameters (paper defaults; see shared/papers/fmr-net.txt)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class FMRNetLossWeights:
    """Eq. (15) phase 1 and eq. (16) phase 2 weights."""

    rec1: float = 100.0
    adv1: float = 1.0
    lat1: float = 1.0
    rec2: float = 100.0
    adv2: float = 1.0


@dataclass
class FMRNetConfig:
    patch_size: int = 64
    patch_stride: int = 32  # sliding-window stride; overlaps are averaged when stitching
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    latent_dim: int = 256
    memory_size: int = 512  # L, k-means centroids
    texton_size: int = 2  # K in the GFRM
    weight_penalty: float = 1e-6  # epsilon of eq. (10)
    lr: float = 1e-3
    loss: FMRNetLossWeights = field(default_factory=FMRNetLossWeights)
    modalities: list[Literal["gms", "ssim", "residual"]] = field(
        default_factory=lambda: ["gms", "ssim", "residual"]
    )
    median_filter: int = 3  # 0 or 1 disables
    # Table II ablations
    two_phase: bool = True
    use_cmfm: bool = True
    use_gfrm: bool = True
