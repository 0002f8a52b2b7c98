"""The ``texinspect`` command line: ``main`` and one module per command group, each only parsing
arguments, calling library functions and printing; ``common`` holds the shared options and errors."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from texinspect.cli import (
    data,
    evaluate,
    export,
    fmrnet,
    pipeline,
    serving,
    synthesis,
    tracking,
    train,
    tuning,
)
from texinspect.cli.common import run_handler

# Command groups in the order their commands appear in ``texinspect --help``.
COMMAND_GROUPS = [train, data, synthesis, fmrnet, evaluate, tracking, serving, pipeline, tuning, export]

DESCRIPTION = "``texinspect`` command line: parses arguments and calls one stage function each."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="texinspect", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    return run_handler(args.func, args)
