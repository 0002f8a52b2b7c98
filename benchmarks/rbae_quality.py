"""RB-AE quality benchmark with the paper's Table V ablation rows (not a CI test).

Trains RB-AE under a wall-clock budget for each row and seed, scores the dataset's test split with
the shared contract (``texinspect.prediction.predict`` + ``texinspect.evaluation.evaluate``, via
``benchmarks/common.py`` like ``quality.py``), prints the median over seeds and writes CSVs::

    python benchmarks/rbae_quality.py --data ../shared/datasets/magnetic_tile --minutes 15 \
        --seeds 0 1 2 --rows full no_rbam no_pixel_dis pixel_gap msfr ssim

Rows (the same training code, one config switch each; ``common.ROWS`` names in brackets):
  full          RB-AE as configured, profile ``cpu`` by default           (rbae)
  no_rbam       Table V column B: ``rbae.use_rbam=false``                  (rbae_no_rbam)
  no_pixel_dis  column C: ``rbae.use_pixel_dis=false``                     (rbae_no_pixel_dis)
  pixel_gap     column D: ``rbae.segmentation=pixel_gap``                  (rbae_pixel_gap)
  msfr          column E: ``rbae.segmentation=msfr``                       (rbae_msfr)
  ssim          column F: ``rbae.segmentation=ssim``                       (rbae_ssim)

Columns: image AUROC, pixel AUROC, AUPRO, image P/R/F1 and pixel F1 at the k-sigma thresholds
calibrated on held-out normal training images, steps trained, training wall time, milliseconds
for one 256 px anomaly map at batch 1, and the synthetic-defect AUROCs on held-out normals that
training recorded (the only signal hyper-parameters were tuned on). Test labels are only read to
report; nothing here feeds back into a choice of hyper-parameters.
"""

from __future__ import annotations

import argparse
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
    RunSettings,
    latency_stats,
    machine_info,
    median_table,
    print_table,
    resolve_device_name,
    row_config,
    score,
    setup_logging,
    time_calls,
    train_row,
    write_outputs,
)

from texinspect.models.artifact import load_detector  # noqa: E402

ABLATIONS: dict[str, str] = {
    "full": "rbae",
    "no_rbam": "rbae_no_rbam",
    "no_pixel_dis": "rbae_no_pixel_dis",
    "pixel_gap": "rbae_pixel_gap",
    "msfr": "rbae_msfr",
    "ssim": "rbae_ssim",
}
COLUMNS = [
    "image_auroc",
    "pixel_auroc",
    "aupro",
    "precision",
    "recall",
    "f1",
    "pixel_f1",
    "steps",
    "train_wall_s",
    "infer_ms_256",
    "synthetic_image_auroc",
    "synthetic_pixel_auroc",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="dataset in MVTec layout (default: %(default)s)")
    p.add_argument("--minutes", type=float, default=15.0, help="training budget per run (train.max_minutes)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rows", nargs="+", default=list(ABLATIONS), choices=list(ABLATIONS))
    p.add_argument("--profile", default="cpu", help="params.yaml profile (default: cpu)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every row")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--threads", type=int, default=2, help="torch threads (default 2, the CPU targets' machine)"
    )
    p.add_argument("--out", default="benchmarks/runs/rbae_quality", help="run folders (ignored by git)")
    p.add_argument("--results", default="benchmarks/results", help="rbae_quality.{csv,md,json} go here")
    p.add_argument("--keep", action="store_true", help="keep checkpoints and maps of every run")
    return p.parse_args(argv)


def inference_ms(model_dir: Path, device: str, side: int = 256) -> float:
    """Median milliseconds for one full ``side`` px anomaly map at batch 1."""
    detector, card = load_detector(model_dir, device)
    x = torch.rand(1, card.channels, side, side, device=device)
    with torch.inference_mode():
        times = time_calls(lambda: detector.anomaly_map(x), repeats=20, warmup=3, cuda=x.is_cuda)
    return latency_stats(times)["median_ms"]


def run_one(name: str, seed: int, settings: RunSettings, out: Path, keep: bool) -> dict[str, Any]:
    row = ROWS[ABLATIONS[name]]
    config = row_config(row, settings, seed)
    run_dir = out / name / f"seed{seed}"
    trained = train_row(row, config, run_dir, settings)
    metrics = score(row, trained.model_dir, settings.data, run_dir / "pred", config, keep_maps=keep)
    result: dict[str, Any] = {
        "row": name,
        "seed": seed,
        **{m: metrics.get(m) for m in QUALITY_METRICS},
        "steps": trained.steps,
        "train_wall_s": round(trained.wall_s, 1),
        "infer_ms_256": round(inference_ms(trained.model_dir, resolve_device_name(settings.device)), 1),
        **trained.synthetic,
    }
    for phase, info in trained.phases.items():
        result[f"{phase}_steps_per_s"] = info["steps"] / info["seconds"] if info["seconds"] else float("nan")
    if not keep:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    torch.set_num_threads(args.threads)
    settings = RunSettings(
        data=args.data,
        minutes=args.minutes,
        profile=args.profile,
        overrides=list(args.set),
        device=args.device,
        threads=args.threads,
    )
    out, results = Path(args.out), Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    for name in args.rows:
        for seed in args.seeds:
            runs.append(run_one(name, seed, settings, out, args.keep))
            pd.DataFrame(runs).to_csv(results / "rbae_quality_runs.csv", index=False)
    table = median_table(pd.DataFrame(runs), [*COLUMNS, "phase1_steps_per_s", "phase2_steps_per_s"])
    meta = {**machine_info(args.threads), "minutes": args.minutes, "seeds": args.seeds, "data": args.data}
    csv = write_outputs(table, results, "rbae_quality", meta)
    print_table(f"RB-AE on {args.data}, {args.minutes:g} min per run, median over seeds {args.seeds}:", table)
    print(f"\nmedians: {csv}  runs: {results / 'rbae_quality_runs.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
