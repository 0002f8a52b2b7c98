"""RB-AE hyper-parameters (paper defaults; see shared/papers/rb-ae.txt).

Keys the paper does not fix are documented in ``models/rbae/README.md`` with what was measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from texinspect.config_ranges import NON_NEGATIVE, POSITIVE, PROBABILITY, RATE, Range
from texinspect.models.registry import register_family


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


@register_family("rbae")
@dataclass
class RBAEConfig:
    # dotted key (in this section) -> allowed range, checked with the shared keys' (config_ranges)
    RANGES: ClassVar[dict[str, Range]] = {
        **dict.fromkeys(
            ("widths", "patch_sizes", "ffm_kernel", "ffm_channels", "msfdm_hidden", "segmenter_widths"), POSITIVE
        ),
        **dict.fromkeys(("msfdm_lambdas", "focal_gamma"), NON_NEGATIVE),
        **dict.fromkeys((f"loss.{k}" for k in ("rec1", "per1", "pixel_dis", "rec2", "per2", "fea_rep", "seg")), NON_NEGATIVE),
        "attention_temperature": RATE,
        "focal_alpha": PROBABILITY,
        "reference_candidates": Range(low=0, note="0: all training images"),
        "train_size": Range(low=0, note="0: data.image_size"),
        "phase1_fraction": Range(low=0, high=1, open_high=True, note="0: train.phase1_fraction"),
    }

    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    patch_sizes: list[int] = field(default_factory=lambda: [2, 4])  # RBFRM K values
    ffm_kernel: int = 5  # m in the FFM
    ffm_channels: int = 64
    attention_temperature: float = 10.0  # scales cosines before the RBFRM softmax
    msfdm_lambdas: list[float] = field(default_factory=lambda: [0.2, 0.2, 0.6])
    msfdm_hidden: int = 64
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    # vgg16: ImageNet VGG-16 (eqs. 13/16); ssim: 1 - SSIM instead; none: no perceptual term
    perceptual: Literal["vgg16", "ssim", "none"] = "vgg16"
    vgg_weights: str = ""  # path to VGG-16 ImageNet weights; "" looks in torch's cache
    reference: str = "auto"  # "auto": medoid of encoder features; else a training image path
    reference_candidates: int = 256  # training images considered for the "auto" medoid (0: all)
    train_size: int = 0  # side the network trains and runs at (0: data.image_size); maps are resized back
    phase1_fraction: float = 0.0  # share of train.max_minutes for phase 1 (0: train.phase1_fraction)
    loss: RBAELossWeights = field(default_factory=RBAELossWeights)
    # Table V ablations
    use_rbam: bool = True
    use_pixel_dis: bool = True
    segmentation: Literal["msfdm", "pixel_gap", "msfr", "ssim", "pixel_unet"] = "msfdm"
    # Extension (not in the paper), segmentation=pixel_unet: a U-Net on concat(image, reconstruction)
    # at the network's full resolution, trained in phase 2 with the focal loss (models/segmenter.py).
    segmenter_widths: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    # Paper: phase 2 freezes the encoder. Extension (false): the encoder keeps learning in phase 2, on the
    # defect images, beside RBAMs, decoder and segmenter; the reference features are re-taken every step.
    freeze_encoder: bool = True
