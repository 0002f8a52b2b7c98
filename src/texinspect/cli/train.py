"""``texinspect train`` and ``texinspect predict``: the core commands, parsing and printing only.

The work is :func:`texinspect.training.runs.train_run` and :func:`texinspect.prediction.predict`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from texinspect.cli.common import add_config_args, config_from_args, set_data_root


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``predict`` to the texinspect CLI."""
    train = subparsers.add_parser("train", help="train a model (both phases) and write its artifact")
    train.add_argument("--model", choices=None, default=None, help="model family: rbae | fmrnet")
    train.add_argument("--data", default=None, help="dataset folder (MVTec layout); default data.root")
    train.add_argument("--out", required=True, help="run folder: checkpoints/, model/, summaries")
    train.add_argument("--no-resume", action="store_true", help="ignore checkpoints in --out")
    train.add_argument(
        "--phase",
        choices=["1", "2", "all"],
        default="all",
        help="1: stop after phase 1 (checkpointed); 2: continue a phase-1 folder to the model; all (default)",
    )
    train.add_argument("--no-track", action="store_true", help="do not log this run to MLflow")
    add_config_args(train)
    train.set_defaults(func=run_train)

    pred = subparsers.add_parser("predict", help="score images: scores.csv + maps/*.npy")
    pred.add_argument("--model", required=True, help="model folder written by train (…/model)")
    pred.add_argument("--data", required=True, help="dataset folder (its test split) or a folder of images")
    pred.add_argument("--out", required=True, help="output folder")
    pred.add_argument("--batch-size", type=int, default=8)
    pred.add_argument("--device", default=None)
    pred.set_defaults(func=run_predict)


def run_train(args: argparse.Namespace) -> int:
    """Handler of ``texinspect train``."""
    from texinspect.training.loop import phase_dir
    from texinspect.training.runs import train_run

    config = config_from_args(args, [f"model={args.model}"] if args.model else [])
    set_data_root(config, args.data)
    outcome = train_run(config, args.out, args.phase, resume=not args.no_resume)
    if args.phase == "1":
        if outcome.model_dir is None:
            print(f"phase 1 complete: checkpoints in {phase_dir(outcome.out)}")
        else:
            print(f"{config.model} has no separate phase 1 with this config: trained to the end in {outcome.out}")
        return 0
    print(f"model written to {outcome.model_dir}")
    if not args.no_track and config.tracking.enabled:
        from texinspect.tracking import log_finished_run  # deferred: mlflow (the tracking extra) is optional

        log_finished_run(config, outcome)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Handler of ``texinspect predict``."""
    from texinspect.prediction import predict

    table = predict(args.model, args.data, args.out, device=args.device or "auto", batch_size=args.batch_size)
    print(f"{len(table)} images scored -> {Path(args.out) / 'scores.csv'}")
    return 0
