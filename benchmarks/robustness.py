"""Robustness benchmark: FMR-Net's noise experiment (Figs. 11-12) for every model.

Speckle noise replaces each pixel of every test image by a uniform random value (per channel)
with probability p, for p in ``--ps`` (default 0, 0.05, 0.1, 0.2, 0.3); the masks are unchanged.
Every model, trained on the clean training images (here, or re-used from a ``quality.py`` run with
``--models-from``), is scored on each noisy copy of the test split by texinspect's ``predict`` +
``evaluate``; the noise is drawn once per p with a fixed seed, so every model sees the same
images. With ``fmrnet`` among the rows its single inspection modalities are added (GMS, SSIM,
residual: the trained model with one map, thresholds re-calibrated; ``fmrnet`` itself is the
fused map)::

    python benchmarks/robustness.py --minutes 15 --seeds 0 1 2
    python benchmarks/robustness.py --models-from benchmarks/results/quality --seeds 0 1 2

Tables go to ``--results`` (default ``benchmarks/results``): ``robustness.csv`` (or ``--csv``;
medians over seeds, one line per row and p), ``robustness_runs.csv``, ``robustness.md``,
``robustness.json`` and ``robustness.png`` (AUROC against p). Noisy copies, predictions and models
trained here go to ``--out`` (default ``benchmarks/runs/robustness``, ignored by git).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DEFAULT_DATA,
    MAIN_ROWS,
    ROWS,
    Row,
    RunSettings,
    Trained,
    machine_info,
    print_table,
    row_config,
    score,
    select_rows,
    setup_logging,
    train_row,
    training_order,
    write_outputs,
)

from texinspect.data.layout import GROUND_TRUTH, TEST, scan_test  # noqa: E402
from texinspect.errors import DataError, ModelError  # noqa: E402

log = logging.getLogger("benchmarks.robustness")
PS = [0.0, 0.05, 0.1, 0.2, 0.3]
NOISE_SEED = 20240511
MODALITY_ROWS = ["fmrnet_gms", "fmrnet_ssim", "fmrnet_residual"]
METRICS = ["image_auroc", "pixel_auroc", "aupro"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", default=MAIN_ROWS, help=f"names or globs: {', '.join(ROWS)}")
    p.add_argument("--ps", type=float, nargs="+", default=PS, help="speckle probabilities")
    p.add_argument("--no-modalities", action="store_true", help="do not add FMR-Net's single-modality rows")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--minutes", type=float, default=15.0, help="training budget when training here")
    p.add_argument("--models-from", default=None, help="a quality.py --out folder (benchmarks/runs/quality): re-use ROW/seedK/model")
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "params.yaml"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default="benchmarks/runs/robustness", help="noisy copies, predictions, models")
    p.add_argument("--results", default="benchmarks/results", help="where the tables and the plot go")
    p.add_argument("--csv", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--keep-noisy", action="store_true", help="keep the noisy test images")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- noise


def speckle(image: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 image (H, W) or (H, W, C): each pixel replaced with probability p by uniform values."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"speckle probability must be in [0, 1], got {p}")
    if image.dtype != np.uint8:
        raise ValueError(f"speckle expects a uint8 image, got {image.dtype}")
    hit = rng.random(image.shape[:2]) < p
    noise = rng.integers(0, 256, size=image.shape, dtype=np.uint8)
    out = image.copy()
    out[hit] = noise[hit]
    return out


def noisy_copy(data: Path, p: float, target: Path, seed: int = NOISE_SEED) -> Path:
    """``target``: the test split of ``data`` with speckle noise p (PNG), ground truth linked."""
    records = scan_test(data, require_masks=True)
    if not records:
        raise DataError(f"{data / TEST}: no test images to add noise to")
    if target.exists():
        shutil.rmtree(target)
    rng = np.random.default_rng([seed, int(round(p * 1000))])
    for rec in records:
        out = target / Path(rec.rel).with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(rec.path) as im:
            arr = np.asarray(im.convert("RGB" if im.mode not in ("L", "RGB") else im.mode))
        Image.fromarray(speckle(arr, p, rng)).save(out)
    if (data / GROUND_TRUTH).is_dir():  # datasets with image labels only have none
        (target / GROUND_TRUTH).symlink_to((data / GROUND_TRUTH).resolve(), target_is_directory=True)
    return target


# --------------------------------------------------------------------------- models


def rows_for(args: argparse.Namespace) -> list[Row]:
    rows = select_rows(args.rows)
    if not args.no_modalities and any(r.name == "fmrnet" for r in rows):
        rows += [ROWS[n] for n in MODALITY_ROWS if ROWS[n] not in rows]
    return rows


def models_for_seed(rows: list[Row], settings: RunSettings, seed: int, args: argparse.Namespace, root: Path) -> dict[str, Path]:
    """Model folder per row: re-used from ``--models-from`` when there, else trained / derived here."""
    trained: dict[str, Trained] = {}
    models: dict[str, Path] = {}
    for row in training_order(rows):
        config = row_config(row, settings, seed)
        if args.models_from:
            found = Path(args.models_from) / row.name / f"seed{seed}" / "model"
            if found.is_dir():
                models[row.name] = found
                trained[row.name] = Trained(row, seed, found, found.parent, float("nan"), 0)
                continue
            if not row.derive_from:
                raise ModelError(f"{found}: not found (run quality.py with --rows {row.name} --seeds {seed} first)")
        run_dir = root / "models" / row.name / f"seed{seed}"
        done = train_row(row, config, run_dir, settings, trained.get(row.derive_from or ""))
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        trained[row.name] = done
        models[row.name] = done.model_dir
    return models


# --------------------------------------------------------------------------- plot


def plot(table: pd.DataFrame, path: Path, title: str) -> None:
    """Image and pixel AUROC against p, one line per row (FMR-Net Figs. 11-12)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    for i, metric in enumerate(("image_auroc", "pixel_auroc")):
        ax = fig.add_subplot(1, 2, i + 1)
        for row, part in table.reset_index().groupby("row", sort=False):
            style = "--" if row in MODALITY_ROWS else "-"
            ax.plot(part["p"], part[metric], style, marker="o", label=row)
        ax.set(xlabel="speckle probability p", ylabel=metric.replace("_", " "), ylim=(0.0, 1.02))
        ax.grid(alpha=0.3)
    fig.axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    torch.set_num_threads(args.threads)
    rows = rows_for(args)
    settings = RunSettings(
        data=args.data, minutes=args.minutes, image_size=args.image_size, profile=args.profile or None,
        config_path=args.config, overrides=list(args.set), device=args.device, threads=args.threads,
    )
    root, results = Path(args.out), Path(args.results)
    root.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    noisy = {p: data if p == 0 else noisy_copy(data, p, root / "noisy" / f"p{p:g}") for p in args.ps}
    runs: list[dict[str, Any]] = []
    for seed in args.seeds:
        models = models_for_seed(rows, settings, seed, args, root)
        for row in rows:
            config = row_config(row, settings, seed)
            for p, folder in noisy.items():
                metrics = score(row, models[row.name], folder, root / "pred" / row.name / f"seed{seed}" / f"p{p:g}", config)
                runs.append({"row": row.name, "seed": seed, "p": p, **{m: metrics.get(m) for m in METRICS}})
                log.info("%s seed %d p=%g: image AUROC %.3f pixel AUROC %.3f", row.name, seed, p,
                         metrics["image_auroc"], metrics["pixel_auroc"])
            pd.DataFrame(runs).to_csv(results / "robustness_runs.csv", index=False)
    frame = pd.DataFrame(runs)
    grouped = frame.groupby(["row", "p"], sort=False)
    table = grouped[METRICS].median()
    table.insert(0, "seeds", grouped["seed"].count())
    meta = {**machine_info(args.threads), "ps": args.ps, "seeds": args.seeds, "minutes": args.minutes,
            "models_from": args.models_from, "noise_seed": NOISE_SEED}
    csv = write_outputs(table, results, "robustness", meta, args.csv)
    plot(table, results / "robustness.png", f"speckle noise on {data.name} test images, median over seeds {args.seeds}")
    wide = table[["image_auroc", "pixel_auroc"]].unstack("p")
    print_table(f"Image / pixel AUROC under speckle noise p (median over seeds {args.seeds}):", wide)
    print(f"\ntable: {csv}  plot: {results / 'robustness.png'}")
    if not args.keep_noisy:
        shutil.rmtree(root / "noisy", ignore_errors=True)
    shutil.rmtree(root / "pred", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
