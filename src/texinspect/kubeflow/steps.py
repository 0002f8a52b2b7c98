"""What the Kubeflow components do, as plain functions: run stages and move artifacts.

A component body is one call into this module, which calls the same library functions the
``texinspect`` commands wrap (``training.runs``, ``models.fmrnet.bank_stage``,
``synthesis.stage``, ``prediction``, ``evaluation``), so a stage does what the command a person
or ``dvc repro`` runs does; nothing here trains, scores or measures by itself. A stage's failure
is a :class:`StepError` naming the stage and the reason. Kept free of ``kfp`` imports so it runs
(and is tested) without the pipeline SDK.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from texinspect.config import Config, load_config, save_config
from texinspect.data.transfer import content_hash
from texinspect.errors import ConfigError, TexinspectError
from texinspect.evaluation import evaluate as evaluate_predictions
from texinspect.models.artifact import CARD_FILE
from texinspect.models.fmrnet.bank_stage import default_bank_path, memory_bank_stage
from texinspect.outputs import describe_os_error, is_environment_error
from texinspect.prediction import predict as predict_images
from texinspect.synthesis.stage import synthesize as synthesize_defects
from texinspect.tracking import log_finished_run, register_and_gate, track_training_run
from texinspect.training.runs import train_run

log = logging.getLogger(__name__)

PARAMS_ENV = "TEXINSPECT_PARAMS"  # where the image keeps its params.yaml (set by the Dockerfile)

# Typed pipeline parameters -> config keys. A negative value means "keep what params.yaml and
# the profile say" (KFP has no optional numbers that run both locally and on a cluster).
TYPED_PARAMETERS: dict[str, str] = {
    "seed": "seed",
    "image_size": "data.image_size",
    "batch_size": "train.batch_size",
    "phase1_epochs": "train.phase1_epochs",
    "phase2_epochs": "train.phase2_epochs",
    "max_steps_phase1": "train.max_steps_phase1",
    "max_steps_phase2": "train.max_steps_phase2",
    "max_minutes": "train.max_minutes",
    "lr": "train.lr",
    "k_sigma": "eval.k_sigma",
}


class StepError(TexinspectError):
    """A pipeline step's command failed or its inputs are not what the step expects."""


# --------------------------------------------------------------------------- configuration


