"""FMR-Net's multilevel detection over a folder of images (paper Sec. IV-F), written to disk.

Patch-level results come from the encoder and the memory bank only (the early exit); with
``multilevel`` the pixel path runs only on the windows the patch level flags. What
``texinspect patch-scores`` calls.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from texinspect.data.datasets import ImageDataset
from texinspect.data.layout import records_for_prediction
from texinspect.devices import resolve_device
from texinspect.errors import DataError, ModelError
from texinspect.models.artifact import load_detector
from texinspect.models.fmrnet.network import FMRNet

CSV_FILE = "patch_scores.csv"
META_FILE = "patch_scores.json"


def patch_scores(
    model_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    threshold: float | None = None,
    multilevel: bool = False,
    device: str = "auto",
    batch_size: int = 8,
):  # -> pandas.DataFrame
    """Write ``patch_scores.csv`` (path, max patch score, flagged windows, label), the per-window
    grids ``patches/<path>.npy`` and, with ``multilevel``, ``maps/<path>.npy`` for flagged windows."""
    import pandas as pd

    dev = resolve_device(device)
    detector, card = _load_fmrnet(model_dir, dev)
    thr = float(detector.patch_threshold) if threshold is None else float(threshold)
    loader = _loader(data_dir, card, batch_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, seconds = _score_batches(detector, loader, dev, thr, multilevel, out)
    table = pd.DataFrame(rows)
    table.to_csv(out / CSV_FILE, index=False)
    meta = {
        "family": card.family,
        "model_dir": str(model_dir),
        "data_dir": str(data_dir),
        "patch_threshold": thr,
        "multilevel": multilevel,
        "patch_size": detector.cfg.patch_size,
        "patch_stride": detector.cfg.patch_stride,
        "seconds": seconds,
        "ms_per_image": 1000.0 * seconds / max(1, len(rows)),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    return table


def _load_fmrnet(model_dir: str | Path, device: torch.device) -> tuple[Any, Any]:
    """(FMR-Net detector, model card) of ``model_dir``; a model of another family is an error."""

    detector, card = load_detector(model_dir, device)
    if not isinstance(detector, FMRNet):
        raise ModelError(f"{model_dir}: patch-level scores exist for FMR-Net models only (this is {card.family})")
    return detector, card


def _loader(data_dir: str | Path, card: Any, batch_size: int) -> torch.utils.data.DataLoader:
    records = records_for_prediction(data_dir)
    if not records:
        raise DataError(f"{data_dir}: no images to score")
    dataset = ImageDataset(records, card.image_size, card.channels, cache=False)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)


def _score_batches(
    detector: Any,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    thr: float,
    multilevel: bool,
    out: Path,
) -> tuple[list[dict[str, Any]], float]:
    """Score every batch, write its grids (and maps); the table rows and the seconds in the model."""
    rows: list[dict[str, Any]] = []
    seconds = 0.0
    with torch.inference_mode():
        for batch in loader:
            images = batch["image"].to(device)
            t0 = time.perf_counter()
            if multilevel:
                res = detector.multilevel_map(images, patch_threshold=thr)
                grids, maps = res.patch_scores, res.maps
            else:
                grids, maps = detector.patch_scores(images), None
            seconds += time.perf_counter() - t0
            for k, rel in enumerate(batch["rel"]):
                grid = grids[k].float().cpu().numpy()
                _save(out / "patches" / f"{rel}.npy", grid)
                if maps is not None:
                    _save(out / "maps" / f"{rel}.npy", maps[k].float().cpu().numpy())
                rows.append(_row(rel, grid, int(batch["label"][k]), thr))
    return rows, seconds


def _row(rel: str, grid: np.ndarray, label: int, thr: float) -> dict[str, Any]:
    return {
        "path": rel,
        "score": float(grid.max()),
        "flagged_patches": int((grid >= thr).sum()),
        "patches": int(grid.size),
        "label": label if label >= 0 else "",
        "is_defect": bool(grid.max() >= thr),
    }


def _save(path: Path, array: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array.astype(np.float32))
