"""Validation without test labels: synthetic defects on held-out normal images.

Tuning (sweeps, model engineers comparing settings) must never look at the test split's labels,
which are for reporting only. The yardstick here is a FIXED set built from the held-out normal
images of the training split (the ``val`` part of ``training.common.prepare_training_data``, never
an image a model trained on): half stay normal, half get one artificial defect each from
``DefectSynthesizer``. The set depends only on the data, the config's split seed, the synthesis
settings it is given and ``seed`` (keep it distinct from training seeds), so every model is
measured on exactly the same images and masks.

A small labelled validation folder that the user names explicitly can be used instead
(:func:`labelled_validation`); the dataset's own test split is refused.

One set and one piece of code for every family and every consumer: the trainers' summaries
(:func:`training_validation`, ``synthetic_*`` keys), FMR-Net's phase-1 restart selection (through a
``scorer``), sweeps and ``benchmarks/diagnose.py`` all measure on :func:`build_synthetic_validation`
with :data:`VALIDATION_SEED` and :mod:`texinspect.metrics`, so ``synthetic_image_auroc`` means the
same for RB-AE, FMR-Net and AE-SSIM.

Cost: 80 images at 256 px, synthesis plus scoring plus the three metrics, take a few seconds on
one CPU core with a light model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from texinspect.config import Config
from texinspect.data.datasets import ImageDataset
from texinspect.data.layout import TEST, absolute_path, records_for_prediction
from texinspect.devices import resolve_device
from texinspect.errors import ConfigError, DataError
from texinspect.metrics import aupro, image_auroc, pixel_auroc
from texinspect.models.artifact import ModelCard, load_detector
from texinspect.models.base import Detector
from texinspect.synthesis.pool import TexturePool
from texinspect.synthesis.synthesizer import DefectSynthesizer
from texinspect.training.common import VAL_FRACTION, prepare_training_data

log = logging.getLogger(__name__)

VALIDATION_SEED = 104_729  # default; distinct from training seeds (config.seed, config.seed + 7919)
DEFAULT_IMAGES = 80  # 40 normal + 40 with a defect: enough to rank FMR-Net's restart candidates
METRICS = ("image_auroc", "pixel_auroc", "aupro")
SUMMARY_KEYS = tuple(f"synthetic_{m}" for m in METRICS)  # what trainers write to train_summary.json

# images (B, C, H, W) -> (anomaly maps (B, H, W), image scores (B,)): a detector's ``score`` or a
# partial path of it (FMR-Net's patch path for phase-1 candidates)
Scorer = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class ValidationSet:
    """Images ``(N, C, H, W)`` float32 in [0, 1], masks ``(N, H, W)`` in {0, 1}, labels ``(N,)``."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    source: str  # what the set was made from, for logs and MLflow
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])


def held_out_normals(config: Config, size: int | None = None, channels: int | None = None) -> ImageDataset:
    """The trainers' held-out normal images: ``prepare_training_data``'s ``val`` split itself."""
    resized = {"data.image_size": size or config.data.image_size, "data.channels": channels or config.data.channels}
    data = prepare_training_data(config.with_overrides(resized))
    if len(data.val) == 0:
        raise DataError(
            f"{config.data.root}: no held-out normal images (the training split has {data.info.get('n_train', 0)} "
            f"image(s); at least 2 are needed so that {VAL_FRACTION:.0%} can be held out)"
        )
    return data.val


