"""FMR-Net hyper-parameters (paper defaults; see shared/papers/fmr-net.txt).

Keys the paper fixes keep its values (64x64 patches, L = 512 entries, 2x2 textons, Adam 1e-3,
loss weights 100/1/1 and 100/1, 200k + 100k iterations). Keys the paper leaves open are marked
"choice" and explained in ``models/fmrnet/README.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from texinspect.config_ranges import FRACTION, NON_NEGATIVE, POSITIVE, PROBABILITY, RATE, Range
from texinspect.models.registry import register_family


@dataclass
class FMRNetLossWeights:
    """Eq. (15) phase 1 and eq. (16) phase 2 weights."""

    rec1: float = 100.0
    adv1: float = 1.0
    lat1: float = 1.0
    rec2: float = 100.0
    adv2: float = 1.0
    seg2: float = 1.0  # extension (segmentation=pixel_unet): focal loss of the pixel segmenter in phase 2


@register_family("fmrnet")
@dataclass
class FMRNetConfig:
    # dotted key (in this section) -> allowed range, checked with the shared keys' (config_ranges)
    RANGES: ClassVar[dict[str, Range]] = {
        **dict.fromkeys(
            ("patch_stride", "widths", "latent_dim", "memory_size", "texton_size", "gfrm_kernel", "phase1_steps",
             "phase2_steps", "patches_per_image", "kmeans_max_iter", "inference_chunk", "segmenter_widths"),
            POSITIVE,
        ),
        **dict.fromkeys(("weight_penalty", "warmup_steps", "positive_shift", "focal_gamma"), NON_NEGATIVE),
        **dict.fromkeys((f"loss.{k}" for k in ("rec1", "adv1", "lat1", "rec2", "adv2", "seg2")), NON_NEGATIVE),
        **dict.fromkeys(("gfrm_temperature", "lr"), RATE),
        **dict.fromkeys(("defect_patch_fraction", "focal_alpha"), PROBABILITY),
        "patch_size": Range(low=32, note="a multiple of 32"),
        "gfrm_levels": Range(low=1, high=4, note="encoder layers 1-4"),
        "adam_beta1": Range(low=0, high=1, open_high=True),
        "phase1_restarts": Range(low=1, note="1: no restarts"),
        "memory_max_codes": Range(low=0, note="0: every normal training patch"),
        "median_filter": Range(low=0, note="0 or 1: off"),
        "patch_weight_power": Range(low=0, note="0: the paper's map"),
        "map_smoothing": Range(low=0, note="0: none"),
        "segmenter_scale": FRACTION,
        "train_size": Range(low=0, note="0: the input's own size; else at least fmrnet.patch_size"),
    }

    patch_size: int = 64  # multiple of 32 (five stride-2 blocks)
    patch_stride: int = 32  # sliding-window stride; overlapping reconstructions are averaged when stitching
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    latent_dim: int = 256
    memory_size: int = 512  # L, k-means centroids
    texton_size: int = 2  # K in the GFRM
    # encoder layers (1-based) whose skip goes through a GFRM (paper: EL3, EL4)
    gfrm_levels: list[int] = field(default_factory=lambda: [3, 4])
    gfrm_temperature: float = 10.0  # choice: softmax scale of eq. (6) (contextual attention [39] uses 10)
    gfrm_kernel: int = 3  # choice: size of the convolution on the similarity map (s -> s*)
    weight_penalty: float = 1e-6  # epsilon of eq. (10)
    lr: float = 1e-3
    lr_schedule: Literal["constant", "cosine"] = "constant"  # FMR-Net's own (train.lr_schedule is RB-AE's)
    warmup_steps: int = 0
    adam_beta1: float = 0.5  # choice: the usual GAN setting; the paper only says "Adam"
    loss: FMRNetLossWeights = field(default_factory=FMRNetLossWeights)
    phase1_steps: int = 200_000  # paper's T1; train.max_steps_phase1 > 0 caps it
    phase2_steps: int = 100_000  # paper's T2; train.max_steps_phase2 > 0 caps it
    # choice (restarts.py): phase 1 trained this many times on equal shares of its budget, the
    # candidate whose patch path best finds synthetic defects on held-out normals kept (1 = paper)
    phase1_restarts: int = 1
    # choice: how P+ relates to P0 in eq. (2). "shift": the same window moved by up to positive_shift px
    # (a contrastive positive view); "independent": anywhere in the same image (collapses the codes, see README)
    positive_pairing: Literal["shift", "independent"] = "shift"
    positive_shift: int = 8
    patches_per_image: int = 4  # choice: training patches cut from every (synthetic) image per step
    defect_patch_fraction: float = 0.75  # choice: share of P- / phase-2 patches centred on the defect mask
    memory_max_codes: int = 0  # 0: k-means over every normal training patch (paper); >0: a seeded subsample
    kmeans_max_iter: int = 100
    inference_chunk: int = 256  # patches per forward pass at inference (bounds memory, not a patch loop)
    modalities: list[Literal["gms", "ssim", "residual"]] = field(
        default_factory=lambda: ["gms", "ssim", "residual"]
    )
    median_filter: int = 3  # 0 or 1 disables
    # image score: "patch" = max over windows of the code's distance to its nearest memory entry
    # (the paper's patch-level detection, Sec. IV-F); "map" = max of the smoothed pixel map
    image_score: Literal["patch", "map"] = "patch"
    # choice (soft multilevel detection, README): the pixel map is multiplied by the stitched window
    # memory distance to this power (0 = the paper's map alone), then Gaussian-blurred with sigma
    # map_smoothing px (0 = none). The cpu profile sets the power to 2, measured on synthetic defects.
    patch_weight_power: float = 0.0
    map_smoothing: float = 0.0
    # Extension (not in the paper), issue 17: "pixel_unet" replaces eq. (23)'s fixed GMS x SSIM x residual
    # product by a U-Net on concat(image, reconstruction) trained in phase 2 on the defect patches with
    # the focal loss (models/segmenter.py); it runs on the whole stitched image at inference.
    segmentation: Literal["multimodal", "pixel_unet"] = "multimodal"
    segmenter_widths: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    segmenter_scale: float = 1.0  # the segmenter runs at this fraction of the input side (speed), logits resized back
    # Extension, issue 17 round 5: "images" trains the segmenter on whole synthetic images (every window
    # reconstructed and stitched, as at inference) instead of on the defect-centred windows ("windows"),
    # so that it also learns what the stitched reconstruction of normal texture looks like.
    segmenter_training: Literal["windows", "images"] = "windows"
    # Extension, issue 17 round 5: side (px) the network trains and runs at; inputs are resized to it and
    # maps resized back, as rbae.train_size (0: the input's own size, the paper). At 128 px a 64 px window
    # covers a quarter of the image side and a 256 px image needs 9 windows instead of 49.
    train_size: int = 0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    # Table II ablations
    two_phase: bool = True
    use_cmfm: bool = True
    use_gfrm: bool = True
