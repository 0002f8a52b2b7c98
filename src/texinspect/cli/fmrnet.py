"""FMR-Net sub-commands: ``texinspect memory-bank`` and ``texinspect patch-scores``.

``memory-bank`` is the k-means stage between the two training phases as its own step (the
Kubeflow pipeline runs it separately; its file is reused by phase 2 without retraining).
``patch-scores`` is the multilevel detection of the paper (Sec. IV-F): patch-level results only
from the encoder and the memory bank (the early exit), or with ``--multilevel`` the pixel path
run only on the windows the patch level flags. The work is in
:mod:`texinspect.models.fmrnet.bank_stage` and :mod:`texinspect.models.fmrnet.patch_scoring`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from texinspect.cli.common import add_config_args, config_from_args, set_data_root


def add_parser(subparsers: Any) -> None:
    """Add ``memory-bank`` and ``patch-scores`` to the texinspect CLI."""
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


def _cmd_memory_bank(args: argparse.Namespace) -> int:
    from texinspect.models.fmrnet.bank_stage import default_bank_path, memory_bank_stage, stage_family

    config = config_from_args(args)
    set_data_root(config, args.data)
    checkpoint = Path(args.checkpoint)
    out = Path(args.out) if args.out else default_bank_path(checkpoint)
    family = stage_family(config, checkpoint)
    if family != config.model:
        # an FMR-Net run named with a params file whose `model` is another family (the repo
        # default is rbae): build its bank rather than overwrite it with an empty record
        print(f"{checkpoint} holds an FMR-Net; building its memory bank (config model was {config.model})")
        config.model = family
    path = memory_bank_stage(config, checkpoint, out)
    if config.model != "fmrnet":
        print(f"{config.model} has no memory bank (nothing to build); wrote the stage record {out}")
    else:
        print(f"memory bank ({config.fmrnet.memory_size} entries) written to {path}")
    return 0


def _cmd_patch_scores(args: argparse.Namespace) -> int:
    from texinspect.models.fmrnet.patch_scoring import CSV_FILE, patch_scores

    table = patch_scores(
        args.model,
        args.data,
        args.out,
        args.threshold,
        args.multilevel,
        args.device or "auto",
        args.batch_size,
    )
    print(f"{len(table)} images, patch-level results -> {Path(args.out) / CSV_FILE}")
    return 0
