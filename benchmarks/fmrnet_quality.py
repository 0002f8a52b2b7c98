"""FMR-Net quality benchmark: ablation rows (Table II), modality rows (Table III), speed (Sec. IV-F).

Trains FMR-Net under a wall-clock budget for each training row and seed, scores the dataset's
test split with the shared contract (``texinspect.prediction.predict`` +
``texinspect.evaluation.evaluate``) and prints one table (median over seeds) beside the paper's
MAGtile row of Table V, plus CSVs of every run and of the medians::

    python benchmarks/fmrnet_quality.py --data ../shared/datasets/magnetic_tile --minutes 15 \\
        --seeds 0 1 2 --rows full no_two_phase no_cmfm no_gfrm gms ssim residual

Rows:
  full           FMR-Net as configured (profile ``cpu`` by default)
  no_two_phase   Table II column B: ``fmrnet.two_phase=false`` (phase 2 never sees defects)
  no_cmfm        column C: ``fmrnet.use_cmfm=false`` (no C_A / latent loss / addressing)
  no_gfrm        column D: ``fmrnet.use_gfrm=false`` (plain skips on the two deepest paths)
  gms|ssim|residual  Table III single modalities: the ``full`` model of the same seed (trained
                 once), its map from that modality alone, thresholds re-calibrated on the same
                 held-out normal images.

Speed: median milliseconds at batch 1 for one ``--side`` px image through the pixel path
(``anomaly_map``) and the patch-level early exit (``patch_scores``), and their ratio (the paper
reports 1-2 ms vs 7-8 ms on a GPU). Test labels are only read to report; nothing here feeds back
into a choice of hyper-parameters (the table also shows the synthetic-defect AUROC on held-out
normal images, the signal that may be tuned on).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from texinspect.calibration import calibrate
from texinspect.config import Config, load_config
from texinspect.data.datasets import ImageDataset, split_train_val
from texinspect.data.layout import scan_dataset
from texinspect.evaluation import evaluate
from texinspect.models.artifact import load_card, load_detector, save_detector
from texinspect.models.fmrnet import train
from texinspect.prediction import predict
from texinspect.training.common import VAL_FRACTION

TRAINED_ROWS: dict[str, list[str]] = {
    "full": [],
    "no_two_phase": ["fmrnet.two_phase=false"],
    "no_cmfm": ["fmrnet.use_cmfm=false"],
    "no_gfrm": ["fmrnet.use_gfrm=false"],
}
MODALITY_ROWS = ("gms", "ssim", "residual")
ROWS = [*TRAINED_ROWS, *MODALITY_ROWS]
PAPER_MAGTILE = {
    "pixel_precision": 0.612,
    "pixel_recall": 0.439,
    "pixel_f1": 0.511,
}  # Table V, FMR-Net, MAGtile
METRICS = ["image_auroc", "pixel_auroc", "aupro", "pixel_precision", "pixel_recall", "pixel_f1"]
COLUMNS = [
    *METRICS,
    "synthetic_image_auroc",
    "synthetic_pixel_auroc",
    "steps",
    "steps_per_s",
    "train_s",
    "pixel_ms",
    "patch_ms",
    "pixel_over_patch",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/datasets/magnetic_tile", help="dataset in MVTec layout")
    p.add_argument("--minutes", type=float, default=15.0, help="training budget per run (train.max_minutes)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rows", nargs="+", default=ROWS, choices=ROWS)
    p.add_argument("--profile", default="cpu", help="params.yaml profile (default: cpu)")
    p.add_argument("--config", default="params.yaml")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="extra override (repeatable)"
    )
    p.add_argument("--out", default="benchmarks/results/fmrnet_quality", help="run folders and CSVs go here")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--side", type=int, default=256, help="image side for the speed measurement")
    p.add_argument("--keep", action="store_true", help="keep checkpoints and maps (default: metrics only)")
    return p.parse_args(argv)


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _median_ms(fn: Any, x: torch.Tensor, repeats: int = 20, warmup: int = 3) -> float:
    times = []
    with torch.inference_mode():
        for i in range(repeats + warmup):
            t0 = time.perf_counter()
            fn(x)
            if x.is_cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def speed(model_dir: Path, device: str, side: int) -> dict[str, float]:
    """Pixel path vs patch-level early exit, batch 1, ``side`` x ``side`` px."""
    detector, card = load_detector(model_dir, device)
    x = torch.rand(1, card.channels, side, side, device=device)
    pixel = _median_ms(detector.anomaly_map, x)
    patch = _median_ms(detector.patch_scores, x)
    return {
        "pixel_ms": round(pixel, 2),
        "patch_ms": round(patch, 2),
        "pixel_over_patch": round(pixel / patch, 2),
    }


def modality_model(full_model: Path, modality: str, target: Path, config: Config, device: str) -> Path:
    """The full model with one modality as its map, thresholds re-calibrated on the held-out normals."""
    detector, card = load_detector(full_model, device)
    detector.cfg.modalities = [modality]
    card.config["fmrnet"]["modalities"] = [modality]
    index = scan_dataset(config.data.root)
    _, val_records = split_train_val(index.train, VAL_FRACTION, config.seed)
    val = ImageDataset(val_records, config.data.image_size, config.data.channels, cache=False)
    stats = calibrate(detector, val, config.eval, device)
    card.threshold = stats["threshold"]
    card.pixel_threshold = stats["pixel_threshold"]
    card.normal_score_mean = stats["normal_score_mean"]
    card.normal_score_std = stats["normal_score_std"]
    if target.exists():
        shutil.rmtree(target)
    return save_detector(detector.cpu(), card, target)


def measure(
    args: argparse.Namespace, model_dir: Path, run_dir: Path, config: Config, device: str
) -> dict[str, Any]:
    pred_dir = run_dir / "pred"
    predict(model_dir, args.data, pred_dir, device=device)
    metrics = evaluate(pred_dir, args.data, config.with_overrides({"eval.overlays": 0}).eval)
    result = {m: metrics.get(m) for m in METRICS}
    result.update(speed(model_dir, device, args.side))
    if not args.keep:
        shutil.rmtree(pred_dir / "maps", ignore_errors=True)
    return result


def run_seed(args: argparse.Namespace, seed: int, root: Path) -> list[dict[str, Any]]:
    device = _device(args.device)
    trained = [r for r in args.rows if r in TRAINED_ROWS]
    modality = [r for r in args.rows if r in MODALITY_ROWS]
    if modality and "full" not in trained:
        trained.insert(0, "full")  # the modality rows re-read the full model's reconstructions
    results = []
    for row in trained:
        overrides = [
            "model=fmrnet",
            f"data.root={args.data}",
            f"seed={seed}",
            f"train.max_minutes={args.minutes}",
            f"device={args.device}",
            "train.progress=false",
            *TRAINED_ROWS[row],
            *args.set,
        ]
        config = load_config(args.config, overrides, args.profile)
        run_dir = root / row / f"seed{seed}"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        logging.info("=== %s, seed %d, %.1f min", row, seed, args.minutes)
        t0 = time.perf_counter()
        model_dir = train(config, run_dir, resume=False)
        train_s = time.perf_counter() - t0
        summary = json.loads((run_dir / "train_summary.json").read_text())
        steps = summary["phase1_steps"] + summary["phase2_steps"]
        seconds = sum(p["seconds"] for p in summary["phases"].values())
        common = {
            "seed": seed,
            "steps": steps,
            "steps_per_s": round(steps / seconds, 3) if seconds else None,
            "train_s": round(train_s, 1),
            "synthetic_image_auroc": summary.get("synthetic_image_auroc"),
            "synthetic_pixel_auroc": summary.get("synthetic_pixel_auroc"),
        }
        if row in args.rows:
            results.append({"row": row, **common, **measure(args, model_dir, run_dir, config, device)})
        if row == "full":
            for name in modality:
                mdir = modality_model(model_dir, name, run_dir / f"model_{name}", config, device)
                sub = run_dir / name
                results.append({"row": name, **common, **measure(args, mdir, sub, config, device)})
        if not args.keep:
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    for seed in args.seeds:
        runs.extend(run_seed(args, seed, root))
        pd.DataFrame(runs).to_csv(root / "runs.csv", index=False)
    table = pd.DataFrame(runs)
    order = [r for r in ROWS if r in set(table["row"])]
    medians = table.groupby("row")[COLUMNS].median().reindex(order)
    medians.insert(0, "seeds", table.groupby("row")["seed"].count().reindex(order))
    paper = pd.DataFrame(
        [{**{c: float("nan") for c in medians.columns}, **PAPER_MAGTILE}], index=["paper MAGtile (Table V)"]
    )
    out = pd.concat([medians, paper])
    out.to_csv(root / "summary.csv")
    print(
        f"\nFMR-Net on {args.data}, {args.minutes:g} min training per run, profile {args.profile}, "
        f"{torch.get_num_threads()} threads, median over seeds {args.seeds}; pixel P/R/F1 at the k-sigma "
        f"threshold (eval.k_sigma) calibrated on held-out normal images:"
    )
    print(out.to_string(float_format=lambda v: f"{v:.3f}", na_rep="-"))
    card = load_card(next(root.glob("full/seed*/model"))) if any(root.glob("full/seed*/model")) else None
    if card is not None:
        print(
            f"(k = {card.resolved_config().eval.k_sigma:g}; patch path = encoder + nearest memory entry only)"
        )
    print(f"\nruns: {root / 'runs.csv'}  medians: {root / 'summary.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
