"""``texinspect sweep``: argument parsing only; the work is in :mod:`texinspect.tuning`.

    texinspect sweep --model rbae --trials 20 --out runs/sweep-rbae --profile cpu
    texinspect sweep --model rbae --out runs/sweep-rbae --report-only   # re-write report from storage

Rerunning the same command resumes the study (same --out, or the same --storage and study name).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from texinspect.cli.common import add_config_args


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``sweep`` sub-command to the texinspect CLI."""
    parser = subparsers.add_parser(
        "sweep",
        help="Optuna hyper-parameter sweep over the sweep: section of params.yaml",
        description=(
            "Run (or resume) an Optuna study over the search space in params.yaml (sweep.space.<model>). "
            "Trials are scored on synthetic defects drawn on held-out normal images (or a labelled "
            "validation folder named in sweep.validation.folder), never on the test labels."
        ),
    )
    parser.add_argument("--model", required=True, choices=["rbae", "fmrnet"], help="model family to tune")
    parser.add_argument("--trials", type=int, default=None, help="total trials of the study (default: sweep.trials); 0: create it only")
    parser.add_argument("--out", default=None, help="sweep folder: trials/, optuna.db, best_params.yaml, plots/ (default: runs/sweep-<model>)")
    parser.add_argument("--data", default=None, help="dataset folder (MVTec layout); default data.root")
    parser.add_argument("--storage", default=None, help="SQLAlchemy URL of the Optuna storage (default: $TEXINSPECT_SWEEP_STORAGE, else sweep.storage, else SQLite in --out)")
    parser.add_argument("--study-name", default=None, help="study name (default: sweep.study_name, else texinspect-<model>)")
    parser.add_argument("--worker-id", type=int, default=0, help="parallel workers on one storage: 0, 1, ... (seeds the sampler)")
    parser.add_argument("--worker-trials", type=int, default=None, help="run at most this many trials in this process")
    parser.add_argument("--report-only", action="store_true", help="run no trial: write best params, table and plots from the storage")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    add_config_args(parser)
    parser.set_defaults(func=_cmd_sweep)
    return parser


def _cmd_sweep(args: argparse.Namespace) -> int:
    from texinspect.tuning import plan_sweep, run_sweep

    overrides = list(args.set or [])
    if args.data:
        overrides.append(f"data.root={args.data}")
    if args.device:
        overrides.append(f"device={args.device}")
    out = Path(args.out or f"runs/sweep-{args.model}")
    plan = plan_sweep(
        args.config,
        args.model,
        out,
        trials=args.trials,
        profile=args.profile,
        overrides=overrides,
        storage=args.storage,
        study_name=args.study_name,
    )
    result = run_sweep(
        plan,
        worker_id=args.worker_id,
        worker_trials=0 if args.report_only else args.worker_trials,
        recover=args.worker_id == 0 and not args.report_only,
        plots=not args.no_plots,
    )
    summary = result.summary
    print(f"study {result.study} ({result.storage}): {json.dumps(summary.get('states', {}))}, ran {result.ran} here")
    best = summary.get("best")
    if best:
        print(f"best trial {best['trial']}: {summary.get('metric')} = {best['value']:.4f}  {json.dumps(best['overrides'])}")
        print(f"best params -> {result.best_params}  (texinspect train --config {result.best_params} --out runs/best)")
    else:
        print("no completed trial yet")
    print(f"report -> {out}")
    return 0