def parse_overrides(text: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``overrides`` pipeline parameter: a JSON (or YAML) object of dotted keys -> values.

    A string, not a KFP ``dict``: KFP passes dict values as protobuf numbers, so ``4`` would
    arrive as ``4.0`` and fail the config's integer check.
    """
    if text is None or text == "":
        return {}
    if isinstance(text, Mapping):
        data: Any = dict(text)
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"pipeline parameter 'overrides' is not JSON/YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ConfigError(
            "pipeline parameter 'overrides' must be an object of dotted keys, "
            f'e.g. {{"train.batch_size": 4}}; got {text!r}'
        )
    return data


def typed_overrides(values: Mapping[str, float | int]) -> dict[str, Any]:
    """Config overrides from the typed pipeline parameters that were set (non-negative)."""
    unknown = sorted(set(values) - set(TYPED_PARAMETERS))
    if unknown:
        raise ConfigError(f"unknown typed pipeline parameter(s): {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value is None or value < 0:
            continue
        out[TYPED_PARAMETERS[name]] = value
    return out


def params_path(params_file: str = "") -> Path:
    """``params_file``, else ``$TEXINSPECT_PARAMS`` (the image's copy), else ``./params.yaml``."""
    path = Path(params_file or os.environ.get(PARAMS_ENV) or "params.yaml")
    if not path.is_file():
        raise ConfigError(
            f"params file not found: {path} (pass the pipeline parameter params_file, "
            f"or set {PARAMS_ENV}; the project image sets it)"
        )
    return path


def resolve_config(
    out_path: str | Path,
    model: str,
    profile: str = "",
    overrides: str | Mapping[str, Any] | None = "",
    params_file: str = "",
    typed: Mapping[str, float | int] | None = None,
) -> Config:
    """Resolve params.yaml + profile + overrides + typed parameters into one full config file.

    Later stages read only this file, so every stage of a run sees the same values and the run's
    exact configuration is kept as an artifact. Precedence: params.yaml < profile < ``overrides``
    < typed parameters < ``model``.
    """
    merged = {**parse_overrides(overrides), **typed_overrides(typed or {})}
    if model:
        merged["model"] = model
    config = load_config(params_path(params_file), merged, profile or None)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_config(config, out)
    log.info(
        "resolved config (%s, profile %s, %d overrides) -> %s", config.model, profile or "-", len(merged), out
    )
    return config


# --------------------------------------------------------------------------- running stages


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Run one stage's library calls; an error meant for people becomes a :class:`StepError`
    naming the stage (the message the command line would print after ``error:``)."""
    log.info("stage %s", name)
    try:
        yield
    except StepError:
        raise
    except TexinspectError as exc:
        raise StepError(f"stage {name} failed: {exc}") from exc
    except OSError as exc:  # a full disk, no permission, ...
        if not is_environment_error(exc):
            raise
        raise StepError(f"stage {name} failed: {describe_os_error(exc)}") from exc


def stage_config(config_path: str | Path, data_path: str | Path | None = None) -> Config:
    """The run's resolved config, with ``data.root`` set to the imported dataset when given."""
    config = load_config(config_path)
    if data_path:
        config.data.root = str(data_path)
    return config


def synthesize(config_path: str, data_path: str, out: str) -> Path:
    """The synthesize stage (``texinspect synthesize``): artificial defects on the training images."""

    with stage("synthesize"):
        config = stage_config(config_path, data_path)
        path = synthesize_defects(config, out)
        log.info("wrote %d synthetic defects to %s", config.synthesis.count, path)
    return path


def predict(model_path: str, data_path: str, out: str) -> None:
    """The predict stage (``texinspect predict``): scores.csv and maps of the test split."""

    with stage("predict"):
        table = predict_images(model_path, data_path, out)
        log.info("%d images scored -> %s", len(table), Path(out) / "scores.csv")


def evaluate(pred_path: str, data_path: str, config_path: str) -> dict[str, Any]:
    """The evaluate stage (``texinspect evaluate``): metrics, tables and pictures into ``pred_path``."""

    with stage("evaluate"):
        result = evaluate_predictions(pred_path, data_path, stage_config(config_path).eval)
    log.info("evaluation written to %s (image AUROC %s)", pred_path, result.get("image_auroc"))
    return result


def train_argv(config_path: str, data_path: str, run_dir: str, phase: str) -> list[str]:
    """The ``texinspect train`` call of one phase (``1``, ``2`` or ``all``) into ``run_dir``
    (what torchrun's processes run)."""
    if phase not in ("1", "2", "all"):
        raise StepError(f"training phase must be 1, 2 or all, got {phase!r}")
    return ["train", "--config", config_path, "--data", data_path, "--out", run_dir, "--phase", phase]


def torchrun_args(argv: Sequence[str], world_size: int) -> list[str]:
    """torchrun's arguments for ``texinspect <argv>`` in ``world_size`` processes on this node.

    ``--standalone``: a local rendezvous on a free port, nothing else to configure. torchrun gives
    each process RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT, which
    :mod:`texinspect.training.distributed` reads, exactly as under a TrainJob or PyTorchJob.
    """
    return ["--standalone", f"--nproc-per-node={int(world_size)}", "--module", "texinspect", *map(str, argv)]


def run_training(config_path: str, data_path: str, run_dir: str, phase: str, world_size: int = 1) -> None:
    """One training phase, in ``world_size`` DDP processes (PyTorch's torchrun) when more than one."""
    argv = train_argv(config_path, data_path, run_dir, phase)
    if world_size <= 1:
        with stage(f"train (phase {phase})"):
            config = stage_config(config_path, data_path)
            outcome = train_run(config, run_dir, phase)
            log_finished_run(config, outcome)
        return
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    args = torchrun_args(argv, world_size)
    log.info("phase %s with DDP over %d processes: torchrun %s", phase, world_size, " ".join(args))
    try:
        torchrun(get_args_parser().parse_args(args))
    except ChildFailedError as exc:
        raise StepError(f"`torchrun {' '.join(args)}` failed: {exc.format_msg()}") from exc


def dataset_fingerprint(data_path: str | Path) -> str:
    """The content hash of the imported dataset (the one ``texinspect data push`` prints)."""

    digest = content_hash(data_path)
    log.info("dataset %s: %s", data_path, digest)
    return digest


def between_phases(config_path: str, data_path: str, run_dir: str) -> dict[str, Any]:
    """The step between the phases, by model family; returns what it did (artifact metadata).

    FMR-Net: the ``texinspect memory-bank`` stage writes the k-means memory bank into the run
    folder, where phase 2 finds it. RB-AE: its reference image is chosen from the phase-1 encoder's features by
    the trainer at the start of phase 2 (``models.rbae.reference``), so nothing runs here.
    """
    family = load_config(config_path).model
    if family == "fmrnet":
        with stage("memory-bank"):
            run = Path(run_dir)
            path = memory_bank_stage(stage_config(config_path, data_path), run, default_bank_path(run))
            log.info("memory bank written to %s", path)
        return {"family": family, "step": "k-means memory bank"}
    log.info("%s: no separate step between the phases (done at the start of phase 2)", family)
    return {"family": family, "step": "none (reference chosen at the start of phase 2)"}


def copy_tree(src: str | Path, dst: str | Path) -> Path:
    """Copy an input artifact folder into an output one (KFP artifacts are immutable)."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise StepError(f"input artifact {src} is not a folder")
    shutil.copytree(src, dst, dirs_exist_ok=True)
    return dst


def require_file(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise StepError(f"{what} not found: {p} (the previous stage did not write it)")
    return p


# --------------------------------------------------------------------------- metrics


def scalar_metrics(metrics_path: str | Path) -> dict[str, float]:
    """The finite numbers at the top level of ``metrics.json`` (what KFP's Metrics can show)."""
    data = json.loads(require_file(metrics_path, "metrics.json").read_text())
    out: dict[str, float] = {}
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out


MAX_CURVE_POINTS = 200  # KFP keeps artifact metadata in MLMD: bounded curves


def roc_curve_points(eval_dir: str | Path) -> dict[str, list[float]] | None:
    """The image-level ROC curve (``curves/roc.csv``) as KFP ``ClassificationMetrics`` wants it.

    At most :data:`MAX_CURVE_POINTS` points (first and last kept); sklearn's first threshold is
    +inf ("flag nothing"), which JSON cannot carry: it becomes the next float above the highest
    finite one. None when the evaluation wrote no curve (a test split without both classes).
    """
    import pandas as pd

    path = Path(eval_dir) / "curves" / "roc.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    if len(table) > MAX_CURVE_POINTS:
        keep = sorted({round(i * (len(table) - 1) / (MAX_CURVE_POINTS - 1)) for i in range(MAX_CURVE_POINTS)})
        table = table.iloc[keep]
    thresholds = [float(t) for t in table["threshold"]]
    finite = [t for t in thresholds if math.isfinite(t)]
    top = math.nextafter(max(finite), math.inf) if finite else 1.0
    return {
        "fpr": [float(v) for v in table["fpr"]],
        "tpr": [float(v) for v in table["tpr"]],
        "threshold": [t if math.isfinite(t) else top for t in thresholds],
    }


def confusion_matrix(eval_dir: str | Path) -> tuple[list[str], list[list[int]]] | None:
    """Image-level good/defect confusion matrix at the model's threshold, from ``per_type.csv``
    (rows: truth, columns: decision). None when the threshold is unknown."""
    import pandas as pd

    path = Path(eval_dir) / "per_type.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    good = table[table["defect_type"] == "good"]
    defects = table[~table["defect_type"].isin(["good", "all"])]
    if good.empty or defects.empty or table["flagged"].isna().any():
        return None
    good_n, good_flagged = int(good["n"].iloc[0]), round(float(good["flagged"].iloc[0]) * int(good["n"].iloc[0]))
    defect_n = int(defects["n"].sum())
    defect_flagged = int(sum(round(f * n) for f, n in zip(defects["flagged"], defects["n"], strict=True)))
    return ["good", "defect"], [[good_n - good_flagged, good_flagged], [defect_n - defect_flagged, defect_flagged]]


def model_dir_of(run_dir: str | Path) -> Path:
    """``RUN/model``: the artifact ``texinspect train`` writes after phase 2."""

    model_dir = Path(run_dir) / "model"
    require_file(model_dir / CARD_FILE, f"model card of run {run_dir}")
    return model_dir


def model_metadata(model_dir: str | Path) -> dict[str, Any]:
    """A few model-card fields worth seeing in the KFP UI next to the Model artifact."""

    card = yaml.safe_load(require_file(Path(model_dir) / CARD_FILE, "model card").read_text()) or {}
    keys = ("family", "image_size", "channels", "threshold", "pixel_threshold", "texinspect_version")
    return {k: card[k] for k in keys if card.get(k) is not None}


def write_report(eval_dir: str | Path, report_path: str | Path) -> Path:
    """The evaluation as Markdown for the KFP UI: headline metrics, then the per-type table."""
    eval_dir = Path(eval_dir)
    values = scalar_metrics(eval_dir / "metrics.json")
    lines = ["# texinspect evaluation", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" for k, v in values.items()]
    per_type = eval_dir / "per_type.md"
    if per_type.is_file():
        lines += ["", "## Per defect type", "", per_type.read_text().strip()]
    out = Path(report_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


def register(
    config_path: str | Path,
    run_dir: str | Path,
    model_dir: str | Path,
    eval_dir: str | Path,
    out_dir: str | Path,
) -> dict[str, Any]:
    """Log the run to MLflow and register it behind the champion quality gate.

    Returns the decision as plain data (``promoted``, ``version``, ...), also written to
    ``out_dir/registration.json``; the pipeline deploys only when ``promoted`` is true.
    """

    config = load_config(config_path)
    metrics_path = require_file(Path(eval_dir) / "metrics.json", "metrics.json")
    run_id = track_training_run(config, Path(run_dir), Path(model_dir), metrics_path)
    if run_id is None:  # tracking off (tracking.enabled: false) or offline: there is no registry
        data: dict[str, Any] = {
            "promoted": False,
            "reason": "tracking is off or offline: no registry to gate against, nothing deployed",
            "run_id": None,
        }
    else:
        data = register_and_gate(run_id, metrics_path, config).to_dict()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "registration.json").write_text(json.dumps(data, indent=2, default=str))
    log.info("registration: %s", data)
    return data
