"""What the benchmark scripts share: the rows, one way to train / score them, timing, tables.

A benchmark *row* is data: a model family plus config overrides (``Row``). Every row is trained
with its family's ``train(config, out_dir)`` under the same wall-clock budget, seed, data and
image size, and scored by the shared contract only: ``texinspect.prediction.predict`` (or the
peer's own process writing the same files) then ``texinspect.evaluation.evaluate``. So a metric
can differ between two rows only because the models differ.

Rows of three kinds:
- trained: ``family`` is a texinspect family (rbae, fmrnet, aessim) and ``overrides`` its ablation;
- derived: ``derive_from`` names a trained row whose model is re-used with inference-only
  overrides (FMR-Net's single modalities), thresholds re-calibrated on the same held-out normals;
- peer: ``family == "draem"``: anomalib's DRAEM, trained and run by ``benchmarks/peers/draem_peer.py``
  inside ``benchmarks/peers/.venv`` (``bash benchmarks/peers/setup.sh``);
- reference: ``family == "reference"``: the outside DRAEM-lite yardstick
  (``../shared/reference/draem_lite/draem_lite.py``, not part of the project), trained and run as
  a subprocess with the repository's own ``.venv`` python, same seed, ``--reference-steps`` (or
  the wall-clock budget). It writes ``scores.csv`` + ``maps/`` only (no ``prediction.json``), so
  ``evaluate`` derives its thresholds from the test split (``threshold_source``).

Budgets: ``RunSettings.minutes`` (``train.max_minutes``) or, reproducible on any machine, step
budgets ``steps_phase1`` / ``steps_phase2`` (``train.max_steps_phase1/2`` with
``train.max_minutes=0``) for texinspect rows and ``reference_steps`` for the reference row.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from texinspect.calibration import calibrate
from texinspect.config import Config, load_config
from texinspect.data.datasets import ImageDataset, split_train_val
from texinspect.data.layout import scan_dataset
from texinspect.errors import ConfigError, ModelError
from texinspect.evaluation import evaluate, markdown_table
from texinspect.models import family_module
from texinspect.models.artifact import load_card, save_detector
from texinspect.prediction import predict
from texinspect.training.common import VAL_FRACTION

log = logging.getLogger("benchmarks")

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO / "benchmarks" / "peers"
PEER_PYTHON = PEERS / ".venv" / "bin" / "python"
PEER_SCRIPT = PEERS / "draem_peer.py"
PEER_FAMILY = "draem"
REFERENCE_FAMILY = "reference"
REFERENCE_SCRIPT = REPO.parent / "shared" / "reference" / "draem_lite" / "draem_lite.py"
REFERENCE_PYTHON = REPO / ".venv" / "bin" / "python"
REFERENCE_BATCH = 8  # draem_lite's own default batch size (not passed, reported for images/s)
DEFAULT_DATA = "../shared/datasets/magnetic_tile"

# Metric columns every quality table shows (image P/R/F1 at the k-sigma image threshold, pixel
# P/R/F1 at the k-sigma pixel threshold, both calibrated on held-out normal training images).
QUALITY_METRICS = [
    "image_auroc",
    "pixel_auroc",
    "aupro",
    "precision",
    "recall",
    "f1",
    "pixel_precision",
    "pixel_recall",
    "pixel_f1",
]


@dataclass(frozen=True)
class Row:
    """One line of a benchmark table: a family and the overrides that make it this variant."""

    name: str
    family: str
    overrides: tuple[str, ...] = ()
    derive_from: str | None = None  # name of the trained row whose model this row re-uses
    note: str = ""

    @property
    def is_peer(self) -> bool:
        return self.family == PEER_FAMILY

    @property
    def is_reference(self) -> bool:
        return self.family == REFERENCE_FAMILY


ROWS: dict[str, Row] = {
    row.name: row
    for row in [
        Row("rbae", "rbae", note="RB-AE as configured"),
        Row("rbae_no_rbam", "rbae", ("rbae.use_rbam=false",), note="RB-AE Table V column B: no RBAM"),
        Row("rbae_no_pixel_dis", "rbae", ("rbae.use_pixel_dis=false",), note="column C: no pixel discrimination loss"),
        Row("rbae_pixel_gap", "rbae", ("rbae.segmentation=pixel_gap",), note="column D: pixel-gap segmentation"),
        Row("rbae_msfr", "rbae", ("rbae.segmentation=msfr",), note="column E: MSFR segmentation"),
        Row("rbae_ssim", "rbae", ("rbae.segmentation=ssim",), note="column F: SSIM segmentation"),
        Row("fmrnet", "fmrnet", note="FMR-Net as configured (--profile cpu: the whole-image pixel segmenter)"),
        Row("fmrnet_no_two_phase", "fmrnet", ("fmrnet.two_phase=false",), note="FMR-Net Table II column B"),
        Row("fmrnet_no_cmfm", "fmrnet", ("fmrnet.use_cmfm=false",), note="column C: no CMFM"),
        Row("fmrnet_no_gfrm", "fmrnet", ("fmrnet.use_gfrm=false",), note="column D: no GFRM"),
        Row("fmrnet_gms", "fmrnet", ("fmrnet.modalities=[gms]",), "fmrnet", "Table III: GMS map only (the paper's map: --profile '')"),
        Row("fmrnet_ssim", "fmrnet", ("fmrnet.modalities=[ssim]",), "fmrnet", "Table III: SSIM map only"),
        Row("fmrnet_residual", "fmrnet", ("fmrnet.modalities=[residual]",), "fmrnet", "Table III: residual only"),
        Row("aessim", "aessim", note="plain autoencoder, map 1 - SSIM (Bergmann et al. 2018)"),
        Row("draem", PEER_FAMILY, note="anomalib DRAEM (peer, own venv)"),
        Row("reference", REFERENCE_FAMILY, note="DRAEM-lite reference (outside tool, subprocess)"),
    ]
}
MAIN_ROWS = ["rbae", "fmrnet", "aessim", "draem"]  # one per model, for speed and robustness


def select_rows(patterns: Iterable[str], known: dict[str, Row] = ROWS) -> list[Row]:
    """Rows whose name matches any pattern (``all``, exact names, shell globs like ``rbae*``).

    Derived rows pull in the row they derive from (trained first, reported only if selected).
    """
    chosen: list[str] = []
    for pattern in patterns:
        names = list(known) if pattern == "all" else [n for n in known if fnmatch.fnmatchcase(n, pattern)]
        if not names:
            raise ConfigError(f"--rows: '{pattern}' matches no row (known: {', '.join(known)})")
        chosen += [n for n in names if n not in chosen]
    return [known[n] for n in chosen]


def training_order(rows: Sequence[Row], known: dict[str, Row] = ROWS) -> list[Row]:
    """``rows`` plus the bases of derived rows, bases first, otherwise in the given order."""
    out: list[Row] = []
    for row in rows:
        base = known[row.derive_from] if row.derive_from else None
        if base is not None and base not in out:
            out.append(base)
        if row not in out:
            out.append(row)
    return out


# --------------------------------------------------------------------------- configuration


@dataclass
class RunSettings:
    """What every row of one benchmark run shares."""

    data: str = DEFAULT_DATA
    minutes: float = 15.0
    image_size: int | None = None  # None: the config's data.image_size
    profile: str | None = "cpu"
    config_path: str = str(REPO / "params.yaml")
    overrides: list[str] = field(default_factory=list)  # applied to every row, after the row's own
    device: str = "auto"
    threads: int = 2
    steps_phase1: int | None = None  # step budgets (texinspect rows): set both, max_minutes becomes 0
    steps_phase2: int | None = None
    reference_steps: int | None = None  # the reference row's --steps (None: --minutes)
    reference_size: int | None = None  # the reference row's --size (None: its own default, 128)

    @property
    def step_budget(self) -> bool:
        return self.steps_phase1 is not None or self.steps_phase2 is not None


def surface_name(data: str | Path) -> str:
    """A dataset's short name for tables: the path below ``datasets/`` (``elpv/mono``), else its folder name."""
    parts = Path(os.path.normpath(os.fspath(data))).parts
    if "datasets" in parts[:-1]:
        last = len(parts) - 1 - parts[::-1].index("datasets")
        return "/".join(parts[last + 1 :])
    return parts[-1] if parts else str(data)