def build_synthetic_validation(
    config: Config,
    n_images: int = DEFAULT_IMAGES,
    seed: int = VALIDATION_SEED,
    size: int | None = None,
    channels: int | None = None,
    normals: ImageDataset | None = None,
) -> ValidationSet:
    """A fixed set: ``n_images // 2`` synthetic defects and the rest normal, from held-out normals.

    Image ``i`` of each half uses held-out image ``i mod n_val``; defect ``j`` draws from
    ``np.random.default_rng([seed, j])``, so the set is identical for identical inputs whatever
    else happened in the process. The texture pool is seeded with ``seed`` too. A trainer passes
    its own held-out ``normals`` (the same images :func:`held_out_normals` would load again).
    """
    if n_images < 2:
        raise ConfigError(f"validation images: need at least 2 (one normal, one defect), got {n_images}")
    if seed == config.seed:
        raise ConfigError(
            f"validation seed {seed} equals the training seed (config 'seed'); choose a distinct one "
            "so that validation defects are not the ones the model trained on"
        )
    t0 = time.perf_counter()
    if normals is None:
        normals = held_out_normals(config, size, channels)
    elif len(normals) == 0:
        raise DataError(f"{config.data.root}: no held-out normal images to draw validation defects on")
    size, channels = normals.size, normals.channels
    pool = TexturePool(config.synthesis.texture_pool, size, channels, seed=seed)
    synthesizer = DefectSynthesizer(config.synthesis, size, channels, pool=pool)
    n_val = len(normals)
    n_defect = n_images // 2
    n_normal = n_images - n_defect
    images = np.empty((n_images, channels, size, size), np.float32)
    masks = np.zeros((n_images, size, size), np.float32)
    labels = np.zeros(n_images, np.int64)
    for i in range(n_normal):
        images[i] = normals[i % n_val]["image"].numpy()
    for j in range(n_defect):
        base = normals[j % n_val]["image"].numpy()
        other = normals[(j + 1) % n_val]["image"].numpy() if n_val > 1 else None
        defect, mask = synthesizer(base, np.random.default_rng([seed, j]), other)
        images[n_normal + j], masks[n_normal + j], labels[n_normal + j] = defect, mask, 1
    seconds = time.perf_counter() - t0
    info = {
        "kind": "synthetic",
        "seed": int(seed),
        "images": int(n_images),
        "defects": int(n_defect),
        "held_out_normals": int(n_val),
        "size": int(size),
        "texture_pool": "procedural" if pool.procedural else str(config.synthesis.texture_pool),
        "build_seconds": round(seconds, 2),
    }
    log.info("validation set: %d synthetic defects + %d normals from %d held-out images (%.1f s)", n_defect, n_normal, n_val, seconds)
    return ValidationSet(images, masks, labels, f"synthetic defects on {n_val} held-out normals of {config.data.root}", info)


def labelled_validation(folder: str | Path, config: Config, size: int | None = None, channels: int | None = None) -> ValidationSet:
    """A labelled folder named explicitly by the user (MVTec layout or ``good/``, ``<type>/`` with masks).

    Refuses the dataset's own test split: its labels are for reporting, not for choosing settings.
    """
    path = absolute_path(folder)
    data_root = absolute_path(config.data.root)
    test = (data_root / TEST).resolve()
    resolved = path.resolve()
    if resolved == data_root.resolve() or resolved == test or test in resolved.parents:
        raise ConfigError(
            f"sweep.validation.folder: {folder} is the test split of data.root ({config.data.root}); "
            "its labels are for reporting only. Name a separate labelled validation folder, or leave it empty "
            "to validate on synthetic defects"
        )
    records = records_for_prediction(path)
    unknown = [r.rel for r in records if r.label is None]
    if unknown:
        raise DataError(f"{folder}: images without a good/defect label, e.g. {unknown[0]} (expected test/good and test/<type>)")
    missing = [r.rel for r in records if r.label == 1 and r.mask_path is None]
    if missing:
        raise DataError(f"{folder}: defect image {missing[0]} has no mask (ground_truth/<type>/<stem>_mask.png)")
    labels = np.array([r.label for r in records], np.int64)
    if labels.min() == labels.max():
        raise DataError(f"{folder}: validation needs both good and defect images, found only label {labels[0]}")
    dataset = ImageDataset(records, size or config.data.image_size, channels or config.data.channels, cache=False)
    items = [dataset[i] for i in range(len(dataset))]
    images = np.stack([it["image"].numpy() for it in items])
    masks = np.stack([it["mask"][0].numpy() for it in items])
    info = {"kind": "labelled", "folder": str(folder), "images": len(records), "defects": int(labels.sum())}
    return ValidationSet(images, masks, labels, f"labelled folder {folder}", info)


