"""What every ``texinspect`` command shares, declared once.

The ``--config/--set/--profile/--device`` group and the config it names, the ``--data`` override
of ``data.root``, and the error handling: errors meant for people (bad data, bad config, a
corrupt checkpoint, a full disk or a read-only output folder) print one line ``error: ...`` and
exit 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from texinspect.errors import TexinspectError
from texinspect.outputs import describe_os_error, is_environment_error

Handler = Callable[[argparse.Namespace], int | None]


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


def set_data_root(config: Any, data: str | None) -> None:
    """``--data DIR`` over ``data.root``; set directly, as a path is not YAML-parsed (a folder
    named "1" stays a string)."""
    if data:
        config.data.root = str(data)


def run_handler(func: Handler, args: argparse.Namespace) -> int:
    """Run a command's handler; errors meant for people print ``error: ...`` and return 2."""
    try:
        return int(func(args) or 0)
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
