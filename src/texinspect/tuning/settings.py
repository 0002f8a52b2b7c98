"""The ``sweep:`` section of ``params.yaml``: how a study runs (not what it searches; see space.py).

Parsed with the config loader's typed conversion, so an unknown key or a wrong type is an error
naming the dotted key (``sweep.pruner.kind``), like everywhere else in params.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from texinspect.config import from_dict
from texinspect.errors import ConfigError
from texinspect.training.validation import DEFAULT_IMAGES, METRICS, VALIDATION_SEED


@dataclass
class SamplerSettings:
    """How trials choose values: TPE (default) or plain random search."""

    kind: Literal["tpe", "random"] = "tpe"
    seed: int = 0  # parallel workers add their worker id, so they do not draw the same points
    startup_trials: int = 5  # TPE draws at random until this many trials have finished


@dataclass
class PrunerSettings:
    """Stopping bad trials early from the training loss rows the trainers log."""

    kind: Literal["median", "none"] = "median"
    key: str = "rec"  # logged loss reported (negated: lower loss = better) as the intermediate value
    startup_trials: int = 3  # no pruning until this many trials have finished
    warmup_steps: int = 10  # no pruning before this (global) training step within a trial


@dataclass
class ValidationSettings:
    """The objective's yardstick; never the test split's labels."""

    images: int = DEFAULT_IMAGES  # synthetic set size (half normal, half with one defect)
    seed: int = VALIDATION_SEED  # must differ from the config's training seed
    folder: str = ""  # optional labelled validation folder, named explicitly; "" = synthetic defects


@dataclass
class SweepSettings:
    """Everything under ``sweep:`` in params.yaml."""

    trials: int = 20  # total trials of the study (a resumed study runs only the missing ones)
    metric: Literal["pixel_auroc", "image_auroc", "aupro"] = "pixel_auroc"  # maximised
    storage: str = ""  # "" = sqlite:///<out>/optuna.db; any SQLAlchemy URL for a shared database
    study_name: str = ""  # "" = texinspect-<model>
    heartbeat_seconds: int = 30  # a trial silent for 3x this long is failed and re-queued; 0 = off
    keep_checkpoints: bool = False  # keep trials' checkpoints/ after they end (model/ is always kept)
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    pruner: PrunerSettings = field(default_factory=PrunerSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    space: dict[str, Any] = field(default_factory=dict)  # model -> {dotted config key: dimension}


def parse_sweep_settings(raw: Any, source: str = "params.yaml") -> SweepSettings:
    """``raw`` is the ``sweep:`` mapping (None = all defaults); values are range-checked."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: 'sweep' must be a mapping, got {raw!r}")
    settings: SweepSettings = from_dict(SweepSettings, raw, "sweep.")
    checks = [
        (settings.trials >= 0, "sweep.trials", "expected >= 0", settings.trials),
        (settings.heartbeat_seconds >= 0, "sweep.heartbeat_seconds", "expected >= 0", settings.heartbeat_seconds),
        (settings.sampler.startup_trials >= 0, "sweep.sampler.startup_trials", "expected >= 0", settings.sampler.startup_trials),
        (settings.pruner.startup_trials >= 0, "sweep.pruner.startup_trials", "expected >= 0", settings.pruner.startup_trials),
        (settings.pruner.warmup_steps >= 0, "sweep.pruner.warmup_steps", "expected >= 0", settings.pruner.warmup_steps),
        (bool(settings.pruner.key), "sweep.pruner.key", "expected a logged loss name such as rec", settings.pruner.key),
        (settings.validation.images >= 2, "sweep.validation.images", "expected >= 2", settings.validation.images),
        (settings.metric in METRICS, "sweep.metric", f"expected one of {list(METRICS)}", settings.metric),
    ]
    for ok, key, expected, value in checks:
        if not ok:
            raise ConfigError(f"{source}: '{key}': {expected}, got {value!r}")
    return settings


def load_sweep_settings(path: str | Path = "params.yaml") -> SweepSettings:
    """The ``sweep:`` section of ``path`` (a missing file or section: the defaults, no space)."""
    p = Path(path)
    if not p.exists():
        if str(path) != "params.yaml":
            raise ConfigError(f"config file not found: {path}")
        return SweepSettings()
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return parse_sweep_settings(raw.get("sweep"), str(path))
