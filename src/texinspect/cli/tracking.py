"""``texinspect register``: log a run folder to MLflow and pass its model through the quality gate.

Argument parsing only; the work is :func:`texinspect.tracking.track_training_run` and
:func:`texinspect.tracking.register_and_gate`. Also the way to log, later, a run trained while
the tracking server was unreachable (``RUN/tracking_offline.json`` names this command).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from texinspect.cli.common import add_config_args, config_from_args


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``register`` sub-command to the texinspect CLI."""
    parser = subparsers.add_parser(
        "register",
        help="log a run folder to MLflow, register its model, move the 'champion' alias if it is better",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="run folder written by `texinspect train` (model/, train_summary.json)")
    source.add_argument("--run-id", help="an MLflow run already logged (only register and gate it)")
    parser.add_argument("--model", default=None, help="model folder (default: RUN/model)")
    parser.add_argument("--metrics", default=None, help="metrics.json written by `texinspect evaluate`")
    parser.add_argument("--run-name", default=None, help="MLflow run name (default: the folder's name)")
    parser.add_argument("--no-gate", action="store_true", help="log the run only; do not register the model")
    parser.add_argument("--out", default=None, help="write the run id and gate decision to this JSON file")
    add_config_args(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Handler of ``texinspect register``; returns the exit code."""
    from texinspect.errors import ConfigError
    from texinspect.tracking import (
        TrackingUnavailable,
        register_and_gate,
        resolve_backend,
        track_training_run,
    )

    config = config_from_args(args)
    if not config.tracking.enabled:
        raise ConfigError("tracking.enabled is false: nothing to register (use --set tracking.enabled=true)")
    where = resolve_backend(config.tracking).tracking_uri
    run_id = args.run_id
    if args.run:
        run_id = track_training_run(config, args.run, args.model, args.metrics, args.run_name)
        if run_id is None:
            raise TrackingUnavailable(
                f"nothing logged: MLflow at {where} is not reachable (see {Path(args.run) / 'tracking_offline.json'}); "
                "the run folder is unchanged, rerun this command when the server is back"
            )
        print(f"logged {args.run} as MLflow run {run_id} in {where}")
    result: dict[str, Any] = {"run_id": run_id, "tracking_uri": where}
    if not args.no_gate:
        decision = register_and_gate(run_id, args.metrics, config)
        verdict = "promoted to champion" if decision.promoted else "not promoted"
        print(f"{decision.model_name} v{decision.version}: {verdict} ({decision.reason})")
        result["gate"] = decision.to_dict()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0