def row_config(row: Row, settings: RunSettings, seed: int) -> Config:
    """The row's config: params.yaml + profile + shared settings + the row's overrides."""
    overrides = [
        f"data.root={settings.data}",
        f"seed={seed}",
        f"train.max_minutes={settings.minutes}",
        f"device={settings.device}",
        "train.progress=false",
        "eval.overlays=0",
    ]
    if row.family in ("rbae", "fmrnet"):
        overrides.insert(0, f"model={row.family}")
    if settings.image_size:
        overrides.append(f"data.image_size={settings.image_size}")
    if settings.step_budget:
        overrides.append("train.max_minutes=0")
        for phase, steps in ((1, settings.steps_phase1), (2, settings.steps_phase2)):
            if steps is not None:
                overrides.append(f"train.max_steps_phase{phase}={steps}")
    return load_config(settings.config_path, [*overrides, *row.overrides, *settings.overrides], settings.profile)


def held_out_normals(config: Config) -> ImageDataset:
    """The normal training images every family holds out for threshold calibration."""
    index = scan_dataset(config.data.root)
    _, val = split_train_val(index.train, VAL_FRACTION, config.seed)
    return ImageDataset(val, config.data.image_size, config.data.channels, cache=False)


def resolve_device_name(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


# --------------------------------------------------------------------------- training


@dataclass
class Trained:
    """A trained (or derived) model of one row and seed, and what training cost."""

    row: Row
    seed: int
    model_dir: Path
    run_dir: Path
    wall_s: float
    steps: int
    phases: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> steps, seconds, images_per_s
    synthetic: dict[str, float] = field(default_factory=dict)  # synthetic-defect AUROCs, when recorded


def read_train_summary(run_dir: Path, batch_size: int) -> tuple[int, dict[str, dict[str, float]]]:
    """Total steps and per-phase steps / seconds / images per second from ``train_summary.json``."""
    path = run_dir / "train_summary.json"
    if not path.exists():
        raise ModelError(f"{path}: missing (training did not finish?)")
    summary = json.loads(path.read_text())
    phases: dict[str, dict[str, float]] = {}
    for name, info in summary.get("phases", {}).items():
        steps, seconds = int(info.get("steps", 0)), float(info.get("seconds", 0.0))
        batch = int(info.get("batch_size", batch_size))
        phases[name] = {
            "steps": steps,
            "seconds": seconds,
            "images_per_s": steps * batch / seconds if seconds > 0 else float("nan"),
        }
    return sum(int(p["steps"]) for p in phases.values()), phases


def synthetic_scores(run_dir: Path) -> dict[str, float]:
    """The synthetic-defect AUROCs on held-out normals a family recorded (the signal it may tune on)."""
    path = run_dir / "train_summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    return {k: float(summary[k]) for k in ("synthetic_image_auroc", "synthetic_pixel_auroc") if k in summary}


def train_row(row: Row, config: Config, run_dir: Path, settings: RunSettings, base: Trained | None = None) -> Trained:
    """Train (peer: in its venv) or derive the row's model into ``run_dir``; a fresh start."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    t0 = time.perf_counter()
    if row.derive_from:
        if base is None:
            raise ModelError(f"row {row.name} derives from {row.derive_from}, which was not trained first")
        model_dir = derive_model(base.model_dir, list(row.overrides), run_dir / "model", config)
        return Trained(row, config.seed, model_dir, run_dir, base.wall_s, base.steps, base.phases)  # no own synthetic AUROC
    if row.is_reference:
        return train_reference(row, config, run_dir, settings, t0)
    if row.is_peer:
        run_peer(
            [
                "train",
                "--data", str(config.data.root),
                "--out", str(run_dir),
                "--image-size", str(config.data.image_size),
                "--minutes", str(config.train.max_minutes),
                "--seed", str(config.seed),
                "--batch-size", str(config.train.batch_size),
                "--threads", str(settings.threads),
                "--texture-pool", str(config.synthesis.texture_pool),
                "--k-sigma", str(config.eval.k_sigma),
                "--score-smoothing", str(config.eval.score_smoothing),
                "--device", str(config.device),
            ]
        )
        model_dir = run_dir / "model"
    else:
        model_dir = family_module(row.family).train(config, run_dir, resume=False)
    wall = time.perf_counter() - t0
    steps, phases = read_train_summary(run_dir, config.train.batch_size)
    return Trained(row, config.seed, Path(model_dir), run_dir, wall, steps, phases, synthetic_scores(run_dir))


def train_reference(row: Row, config: Config, run_dir: Path, settings: RunSettings, t0: float) -> Trained:
    """Train the outside reference (draem_lite.py) into ``run_dir/ckpt.pt``; steps from the checkpoint."""
    ckpt = run_dir / "ckpt.pt"
    steps = settings.reference_steps
    run_reference(
        reference_train_command(
            config.data.root, ckpt, config.seed, settings.threads, steps, config.train.max_minutes, settings.reference_size
        )
    )
    wall = time.perf_counter() - t0
    done = int(torch.load(ckpt, map_location="cpu", weights_only=True).get("steps", 0))
    phase = {"steps": done, "seconds": wall, "images_per_s": done * REFERENCE_BATCH / wall if wall > 0 else float("nan")}
    return Trained(row, config.seed, ckpt, run_dir, wall, done, {"joint": phase})


def derive_model(base_model_dir: Path, overrides: list[str], target: Path, config: Config) -> Path:
    """The base model with inference-only ``overrides``, thresholds re-calibrated on held-out normals.

    ``eval.*`` overrides (``eval.score_smoothing``, ``eval.k_sigma``) take effect: calibration uses
    the new ``eval`` section and the card carries its score smoothing, which ``predict``, serving
    and the synthetic validation read from the card."""
    card = load_card(base_model_dir)
    base_config = card.resolved_config()
    new_config = base_config.with_overrides(overrides)
    detector = family_module(card.family).build(new_config)
    weights = torch.load(base_model_dir / "weights.pt", map_location="cpu", weights_only=True)
    try:
        detector.load_state_dict(weights)
    except RuntimeError as exc:
        raise ModelError(f"{overrides} change the network's weights, not only inference: {exc}") from exc
    device = torch.device(resolve_device_name(config.device))
    detector.to(device).eval()
    stats = calibrate(detector, held_out_normals(base_config), new_config.eval, device)
    card.config = new_config.to_dict()
    card.score_smoothing = new_config.eval.score_smoothing
    card.threshold = stats["threshold"]
    card.pixel_threshold = stats["pixel_threshold"]
    card.normal_score_mean = stats["normal_score_mean"]
    card.normal_score_std = stats["normal_score_std"]
    card.score_rule = detector.image_score_rule
    card.extra = {**card.extra, "derived_from": str(base_model_dir), "derived_overrides": overrides}
    if target.exists():
        shutil.rmtree(target)
    return save_detector(detector.cpu(), card, target)


# --------------------------------------------------------------------------- scoring


def predict_row(trained: Trained | Row, model_dir: Path, data: str | Path, pred_dir: Path, device: str = "auto") -> None:
    """Write ``scores.csv`` + ``maps/`` + ``prediction.json`` for ``data`` (the peer: in its venv)."""
    row = trained.row if isinstance(trained, Trained) else trained
    if pred_dir.exists():
        shutil.rmtree(pred_dir)
    if row.is_peer:
        run_peer(["predict", "--model", str(model_dir), "--data", str(data), "--out", str(pred_dir), "--device", device])
    elif row.is_reference:
        run_reference(reference_predict_command(model_dir, data, pred_dir, torch.get_num_threads()))
    else:
        predict(model_dir, data, pred_dir, device=device)


def score(
    row: Row, model_dir: Path, data: str | Path, pred_dir: Path, config: Config, keep_maps: bool = False
) -> dict[str, Any]:
    """Predict then evaluate with texinspect's metrics code; returns the metrics dict."""
    predict_row(row, model_dir, data, pred_dir, config.device)
    metrics = evaluate(pred_dir, data, config.eval)
    if not keep_maps:
        shutil.rmtree(pred_dir / "maps", ignore_errors=True)
    return metrics


# --------------------------------------------------------------------------- the peer


def peer_available() -> bool:
    return (PEERS / ".venv" / ".installed").exists() and PEER_PYTHON.exists()


def run_peer(args: list[str], capture: bool = False) -> str:
    """Run ``draem_peer.py`` in the peer venv; a clear error when the venv is missing."""
    if not peer_available():
        raise ModelError(
            f"the DRAEM peer needs its virtual environment {PEERS / '.venv'}: run `bash benchmarks/peers/setup.sh`"
        )
    cmd = [str(PEER_PYTHON), str(PEER_SCRIPT), *args]
    log.info("peer: %s", " ".join(cmd[1:]))
    done = subprocess.run(cmd, cwd=REPO, text=True, stdout=subprocess.PIPE if capture else None)
    if done.returncode != 0:
        raise ModelError(f"DRAEM peer failed (exit {done.returncode}): {' '.join(args[:1])}; see its log above")
    return done.stdout or ""


# --------------------------------------------------------------------------- the reference (outside tool)


def reference_python() -> str:
    """The repository's own ``.venv`` python (the one running this script where that is absent)."""
    return str(REFERENCE_PYTHON) if REFERENCE_PYTHON.exists() else sys.executable


def reference_train_command(
    data: str | Path, ckpt: Path, seed: int, threads: int, steps: int | None, minutes: float, size: int | None = None
) -> list[str]:
    """``draem_lite.py train``: a step budget when ``steps`` is given, else the wall-clock one."""
    budget = ["--steps", str(steps)] if steps else ["--minutes", f"{minutes:g}"]
    if size:
        budget += ["--size", str(size)]
    if not steps and minutes <= 0:
        raise ConfigError("the reference row needs --reference-steps or a wall-clock budget (--minutes > 0)")
    return [
        reference_python(), str(REFERENCE_SCRIPT), "train", "--data", str(data), "--out", str(ckpt),
        *budget, "--seed", str(seed), "--threads", str(threads),
    ]


def reference_predict_command(ckpt: Path, data: str | Path, pred_dir: Path, threads: int) -> list[str]:
    """``draem_lite.py predict``: writes ``scores.csv`` + ``maps/`` (no ``prediction.json``)."""
    return [
        reference_python(), str(REFERENCE_SCRIPT), "predict", "--ckpt", str(ckpt), "--data", str(data),
        "--out", str(pred_dir), "--threads", str(threads),
    ]


def run_reference(cmd: list[str]) -> None:
    """Run a draem_lite.py command as a subprocess from the repository root; ModelError on failure."""
    if not REFERENCE_SCRIPT.is_file():
        raise ModelError(f"{REFERENCE_SCRIPT}: reference detector not found (expected ../shared/reference/draem_lite)")
    log.info("reference: %s", " ".join(cmd[1:]))
    done = subprocess.run(cmd, cwd=REPO, text=True, check=False)
    if done.returncode != 0:
        raise ModelError(f"reference (draem_lite.py {cmd[2]}) failed (exit {done.returncode}); see its log above")


# --------------------------------------------------------------------------- timing


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 2, cuda: bool = False) -> list[float]:
    """Milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    times: list[float] = []
    for i in range(warmup + repeats):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000.0)
    return times


def latency_stats(times_ms: Sequence[float], per: int = 1) -> dict[str, float]:
    """Median and 90th percentile of per-item milliseconds (batch time / ``per``)."""
    arr = np.asarray(times_ms, dtype=float) / max(1, per)
    return {"median_ms": float(np.median(arr)), "p90_ms": float(np.percentile(arr, 90))}


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MiB (Linux ru_maxrss is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --------------------------------------------------------------------------- reporting


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """Where and when the numbers were taken, for the README and the CSV side files."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True, capture_output=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": threads if threads is not None else torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
        "git_commit": commit,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
    }


