"""``texinspect predict``: the stable output contract every model (and outside tool) writes.

``OUT/scores.csv``   path (relative to DATA, posix), score, label (0/1, empty if unknown),
                     defect_type, is_defect (score >= the model's stored threshold)
``OUT/maps/<path>.npy``  float32 anomaly map at the model's configured resolution
``OUT/prediction.json``  model family, image size, thresholds, timing

`texinspect evaluate` reads only these files, so every model is measured by the same code.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from texinspect.data.datasets import ImageDataset
from texinspect.data.layout import ImageRecord, records_for_prediction
from texinspect.devices import resolve_device
from texinspect.errors import DataError
from texinspect.models.artifact import ModelCard, load_detector
from texinspect.models.base import Detector

log = logging.getLogger(__name__)


def predict(
    model_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    device: str = "auto",
    batch_size: int = 8,
    write_maps: bool = True,
) -> pd.DataFrame:
    """Score every image of ``data_dir`` (its test split if it has the MVTec layout)."""
    dev = resolve_device(device)
    detector, card = load_detector(model_dir, dev)
    records = records_for_prediction(data_dir)
    if not records:
        raise DataError(f"{data_dir}: no images to predict on")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for batch_records, maps, scores in iter_predictions(detector, card, records, dev, batch_size):
        for rec, amap, score in zip(batch_records, maps, scores, strict=True):
            if write_maps:
                target = out / "maps" / f"{rec.rel}.npy"
                target.parent.mkdir(parents=True, exist_ok=True)
                np.save(target, amap.astype(np.float32))
            rows.append(
                {
                    "path": rec.rel,
                    "score": float(score),
                    "label": rec.label if rec.label is not None else "",
                    "defect_type": rec.defect_type,
                    "is_defect": bool(card.threshold is not None and score >= card.threshold),
                }
            )
    seconds = time.perf_counter() - t0
    table = pd.DataFrame(rows, columns=["path", "score", "label", "defect_type", "is_defect"])
    table.to_csv(out / "scores.csv", index=False)
    meta = {
        "family": card.family,
        "model_dir": str(model_dir),
        "data_dir": str(data_dir),
        "image_size": card.image_size,
        "channels": card.channels,
        "threshold": card.threshold,
        "pixel_threshold": card.pixel_threshold,
        "score_rule": card.score_rule,
        "score_smoothing": card.score_smoothing,
        "n_images": len(rows),
        "seconds": seconds,
        "device": str(dev),
    }
    (out / "prediction.json").write_text(json.dumps(meta, indent=2))
    log.info("predicted %d images in %.1f s -> %s", len(rows), seconds, out)
    return table


def iter_predictions(
    detector: Detector,
    card: ModelCard,
    records: list[ImageRecord],
    device: torch.device,
    batch_size: int = 8,
) -> Iterator[tuple[list[ImageRecord], np.ndarray, np.ndarray]]:
    """Yield (records, maps (B,H,W), image scores (B,)) batch by batch."""
    dataset = ImageDataset(records, card.image_size, card.channels, cache=False)
    for start in range(0, len(records), batch_size):
        idx = range(start, min(start + batch_size, len(records)))
        images = torch.stack([dataset[i]["image"] for i in idx]).to(device)
        maps, scores = score_images(detector, card, images)
        yield [records[i] for i in idx], maps, scores


@torch.inference_mode()
def score_images(detector: Detector, card: ModelCard, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Anomaly maps and image scores for a preprocessed batch (B,C,H,W) in [0,1]."""
    maps, scores = detector.score(images, card.score_smoothing)
    return maps.cpu().numpy(), scores.float().cpu().numpy()
