"""Quality benchmark: every model and ablation under the same budget, one table per surface.

Each row (``benchmarks/common.py: ROWS``; a family plus config overrides) is trained on the
dataset's ``train/good`` for ``--minutes`` per seed (or, reproducible on any machine, the step
budgets ``--steps-phase1/--steps-phase2``, and ``--reference-steps`` for the ``reference`` row), at
the same image size, with the same seeds, then scored on its test split by texinspect's own
``predict`` + ``evaluate`` (the DRAEM peer writes the same prediction files from its own venv; the
``reference`` row, the outside DRAEM-lite, from a subprocess). ``--data`` takes several datasets
(surfaces): every row runs on each, and the tables have a ``surface`` column. On a dataset with
image labels only (ELPV) the pixel metrics are NaN, ``n/a`` in the printed medians. Printed: the median over seeds of image AUROC,
pixel AUROC, AUPRO, image and pixel precision / recall / F1 at the k-sigma thresholds (calibrated
on held-out normal training images), steps trained, wall time, training images/s and, where the
family records it, its AUROC on synthetic defects drawn on held-out normals (the only signal
hyper-parameters may be tuned on)::

    python benchmarks/quality.py --minutes 15 --seeds 0 1 2            # every row, ~4 h per seed
    python benchmarks/quality.py --rows rbae fmrnet aessim draem --minutes 2 --seeds 0
    python benchmarks/quality.py --rows 'rbae*' --csv benchmarks/results/rbae.csv
    python benchmarks/quality.py --rows rbae fmrnet reference --seeds 0 \
        --data ../shared/datasets/magnetic_tile ../shared/datasets/elpv/mono \
        --steps-phase1 600 --steps-phase2 600 --reference-steps 2600

Tables go to ``--results`` (default ``benchmarks/results``, kept in git so a later run can be
compared): ``quality.csv`` (or ``--csv``; medians), ``quality_runs.csv`` (one line per row and
seed, written as runs finish), ``quality.md`` and ``quality.json`` (machine, command, date). Run
folders go to ``--out`` (default ``benchmarks/runs/quality``, ignored by git); their
``<row>/seed<k>/model`` is kept for ``robustness.py --models-from`` (with several ``--data``:
``<surface>/<row>/seed<k>``, ``/`` in the surface name written as ``_``).
Test labels are only read to report; nothing here feeds back into a choice of hyper-parameters.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DEFAULT_DATA,
    QUALITY_METRICS,
    ROWS,
    Row,
    RunSettings,
    Trained,
    machine_info,
    median_table,
    print_table,
    row_config,
    score,
    select_rows,
    setup_logging,
    spread_table,
    surface_name,
    train_row,
    training_order,
    write_outputs,
)

log = logging.getLogger("benchmarks.quality")
GROUP = ["surface", "row"]
COLUMNS = [*QUALITY_METRICS, "steps", "train_wall_s", "images_per_s", "synthetic_image_auroc", "synthetic_pixel_auroc"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", default=["all"], help=f"names or globs (default all): {', '.join(ROWS)}")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--minutes", type=float, default=15.0, help="wall-clock training budget per run (train.max_minutes)")
    p.add_argument("--steps-phase1", type=int, default=None, metavar="N",
                   help="step budget of phase 1 (train.max_steps_phase1; with it train.max_minutes=0)")
    p.add_argument("--steps-phase2", type=int, default=None, metavar="N",
                   help="step budget of phase 2 (train.max_steps_phase2; with it train.max_minutes=0)")
    p.add_argument("--reference-steps", type=int, default=None, metavar="N",
                   help="step budget of the reference row (draem_lite --steps; default: --minutes)")
    p.add_argument("--reference-size", type=int, default=None, metavar="PX",
                   help="the reference row's own input size (draem_lite --size; default its 128)")
    p.add_argument("--data", nargs="+", default=[DEFAULT_DATA], help="dataset(s) in MVTec layout; every row runs on each")
    p.add_argument("--image-size", type=int, default=None, help="data.image_size for every row (default: the config's)")
    p.add_argument("--profile", default="cpu", help="params.yaml profile (default cpu; '' for none)")
    p.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "params.yaml"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every row (repeatable)")
    p.add_argument("--out", default="benchmarks/runs/quality", help="run folders (models, predictions)")
    p.add_argument("--results", default="benchmarks/results", help="where the tables go")
    p.add_argument("--csv", default=None, help="medians CSV (default RESULTS/quality.csv)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the peer gets the same)")
    p.add_argument("--keep-maps", action="store_true", help="keep the predicted maps (default: metrics only)")
    p.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="RUNS_CSV",
        help="train nothing: build the table from the quality_runs.csv of earlier (e.g. parallel) runs",
    )
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace, data: str | None = None) -> RunSettings:
    return RunSettings(
        data=data or args.data[0],
        minutes=args.minutes,
        image_size=args.image_size,
        profile=args.profile or None,
        config_path=args.config,
        overrides=list(args.set),
        device=args.device,
        threads=args.threads,
        steps_phase1=args.steps_phase1,
        steps_phase2=args.steps_phase2,
        reference_steps=args.reference_steps,
        reference_size=args.reference_size,
    )


def budget_text(settings: RunSettings) -> str:
    """The training budget in words, for logs and table titles."""
    if settings.step_budget:
        text = f"steps {settings.steps_phase1 or '-'} + {settings.steps_phase2 or '-'} per run"
    else:
        text = f"{settings.minutes:g} min training per run"
    if settings.reference_steps:
        text += f", reference {settings.reference_steps} steps"
    return text


def images_per_s(phases: dict[str, dict[str, float]]) -> float:
    """Training images per second over all phases (each phase's own batch size)."""
    timed = [p for p in phases.values() if p["seconds"] > 0]
    seconds = sum(p["seconds"] for p in timed)
    return round(sum(p["images_per_s"] * p["seconds"] for p in timed) / seconds, 2) if seconds else float("nan")


def run_seed(rows: list[Row], settings: RunSettings, seed: int, root: Path, keep_maps: bool) -> list[dict[str, Any]]:
    """Train (or derive) every row needed for ``rows`` at ``seed``; score the selected ones."""
    trained: dict[str, Trained] = {}
    results = []
    for row in training_order(rows):
        config = row_config(row, settings, seed)
        run_dir = root / row.name / f"seed{seed}"
        log.info("=== %s on %s, seed %d, %s (%s)", row.name, surface_name(settings.data), seed, budget_text(settings), row.note)
        done = train_row(row, config, run_dir, settings, trained.get(row.derive_from or ""))
        trained[row.name] = done
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        if row not in rows:
            continue
        metrics = score(row, done.model_dir, settings.data, run_dir / "pred", config, keep_maps)
        results.append(
            {
                "surface": surface_name(settings.data),
                "row": row.name,
                "family": row.family,
                "seed": seed,
                **{m: metrics.get(m) for m in QUALITY_METRICS},
                "steps": done.steps,
                "train_wall_s": round(done.wall_s, 1),
                "images_per_s": images_per_s(done.phases),
                "synthetic_image_auroc": done.synthetic.get("synthetic_image_auroc", float("nan")),
                "synthetic_pixel_auroc": done.synthetic.get("synthetic_pixel_auroc", float("nan")),
                **{f"{name}_steps": p["steps"] for name, p in done.phases.items()},
                "image_size": config.data.image_size,
                "minutes": settings.minutes,
                "steps_budget": budget_text(settings),
                "threshold_source": metrics.get("threshold_source"),
                "overrides": " ".join(row.overrides),
                "derived_from": row.derive_from or "",
            }
        )
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    torch.set_num_threads(args.threads)
    rows = select_rows(args.rows)
    settings = settings_from(args)
    root, results = Path(args.out), Path(args.results)
    if args.steps_phase1 is None and args.steps_phase2 is None and args.minutes <= 0:
        log.warning("--minutes 0 without --steps-phase1/2: the config's epochs decide how long training runs")
    root.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    if args.merge:
        frame = pd.concat([pd.read_csv(path) for path in args.merge], ignore_index=True)
        if "surface" not in frame.columns:  # runs of a version without surfaces: one dataset
            frame.insert(0, "surface", surface_name(args.data[0]))
        runs = frame.to_dict("records")
        rows = [r for r in rows if r.name in set(frame["row"])]
        pd.DataFrame(runs).to_csv(results / "quality_runs.csv", index=False)
    for data in [] if args.merge else args.data:
        data_settings = settings_from(args, data)
        data_root = root if len(args.data) == 1 else root / surface_name(data).replace("/", "_")
        for seed in args.seeds:
            runs.extend(run_seed(rows, data_settings, seed, data_root, args.keep_maps))
            pd.DataFrame(runs).to_csv(results / "quality_runs.csv", index=False)
    frame = pd.DataFrame(runs)
    table = median_table(frame, COLUMNS, by=GROUP if "surface" in frame.columns else "row")
    meta = {**machine_info(args.threads), "minutes": args.minutes, "steps_phase1": args.steps_phase1,
            "steps_phase2": args.steps_phase2, "reference_steps": args.reference_steps, "seeds": args.seeds,
            "data": args.data, "profile": args.profile, "rows": [r.name for r in rows]}
    csv = write_outputs(table, results, "quality", meta, args.csv)
    spread = spread_table(frame, ["image_auroc", "pixel_auroc", "aupro"], by=GROUP if "surface" in frame.columns else "row")
    write_outputs(spread, results, "quality_spread", meta, results / "quality_spread.csv")
    size = runs[0]["image_size"] if runs else args.image_size
    surfaces = table.index.get_level_values("surface").unique() if "surface" in (table.index.names or []) else [None]
    for surface in surfaces:
        part = table if surface is None else table.xs(surface, level="surface")
        print_table(
            f"Quality on {surface or args.data[0]} at {size} px, {budget_text(settings)}, profile {args.profile or '-'}, "
            f"{args.threads} threads, median over seeds {args.seeds}:",
            part,
        )
    print_table("Median [min, max] over the seeds:", spread)
    print(f"\nruns: {results / 'quality_runs.csv'}  medians: {csv}  markdown: {results / 'quality.md'}, "
          f"{results / 'quality_spread.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