def median_table(runs: pd.DataFrame, columns: Sequence[str], by: str | Sequence[str] = "row") -> pd.DataFrame:
    """Median over seeds of ``columns`` per ``by`` (order of first appearance) plus the seed count.

    NaN (a metric the data cannot give, e.g. pixel metrics without masks) is left out of a
    median; a column that is NaN for every seed stays NaN ("n/a" in the printed tables).
    """
    cols = [c for c in columns if c in runs.columns]
    runs = runs.copy()
    for col in cols:  # None (JSON null) -> NaN, so that all-missing columns stay numeric
        runs[col] = pd.to_numeric(runs[col], errors="coerce")
    grouped = runs.groupby(by, sort=False)
    table = grouped[cols].median(numeric_only=True).reindex(columns=cols)
    table.insert(0, "seeds", grouped["seed"].count() if "seed" in runs.columns else 1)
    for col in ("steps", *(c for c in cols if c.endswith("_steps"))):
        if col in table.columns and table[col].notna().all() and (table[col] % 1 == 0).all():
            table[col] = table[col].astype(int)  # counts stay counts in the tables
    return table


def spread_table(runs: pd.DataFrame, columns: Sequence[str], by: str | Sequence[str] = "row") -> pd.DataFrame:
    """``median [min, max]`` over seeds of ``columns`` per ``by``: the seed spread beside the median.

    With three seeds a 95 % interval of the median is not defined in any useful sense; the range
    over the seeds is what the runs can say, so that is what the tables show ("n/a" where a
    metric is missing for every seed).
    """
    cols = [c for c in columns if c in runs.columns]
    runs = runs.copy()
    for col in cols:
        runs[col] = pd.to_numeric(runs[col], errors="coerce")
    grouped = runs.groupby(by, sort=False)
    med, low, high = (grouped[cols].agg(f) for f in ("median", "min", "max"))

    def cell(m: float, lo: float, hi: float) -> str:
        return "n/a" if pd.isna(m) else f"{m:.3f} [{lo:.3f}, {hi:.3f}]"

    table = pd.DataFrame(
        {c: [cell(m, lo, hi) for m, lo, hi in zip(med[c], low[c], high[c], strict=True)] for c in cols}, index=med.index
    )
    table.insert(0, "seeds", grouped["seed"].count() if "seed" in runs.columns else 1)
    return table


