"""The search space: ``sweep.space.<model>`` maps dotted config keys to dimensions.

Dimension kinds (YAML)::

    train.lr:             {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
    fmrnet.memory_size:   {type: int, low: 64, high: 512, step: 64}
    rbae.patch_sizes:     {type: categorical, choices: [[2, 4], [2], [4, 8]]}
    rbae.msfdm_lambdas:   {type: simplex, low: 0.05, high: 1.0}

``simplex`` is for weights that sum to one (RB-AE's MSFDM fusion lambdas): one float per entry
of the key's default list is drawn in [low, high] and the list is divided by its sum. Categorical
choices may be lists; Optuna sees them as their YAML text (``"[2, 4]"``).

Every key must be a config key; keys that would change the yardstick (data, seed, the metric's
own settings) are refused, and each dimension's bounds / choices are applied to the base config
up front, so a type mistake fails before the first trial, naming ``sweep.space.<model>.<key>``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import optuna
import yaml

from texinspect.config import Config
from texinspect.errors import ConfigError

KINDS = ("float", "int", "categorical", "simplex")
_FIELDS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
    "simplex": {"type", "low", "high"},
}
# Keys a sweep may not change: they define the data, the split, the validation set or the metric.
FORBIDDEN = ("model", "seed", "device", "data.", "tracking.", "eval.aupro_fpr_limit", "train.progress")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def choice_label(value: Any) -> Any:
    """What Optuna stores for a categorical choice: scalars as they are, lists as YAML text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip()


@dataclass(frozen=True)
class Dimension:
    """One searched config key."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    size: int = 0  # simplex: number of weights

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        """The config value for ``trial`` (Optuna records the raw draws under ``key`` / ``key[i]``)."""
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        if self.kind == "categorical":
            labels = [choice_label(c) for c in self.choices]
            label = trial.suggest_categorical(self.key, labels)
            return self.choices[labels.index(label)]
        raw = [trial.suggest_float(f"{self.key}[{i}]", self.low, self.high) for i in range(self.size)]
        total = sum(raw)
        return [round(v / total, 6) for v in raw]

    def probes(self) -> list[Any]:
        """Values that must all be valid config values (bounds, every choice, an even simplex)."""
        if self.kind in ("float", "int"):
            cast = float if self.kind == "float" else int
            return [cast(self.low), cast(self.high)]
        if self.kind == "categorical":
            return list(self.choices)
        return [[round(1.0 / self.size, 6)] * self.size]


@dataclass(frozen=True)
class SearchSpace:
    model: str
    dimensions: tuple[Dimension, ...]

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Config overrides ``{dotted key: value}`` for one trial."""
        return {d.key: d.suggest(trial) for d in self.dimensions}

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.dimensions]

    def signature(self) -> str:
        """A short hash of the space, stored with the study so a resume with another space fails."""
        text = json.dumps([d.__dict__ for d in self.dimensions], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_space(raw: Any, model: str, base: Config) -> SearchSpace:
    """``raw`` is ``sweep.space`` (all models); returns ``model``'s space, checked against ``base``."""
    where = f"sweep.space.{model}"
    if not isinstance(raw, dict) or model not in raw or not raw[model]:
        known = ", ".join(sorted(raw)) if isinstance(raw, dict) and raw else "none"
        raise ConfigError(f"'{where}': no search space for model {model} in params.yaml (spaces given for: {known})")
    entries = raw[model]
    if not isinstance(entries, dict):
        raise ConfigError(f"'{where}': expected a mapping of dotted config keys to dimensions, got {entries!r}")
    flat = base.flat()
    dims = []
    for key, spec in entries.items():
        dim = _parse_dimension(str(key), spec, flat, f"{where}.{key}")
        _probe(dim, base, f"{where}.{key}")
        dims.append(dim)
    return SearchSpace(model, tuple(dims))


def _parse_dimension(key: str, spec: Any, flat: dict[str, Any], where: str) -> Dimension:
    if key not in flat:
        raise ConfigError(f"'{where}': '{key}' is not a config key (e.g. train.lr, rbae.patch_sizes, fmrnet.loss.adv1)")
    for prefix in FORBIDDEN:
        if key == prefix or (prefix.endswith(".") and key.startswith(prefix)):
            raise ConfigError(f"'{where}': '{key}' cannot be swept: it defines the data, the split or the metric")
    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError(f"'{where}': expected a mapping with 'type' ({' | '.join(KINDS)}), got {spec!r}")
    kind = spec["type"]
    if kind not in KINDS:
        raise ConfigError(f"'{where}.type': expected one of {list(KINDS)}, got {kind!r}")
    unknown = sorted(set(spec) - _FIELDS[kind])
    if unknown:
        raise ConfigError(f"'{where}.{unknown[0]}': not a field of a {kind} dimension (fields: {', '.join(sorted(_FIELDS[kind]))})")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"'{where}.choices': expected a non-empty list, got {choices!r}")
        labels = [choice_label(c) for c in choices]
        if len(set(map(repr, labels))) != len(labels):
            raise ConfigError(f"'{where}.choices': choices repeat, got {choices!r}")
        return Dimension(key, kind, choices=tuple(choices))
    if kind == "simplex":
        default = flat[key]
        if not isinstance(default, list) or len(default) < 2 or not all(_is_number(v) for v in default):
            raise ConfigError(f"'{where}': simplex needs a config key holding a list of >= 2 numbers, '{key}' is {default!r}")
        low, high = spec.get("low", 0.05), spec.get("high", 1.0)
        if not (_is_number(low) and _is_number(high) and 0 < low < high):
            raise ConfigError(f"'{where}': simplex needs 0 < low < high, got low={low!r}, high={high!r}")
        return Dimension(key, kind, low=float(low), high=float(high), size=len(default))
    low, high = spec.get("low"), spec.get("high")
    if not (_is_number(low) and _is_number(high) and low < high):
        raise ConfigError(f"'{where}': needs numbers low < high, got low={low!r}, high={high!r}")
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise ConfigError(f"'{where}.log': expected true/false, got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"'{where}': log scale needs low > 0, got {low!r}")
    if step is not None and (not _is_number(step) or step <= 0 or log):
        raise ConfigError(f"'{where}.step': expected a positive number (and no log scale), got {step!r}")
    if kind == "int" and not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high, step or 1)):
        raise ConfigError(f"'{where}': an int dimension needs integer low/high/step, got {low!r}, {high!r}, {step!r}")
    return Dimension(key, kind, low=low, high=high, log=log, step=step)


def _probe(dim: Dimension, base: Config, where: str) -> None:
    """Apply every probe value to the base config: a type mismatch fails now, naming the key."""
    for value in dim.probes():
        try:
            base.with_overrides({dim.key: value})
        except ConfigError as exc:
            raise ConfigError(f"'{where}': value {value!r} does not fit the config: {exc}") from exc
