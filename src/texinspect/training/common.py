"""What the families' trainers share: data preparation, budgets, optimizers, finishing.

Keeping this in one place means RB-AE and FMR-Net see the same train/validation split, the same
synthetic defects and the same threshold calibration, so their results are comparable.

Under DDP (``training.distributed``) every rank prepares the same data (each trains on its own
shard of it); calibration, the model artifact and the summary are rank 0's alone.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from texinspect.calibration import calibrate
from texinspect.config import Config, save_config
from texinspect.data.datasets import ImageDataset, split_train_val
from texinspect.data.layout import DatasetIndex, scan_dataset
from texinspect.errors import DataError
from texinspect.models.artifact import ModelCard, save_detector
from texinspect.models.base import Detector
from texinspect.outputs import write_text_atomic
from texinspect.synthesis.dataset import SyntheticDefectDataset
from texinspect.synthesis.pool import TexturePool
from texinspect.synthesis.synthesizer import DefectSynthesizer
from texinspect.training.distributed import DistContext, is_main_process

log = logging.getLogger(__name__)

VAL_FRACTION = 0.1  # held-out normal images for threshold calibration and sweeps
MODEL_SUBDIR = "model"


@dataclass
class TrainData:
    """Normal training images, held-out normal images, and synthetic defects over the former."""

    index: DatasetIndex
    train: ImageDataset
    val: ImageDataset
    synthetic: SyntheticDefectDataset
    info: dict[str, Any] = field(default_factory=dict)


def prepare_training_data(config: Config, val_fraction: float = VAL_FRACTION, work_size: int = 0) -> TrainData:
    """Scan ``config.data.root``, split off validation normals, wrap training normals with synthesis.

    ``work_size`` > 0 (a family that runs at its own side: ``rbae.train_size``, ``fmrnet.train_size``):
    training normals and synthetic defects at that side, the held-out normals still at
    ``data.image_size``, so that selection, calibration and validation score images as ``predict``
    does, through the network's own resizing."""
    if work_size and work_size != config.data.image_size:
        data = prepare_training_data(config.with_overrides({"data.image_size": work_size}), val_fraction)
        val = ImageDataset(data.val.records, config.data.image_size, config.data.channels, cache=True)
        return replace(data, val=val)
    index = scan_dataset(config.data.root)
    train_records, val_records = split_train_val(index.train, val_fraction, config.seed)
    if not train_records:
        raise DataError(f"{config.data.root}: no training images left after the validation split")
    size, channels = config.data.image_size, config.data.channels
    train = ImageDataset(train_records, size, channels, cache=True)
    val = ImageDataset(val_records, size, channels, cache=True)
    pool = TexturePool(config.synthesis.texture_pool, size, channels, seed=config.seed)
    synthesizer = DefectSynthesizer(config.synthesis, size, channels, pool=pool)
    synthetic = SyntheticDefectDataset(
        train, synthesizer, seed=config.seed, augment=config.data.augment, gain_jitter=config.data.gain_jitter
    )
    info = {
        "data_root": str(config.data.root),
        "n_train": len(train_records),
        "n_val": len(val_records),
        "texture_pool": pool.description if hasattr(pool, "description") else str(config.synthesis.texture_pool),
    }
    return TrainData(index=index, train=train, val=val, synthetic=synthetic, info=info)


def phase_budgets(config: Config) -> tuple[float, float]:
    """Seconds for phase 1 and phase 2 from ``train.max_minutes`` (0 = unlimited)."""
    total = config.train.max_minutes * 60.0
    if total <= 0:
        return 0.0, 0.0
    first = total * config.train.phase1_fraction
    return first, total - first


def adam(params: Any, lr: float, weight_decay: float) -> torch.optim.Adam:
    return torch.optim.Adam([p for p in params if p.requires_grad], lr=lr, weight_decay=weight_decay)


def freeze(module: nn.Module) -> None:
    """Stop gradient flow and BatchNorm statistics updates (the papers' frozen encoder)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)


def to_device(batch: dict[str, Any], device: torch.device, channels_last: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and value.dim() == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


def finalize_model(
    detector: Detector,
    config: Config,
    out_dir: str | Path,
    val: ImageDataset,
    device: torch.device,
    extra: dict[str, Any] | None = None,
    family: str | None = None,
) -> Path:
    """Calibrate thresholds on held-out normal images and write the model artifact.

    ``family``: the card's family when it is not ``config.model`` (AE-SSIM, trained directly)."""

    detector.eval()
    t0 = time.perf_counter()
    stats = calibrate(detector, val, config.eval, device)
    log.info("calibrated thresholds on %d held-out normal images in %.1f s", len(val), time.perf_counter() - t0)
    card = ModelCard(
        family=family or config.model,
        config=config.to_dict(),
        image_size=config.data.image_size,
        channels=config.data.channels,
        threshold=_opt_float(stats.get("threshold")),
        pixel_threshold=_opt_float(stats.get("pixel_threshold")),
        normal_score_mean=_opt_float(stats.get("normal_score_mean")),
        normal_score_std=_opt_float(stats.get("normal_score_std")),
        score_smoothing=config.eval.score_smoothing,
        score_rule=detector.image_score_rule,
        extra=dict(extra or {}),
    )
    model_dir = Path(out_dir) / MODEL_SUBDIR
    save_detector(detector.cpu(), card, model_dir)
    detector.to(device)
    save_config(config, Path(out_dir) / "config.yaml")
    return model_dir


def write_summary(out_dir: str | Path, summary: dict[str, Any]) -> Path:
    """``out_dir/train_summary.json``: steps, seconds, final losses, choices (e.g. perceptual loss).

    Written by rank 0 only under DDP.
    """
    path = Path(out_dir) / "train_summary.json"
    if is_main_process():
        write_text_atomic(path, json.dumps(summary, indent=2, default=str))
    return path


def ddp_summary(ctx: DistContext, batch_size: int, results: list[Any]) -> dict[str, Any]:
    """What the summary records about data parallelism: world size, global batch, and the ranks'
    weight checksums at each phase end (equal when the ranks stayed in sync)."""
    return {
        "world_size": ctx.world_size,
        "backend": ctx.backend or None,
        "batch_size_per_process": batch_size,
        "global_batch_size": batch_size * ctx.world_size,
        "rank_checksums": {r.name: r.rank_checksums for r in results},
    }


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