def write_outputs(table: pd.DataFrame, out_dir: Path, stem: str, meta: dict[str, Any], csv: Path | None = None) -> Path:
    """``<stem>.csv`` (or ``csv``), ``<stem>.md`` and ``<stem>.json`` (machine, command, date)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = Path(csv) if csv else out_dir / f"{stem}.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv_path)
    md = markdown_table(table.reset_index())
    (out_dir / f"{stem}.md").write_text(_meta_line(meta) + "\n\n" + md)
    (out_dir / f"{stem}.json").write_text(json.dumps(meta, indent=2, default=str))
    return csv_path


def _meta_line(meta: dict[str, Any]) -> str:
    return (
        f"{meta.get('date', '')}, `{meta.get('command', '')}`, {meta.get('cpu', '')} "
        f"({meta.get('cpu_count')} cores, {meta.get('torch_threads')} torch threads), torch {meta.get('torch')}, "
        f"load average {meta.get('load_average', float('nan')):.1f}"
    )


def print_table(title: str, table: pd.DataFrame) -> None:
    print(f"\n{title}")
    print(table.to_string(float_format=lambda v: f"{v:.3f}", na_rep="n/a"))


def setup_logging(verbose: bool = True) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def median(values: Iterable[float]) -> float:
    vals = [v for v in values if v == v]
    return statistics.median(vals) if vals else float("nan")
