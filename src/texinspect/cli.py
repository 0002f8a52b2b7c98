"""``texinspect`` command line: parses arguments and calls one stage function each.

The same commands are what `dvc.yaml` stages and the Kubeflow components run, so there is one
implementation of every stage. Errors meant for people (bad data, bad config, a corrupt
checkpoint, a full disk or a read-only output folder) print one line ``error: ...`` and exit 2
instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from texinspect.errors import ConfigError, TexinspectError
from texinspect.outputs import describe_os_error, is_environment_error

log = logging.getLogger("texinspect")

# Sub-command modules, each with ``add_parser(subparsers)``; imported when the CLI starts.
SUBCOMMAND_MODULES: list[str] = [
    "texinspect.data.cli",
    "texinspect.synthesis.cli",
    "texinspect.models.fmrnet.cli",
    "texinspect.evaluation_cli",
    "texinspect.tracking_cli",
    "texinspect.serving.cli",
    "texinspect.pipeline.cli",
    "texinspect.tuning_cli",
    "texinspect.export.cli",
]


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """The options every stage that reads params.yaml accepts."""
    parser.add_argument("--config", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one key, e.g. --set train.batch_size=4 (repeatable)",
    )
    parser.add_argument("--profile", default=None, help="named override set from params.yaml (e.g. cpu, smoke)")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:0")


def config_from_args(args: argparse.Namespace, extra: list[str] | None = None):  # -> Config
    """Load the config named by the common options, with ``extra`` overrides applied last."""
    from texinspect.config import load_config

    overrides = list(args.set or []) + list(extra or [])
    if getattr(args, "device", None):
        overrides.append(f"device={args.device}")
    return load_config(args.config, overrides, args.profile)


def _cmd_train(args: argparse.Namespace) -> int:
    from texinspect.models import family_module
    from texinspect.training.checkpoint import Checkpointer
    from texinspect.training.loop import StopAfterPhase, phase_dir, training_hooks

    extra = []
    if args.model:
        extra.append(f"model={args.model}")
    config = config_from_args(args, extra)
    if args.data:  # a path is not YAML-parsed: set it directly
        config.data.root = args.data
    out = Path(args.out)
    family = family_module(config.model)
    if args.phase == "1":
        with training_hooks(stop_after="phase1"):
            try:
                family.train(config, out, resume=not args.no_resume)
            except StopAfterPhase:
                print(f"phase 1 complete: checkpoints in {phase_dir(out)}")
                return 0
        print(f"{config.model} has no separate phase 1 with this config: trained to the end in {out}")
        return 0
    if args.phase == "2" and not Checkpointer(phase_dir(out)).has_phase_end("phase1"):
        raise ConfigError(
            f"{out}: phase 1 has not finished in this folder; run `texinspect train --phase 1 --out {out}` first"
        )
    model_dir = family.train(config, out, resume=not args.no_resume or args.phase == "2")
    print(f"model written to {model_dir}")
    from texinspect.training.distributed import is_main_process

    if config.tracking.enabled and not args.no_track and is_main_process():  # DDP: rank 0 logs the run
        from texinspect.tracking import track_training_run

        track_training_run(config, out, model_dir)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from texinspect.prediction import predict

    table = predict(args.model, args.data, args.out, device=args.device or "auto", batch_size=args.batch_size)
    print(f"{len(table)} images scored -> {Path(args.out) / 'scores.csv'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="texinspect", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model (both phases) and write its artifact")
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
    train.set_defaults(func=_cmd_train)

    pred = sub.add_parser("predict", help="score images: scores.csv + maps/*.npy")
    pred.add_argument("--model", required=True, help="model folder written by train (…/model)")
    pred.add_argument("--data", required=True, help="dataset folder (its test split) or a folder of images")
    pred.add_argument("--out", required=True, help="output folder")
    pred.add_argument("--batch-size", type=int, default=8)
    pred.add_argument("--device", default=None)
    pred.set_defaults(func=_cmd_predict)

    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module: surface it
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args.func(args) or 0)
    except TexinspectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a write outside texinspect.outputs: a full disk, no permission, ...
        if not is_environment_error(exc):
            raise
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: checkpoints written so far are kept; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
