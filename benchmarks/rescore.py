"""Re-score trained benchmark runs under inference-only overrides, without training again.

Each ``<out>/<row>/seed<k>/model`` listed in a ``quality_runs.csv`` is re-derived with ``--set``
overrides (e.g. an image-score rule or a modality; thresholds re-calibrated on the same held-out
normals), predicted and evaluated by the same code as ``quality.py``; training columns (steps,
wall time, images/s) are copied from the original runs. Writes ``quality_runs.csv`` and the
median tables into ``--results``::

    python benchmarks/rescore.py --runs-csv benchmarks/results/quality_runs.csv \\
        --rows 'fmrnet*' --set fmrnet.image_score=patch --results benchmarks/results/rescored
"""

from __future__ import annotations

import argparse
import fnmatch
import logging
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DEFAULT_DATA,
    QUALITY_METRICS,
    ROWS,
    derive_model,
    machine_info,
    median_table,
    print_table,
    score,
    setup_logging,
    write_outputs,
)

from texinspect.models.artifact import load_card  # noqa: E402

log = logging.getLogger("benchmarks.rescore")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs-csv", nargs="+", required=True, help="quality_runs.csv file(s) of the runs to re-score")
    p.add_argument("--out", default="benchmarks/runs/quality", help="the run folders of those runs (quality.py --out)")
    p.add_argument("--rows", nargs="+", default=["*"], help="row names or globs to re-score")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="inference-only override")
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--results", default="benchmarks/results/rescored")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    torch.set_num_threads(args.threads)
    runs = pd.concat([pd.read_csv(p) for p in args.runs_csv], ignore_index=True)
    picked = runs[[any(fnmatch.fnmatch(r, g) for g in args.rows) for r in runs["row"]]]
    if picked.empty:
        raise SystemExit(f"no runs match {args.rows} in {args.runs_csv}")
    out_rows = []
    for rec in picked.to_dict("records"):
        run_dir = Path(args.out) / rec["row"] / f"seed{rec['seed']}"
        base = run_dir / "model"
        if not (base / "model.yaml").exists():
            raise SystemExit(f"{base}: no model to re-score (was it trained with quality.py --out {args.out}?)")
        config = load_card(base).resolved_config().with_overrides(args.set)
        target = run_dir / "rescored_model"
        log.info("=== %s seed %s with %s", rec["row"], rec["seed"], " ".join(args.set))
        model_dir = derive_model(base, list(args.set), target, config)
        metrics = score(ROWS[rec["row"]], model_dir, args.data, run_dir / "pred_rescored", config)
        out_rows.append({**rec, **{m: metrics.get(m) for m in QUALITY_METRICS}, "rescored_with": " ".join(args.set)})
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(out_rows)
    frame.to_csv(results / "quality_runs.csv", index=False)
    columns = [c for c in frame.columns if c in (*QUALITY_METRICS, "steps", "train_wall_s", "images_per_s")]
    table = median_table(frame, columns)
    meta = {**machine_info(args.threads), "runs_csv": args.runs_csv, "overrides": args.set, "rows": args.rows}
    csv = write_outputs(table, results, "quality", meta)
    print_table(f"Re-scored with {' '.join(args.set)} (median over seeds):", table)
    print(f"\nruns: {results / 'quality_runs.csv'}  medians: {csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
