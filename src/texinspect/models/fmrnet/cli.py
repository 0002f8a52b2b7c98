"""FMR-Net sub-commands: ``texinspect memory-bank`` and ``texinspect patch-scores``.

``memory-bank`` is the k-means stage between the two training phases as its own step (the
Kubeflow pipeline runs it separately; its file is reused by phase 2 without retraining).
``patch-scores`` is the multilevel detection of the paper (Sec. IV-F): patch-level results only
from the encoder and the memory bank (the early exit), or with ``--multilevel`` the pixel path
run only on the windows the patch level flags.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    from texinspect.cli import add_config_args

    bank = subparsers.add_parser(
        "memory-bank",
        help="FMR-Net: k-means memory bank over the latent codes of the normal training patches",
        description="Encode every sliding-window patch of the normal training images with a phase-1 "
        "encoder and store fmrnet.memory_size k-means centroids (Algorithm 1, lines 12-16).",
    )
    bank.add_argument(
        "--checkpoint",
        required=True,
        help="phase-1 checkpoint (.pt), a checkpoints/ folder, a training run folder, or a model folder",
    )
    bank.add_argument("--out", default=None, help="output file (default: <run folder>/memory_bank.pt)")
    bank.add_argument("--data", default=None, help="dataset folder (MVTec layout); default data.root")
    add_config_args(bank)
    bank.set_defaults(func=_cmd_memory_bank)

    patches = subparsers.add_parser(
        "patch-scores",
        help="FMR-Net: patch-level early-exit scores (encoder + memory bank only), optionally multilevel",
    )
    patches.add_argument("--model", required=True, help="FMR-Net model folder written by train")
    patches.add_argument(
        "--data", required=True, help="dataset folder (its test split) or a folder of images"
    )
    patches.add_argument("--out", required=True, help="output folder: patch_scores.csv, patches/*.npy")
    patches.add_argument(
        "--threshold", type=float, default=None, help="patch threshold (default: the calibrated one)"
    )
    patches.add_argument(
        "--multilevel",
        action="store_true",
        help="also write pixel maps (maps/*.npy) for flagged windows only",
    )
    patches.add_argument("--batch-size", type=int, default=8)
    patches.add_argument("--device", default=None)
    patches.set_defaults(func=_cmd_patch_scores)


def _default_bank_path(checkpoint: Path) -> Path:
    if checkpoint.is_file():
        run = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    elif checkpoint.name == "checkpoints":
        run = checkpoint.parent
    else:
        run = checkpoint
    from texinspect.models.fmrnet.memory_bank import MEMORY_FILE

    return run / MEMORY_FILE


def _cmd_memory_bank(args: argparse.Namespace) -> int:
    from texinspect.cli import config_from_args
    from texinspect.models.fmrnet.memory_bank import build_memory_bank

    config = config_from_args(args)
    if args.data:  # a path is not YAML-parsed
        config.data.root = args.data
    checkpoint = Path(args.checkpoint)
    out = Path(args.out) if args.out else _default_bank_path(checkpoint)
    if config.model != "fmrnet" and _is_fmrnet_source(checkpoint):
        # an FMR-Net run named with a params file whose `model` is another family (the repo
        # default is rbae): build its bank rather than overwrite it with an empty record
        print(f"{checkpoint} holds an FMR-Net; building its memory bank (config model was {config.model})")
        config.model = "fmrnet"
    if config.model != "fmrnet":
        # The pipeline's between-phase step is the same for every family; only FMR-Net has a
        # memory bank (RB-AE chooses its reference image at the start of phase 2). Write a record
        # saying so, so DVC/KFP stages have their declared output.
        from texinspect.errors import ModelError
        from texinspect.outputs import ensure_output_dir
        from texinspect.torch_files import load_torch_file, save_torch_file

        if out.exists() and "memory" in load_torch_file(
            out, f"{out}: not a texinspect memory bank or stage record, or corrupted; refusing to load it"
        ):
            raise ModelError(
                f"{out} is an FMR-Net memory bank; refusing to replace it with a {config.model} record"
            )
        ensure_output_dir(out.parent)
        save_torch_file({"family": config.model, "memory_bank": None}, out)
        print(f"{config.model} has no memory bank (nothing to build); wrote the stage record {out}")
        return 0
    path = build_memory_bank(config, checkpoint, out)
    print(f"memory bank ({config.fmrnet.memory_size} entries) written to {path}")
    return 0


def _is_fmrnet_source(source: Path) -> bool:
    """Whether ``source`` (run folder, checkpoint, model folder) holds an FMR-Net."""
    import yaml

    from texinspect.errors import TexinspectError
    from texinspect.models.fmrnet.memory_bank import phase1_checkpoint
    from texinspect.training.checkpoint import load_checkpoint

    if source.is_dir() and (source / "model.yaml").exists():
        return (yaml.safe_load((source / "model.yaml").read_text()) or {}).get("family") == "fmrnet"
    ckpt = phase1_checkpoint(source)
    if ckpt is None:
        return False
    try:
        state = load_checkpoint(ckpt)["modules"]["generator"]
    except (KeyError, TypeError, OSError, TexinspectError):
        return False
    return "memory" in state and "memory_ready" in state


def _cmd_patch_scores(args: argparse.Namespace) -> int:
    table = patch_scores(
        args.model,
        args.data,
        args.out,
        args.threshold,
        args.multilevel,
        args.device or "auto",
        args.batch_size,
    )
    print(f"{len(table)} images, patch-level results -> {Path(args.out) / 'patch_scores.csv'}")
    return 0


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
    import torch

    from texinspect.data.datasets import ImageDataset
    from texinspect.data.layout import records_for_prediction
    from texinspect.devices import resolve_device
    from texinspect.errors import DataError, ModelError
    from texinspect.models.artifact import load_detector
    from texinspect.models.fmrnet.network import FMRNet

    dev = resolve_device(device)
    detector, card = load_detector(model_dir, dev)
    if not isinstance(detector, FMRNet):
        raise ModelError(
            f"{model_dir}: patch-level scores exist for FMR-Net models only (this is {card.family})"
        )
    thr = float(detector.patch_threshold) if threshold is None else float(threshold)
    records = records_for_prediction(data_dir)
    if not records:
        raise DataError(f"{data_dir}: no images to score")
    dataset = ImageDataset(records, card.image_size, card.channels, cache=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    seconds = 0.0
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    with torch.inference_mode():
        for batch in loader:
            images = batch["image"].to(dev)
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
                label = int(batch["label"][k])
                rows.append(
                    {
                        "path": rel,
                        "score": float(grid.max()),
                        "flagged_patches": int((grid >= thr).sum()),
                        "patches": int(grid.size),
                        "label": label if label >= 0 else "",
                        "is_defect": bool(grid.max() >= thr),
                    }
                )
    table = pd.DataFrame(rows)
    table.to_csv(out / "patch_scores.csv", index=False)
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
    (out / "patch_scores.json").write_text(json.dumps(meta, indent=2))
    return table


def _save(path: Path, array: Any) -> None:
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array.astype(np.float32))