@torch.inference_mode()
def evaluate_scorer(
    scorer: Scorer, vset: ValidationSet, device: torch.device | str = "cpu", batch_size: int = 8, fpr_limit: float = 0.3
) -> dict[str, float]:
    """Image AUROC, pixel AUROC and AUPRO (FPR <= ``fpr_limit``) of ``scorer``'s maps and scores on ``vset``."""
    maps, scores = [], []
    for start in range(0, len(vset), batch_size):
        batch = torch.from_numpy(vset.images[start : start + batch_size]).to(device)
        m, s = scorer(batch)
        maps.append(m.float().cpu().numpy())
        scores.append(s.float().cpu().numpy())
    amaps = np.concatenate(maps).astype(np.float32, copy=False)
    if not np.all(np.isfinite(amaps)):
        raise FloatingPointError("the model's anomaly maps contain NaN or infinite values")
    return {
        "image_auroc": image_auroc(vset.labels, np.concatenate(scores)),
        "pixel_auroc": pixel_auroc(vset.masks, amaps),
        "aupro": aupro(vset.masks, amaps, fpr_limit),
    }


def evaluate_detector(
    detector: Detector,
    card: ModelCard,
    vset: ValidationSet,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    fpr_limit: float = 0.3,
) -> dict[str, float]:
    """Image AUROC, pixel AUROC and AUPRO (FPR <= ``fpr_limit``) of a saved ``detector`` on ``vset``."""
    if (card.image_size, card.channels) != (vset.size, vset.channels):
        raise ConfigError(
            f"validation images are {vset.channels}x{vset.size}px but the model expects "
            f"{card.channels}x{card.image_size}px"
        )
    detector.eval()
    return evaluate_scorer(lambda x: detector.score(x, card.score_smoothing), vset, device, batch_size, fpr_limit)


def training_validation(
    detector: Detector,
    config: Config,
    normals: ImageDataset,
    device: torch.device,
    scorer: Scorer | None = None,
    n_images: int = DEFAULT_IMAGES,
) -> dict[str, float]:
    """The ``synthetic_*`` keys a trainer writes to ``train_summary.json``: the shared set drawn on
    the trainer's held-out ``normals`` (at ``data.image_size``), scored by ``detector.score`` (or
    ``scorer``) with ``eval.score_smoothing``. The detector is left in eval mode."""
    vset = build_synthetic_validation(config, n_images, VALIDATION_SEED, normals=normals)
    detector.eval()
    score = scorer or (lambda x: detector.score(x, config.eval.score_smoothing))
    metrics = evaluate_scorer(score, vset, device, fpr_limit=config.eval.aupro_fpr_limit)
    return {f"synthetic_{k}": float(v) for k, v in metrics.items()}


def synthetic_validation(
    model_dir: str | Path,
    config: Config,
    n_images: int = DEFAULT_IMAGES,
    seed: int = VALIDATION_SEED,
    device: str = "cpu",
    vset: ValidationSet | None = None,
) -> dict[str, float]:
    """Metrics of the model in ``model_dir`` on the fixed synthetic-defect set of ``config``.

    ``config`` decides the data, the split and the synthesis of the validation defects (a sweep
    passes its base config so that swept synthesis keys never change the yardstick). Pass
    ``vset`` to reuse a set already built (it must match the model's size and channels).
    """
    dev = resolve_device(device)
    detector, card = load_detector(model_dir, dev)
    if vset is None:
        vset = build_synthetic_validation(config, n_images, seed, card.image_size, card.channels)
    return evaluate_detector(detector, card, vset, dev, fpr_limit=config.eval.aupro_fpr_limit)
