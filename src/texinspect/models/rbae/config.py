"""RB-AE hyper-parameters (paper defaults; see shared/papers/rb-ae.txt)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class RBAELossWeights:
    """Eq. (14) phase 1 and eq. (17) phase 2 weights."""

    rec1: float = 100.0
    per1: float = 1.0
    pixel_dis: float = 1.0
    rec2: float = 100.0
    per2: float = 1.0
    fea_rep: float = 1.0
    seg: float = 1.0


@dataclass
class RBAEConfig:
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    patch_sizes: list[int] = field(default_factory=lambda: [2, 4])  # RBFRM K values
    ffm_kernel: int = 5  # m in the FFM
    ffm_channels: int = 64
    attention_temperature: float = 10.0  # scales cosines before the RBFRM softmax
    msfdm_lambdas: list[float] = field(default_factory=lambda: [0.2, 0.2, 0.6])
    msfdm_hidden: int = 64
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    perceptual: Literal["vgg16", "none"] = "vgg16"
    vgg_weights: str = ""  # path to VGG-16 ImageNet weights; "" looks in torch's cache
    reference: str = "auto"  # "auto": medoid of encoder features; else a training image path
    loss: RBAELossWeights = field(default_factory=RBAELossWeights)
    # Table V ablations
    use_rbam: bool = True
    use_pixel_dis: bool = True
    segmentation: Literal["msfdm", "pixel_gap", "msfr", "ssim"] = "msfdm"
