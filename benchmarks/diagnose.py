"""One-thing-at-a-time diagnosis at step budgets: synthetic validation beside the test split.

Each *variant* is a name plus config overrides on top of a family's profile. Every variant is
trained on every ``--data`` surface for every seed with the same step budgets (``--steps1``,
``--steps2``; no wall clock, so a rerun of a seed reproduces), then measured twice:

- on the shared synthetic-defect validation set (``texinspect.training.validation``: held-out normal
  training images with seeded artificial defects), the only signal choices are made on;
- on the surface's test split by ``predict`` + ``evaluate`` (reported, never chosen on).

One line per run goes to ``--csv`` as runs finish, and a table is printed at the end::

    python benchmarks/diagnose.py --family rbae --steps1 150 --steps2 450 \\
        --variant paper: --variant unet:rbae.segmentation=pixel_unet \\
        --data ../shared/datasets/magnetic_tile ../shared/datasets/elpv/mono --seeds 0

``--yardstick NAME:key=value,...`` adds another synthetic set (the profile with those synthesis
overrides; columns ``NAME_image``, ``NAME_pixel``, ``NAME_aupro``), so that a variant that changes
the synthesis is not judged only by a set drawn from its rival's synthesizer; ``--reuse`` measures
the models of earlier runs again without training (with ``--rescore``: only the rescored rows).
``selection.py`` then says which set ranks the models as the test split does.

Issue 17's diagnosis tables in ``models/*/README.md`` come from this script (commands in
``benchmarks/results/<date>/COMMANDS.md``).
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    Row,
    RunSettings,
    derive_model,
    read_train_summary,
    row_config,
    score,
    setup_logging,
    surface_name,
)

from texinspect.config import Config
from texinspect.models import family_module
from texinspect.training.validation import synthetic_validation

log = logging.getLogger("benchmarks.diagnose")
SHOWN = ["variant", "surface", "seed", "steps", "train_s", "syn_image", "syn_pixel", "syn_aupro",
         "test_image", "test_pixel", "test_aupro"]


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``name:key=value,key=value`` -> (name, overrides); ``name:`` has none. Commas inside ``[...]``
    belong to a list value (``rbae.widths=[16,32,64,128,128]``)."""
    name, _, rest = text.partition(":")
    if not name:
        raise SystemExit(f"--variant '{text}': expected NAME:key=value,... (NAME: for none)")
    return name, [item for item in re.split(r",(?![^\[]*\])", rest) if item]


def run_one(
    family: str, name: str, overrides: list[str], data: str, seed: int, args: argparse.Namespace
) -> list[dict[str, Any]]:
    surface = surface_name(data)
    run_dir = Path(args.out) / family / name / surface.replace("/", "_") / f"seed{seed}"
    reuse = args.reuse and (run_dir / "model").is_dir()
    if not reuse:
        shutil.rmtree(run_dir, ignore_errors=True)
    settings = RunSettings(data=data, minutes=0.0, profile=args.profile or None, threads=args.threads,
                           overrides=[*args.set, "tracking.enabled=false"],
                           steps_phase1=args.steps1, steps_phase2=args.steps2)
    row = Row(name, family, tuple(overrides))
    config = row_config(row, settings, seed)
    # The yardsticks: the profile's own synthetic set ("syn"), plus any --yardstick set (the profile
    # with that set's synthesis overrides). A variant that changes synthesis.* trains on other defects
    # but is measured on the same images and masks as every other variant.
    yardsticks = {"syn": row_config(Row(name, family, ()), settings, seed)}
    for text in args.yardstick:
        label, extra = parse_variant(text)
        yardsticks[label] = row_config(Row(name, family, tuple(extra)), settings, seed)
    t0 = time.perf_counter()
    if reuse:  # --reuse: the weights of an earlier run of this variant, only (re-)measured
        model_dir = run_dir / "model"
        log.info("reusing %s (not trained again)", model_dir)
    else:
        model_dir = family_module(family).train(config, run_dir, resume=False)
    train_s = float("nan") if reuse else time.perf_counter() - t0
    steps, _ = read_train_summary(run_dir, config.train.batch_size)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    results = [] if reuse and args.rescore else [measure(row, model_dir, config, yardsticks, data, run_dir / "pred", args.val_images)]
    for text in args.rescore:  # inference-only variants of the same weights
        sub, extra = parse_variant(text)
        derived = derive_model(model_dir, extra, run_dir / f"model_{sub}", config)
        results.append({**measure(row, derived, config, yardsticks, data, run_dir / f"pred_{sub}", args.val_images),
                        "variant": f"{name}+{sub}", "overrides": " ".join([*overrides, *extra])})
    common = {"variant": name, "surface": surface, "seed": seed, "steps": steps, "train_s": round(train_s, 1),
              "overrides": " ".join(overrides)}
    return [{**common, **result} for result in results]


def measure(
    row: Row, model_dir: Path, config: Config, yardsticks: dict[str, Config], data: str, pred_dir: Path, val_images: int
) -> dict[str, Any]:
    """Each synthetic yardstick (``<name>_image``, ``_pixel``, ``_aupro``) and the test split (reported only)."""
    result: dict[str, Any] = {}
    for label, yardstick in yardsticks.items():
        syn = synthetic_validation(model_dir, yardstick, n_images=val_images)
        result.update({f"{label}_image": syn["image_auroc"], f"{label}_pixel": syn["pixel_auroc"], f"{label}_aupro": syn["aupro"]})
    test = score(row, model_dir, data, pred_dir, config)
    return {**result, "test_image": test.get("image_auroc"), "test_pixel": test.get("pixel_auroc"), "test_aupro": test.get("aupro")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", required=True, choices=["rbae", "fmrnet", "aessim"])
    p.add_argument("--variant", action="append", required=True, help="NAME:key=value,... (repeatable)")
    p.add_argument("--data", nargs="+", default=["../shared/datasets/magnetic_tile"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--steps1", type=int, required=True, help="train.max_steps_phase1")
    p.add_argument("--steps2", type=int, required=True, help="train.max_steps_phase2")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--set", action="append", default=[], help="override for every variant")
    p.add_argument("--rescore", action="append", default=[], help="NAME:key=value,... inference-only variant of every model")
    p.add_argument("--yardstick", action="append", default=[],
                   help="NAME:key=value,... another synthetic validation set: the profile with these synthesis overrides")
    p.add_argument("--reuse", action="store_true",
                   help="a variant whose run folder already has model/ is not trained again; with --rescore only the rescored rows are measured")
    p.add_argument("--val-images", type=int, default=80, help="synthetic validation images (half get a defect)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/runs/diagnose")
    p.add_argument("--csv", default="benchmarks/runs/diagnose/diagnose.csv")
    args = p.parse_args(argv)
    setup_logging()
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for data in args.data:
            for text in args.variant:
                name, overrides = parse_variant(text)
                log.info("=== %s %s seed %d: %s", args.family, name, seed, overrides)
                rows.extend(run_one(args.family, name, overrides, data, seed, args))
                pd.DataFrame(rows).to_csv(args.csv, index=False)
    frame = pd.DataFrame(rows)
    print(frame[SHOWN].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
