"""The allowed range of every numeric config key, checked when a config is loaded or overridden.

Types are checked by ``config.from_dict``; this adds the values: ``--set train.batch_size=0`` used
to train with batches of 1 while the summary recorded 0, and ``train.max_minutes=-1`` silently
meant "no budget". Each numeric key of ``params.yaml`` has one rule here (a test checks that none is
missing and that each rule refuses a value outside it); list-valued keys apply the rule to each
element. Rules that relate two keys (``min <= max``, a stride within the patch) stay with the code
that uses them (``synthesis.synthesizer``, ``synthesis.masks``, ``models.fmrnet.patches``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from texinspect.errors import ConfigError
from texinspect.models.registry import config_classes

if TYPE_CHECKING:
    from texinspect.config import Config


@dataclass(frozen=True)
class Range:
    """``low``/``high`` bounds (None: unbounded); ``open_low``/``open_high`` exclude the bound itself."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    note: str = ""  # what a special value means, e.g. "0: no cap"

    def allows(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.open_high and value == self.high)))

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            text = f"a value in {'(' if self.open_low else '['}{_num(self.low)}, {_num(self.high)}{')' if self.open_high else ']'}"
        elif self.low is not None:
            text = f"a value {'>' if self.open_low else '>='} {_num(self.low)}"
        elif self.high is not None:
            text = f"a value {'<' if self.open_high else '<='} {_num(self.high)}"
        else:
            text = "a finite number"
        return f"{text} ({self.note})" if self.note else text

    def outside(self) -> list[float]:
        """Values this rule refuses (for tests): just past each bound, and NaN."""
        values = [math.nan]
        if self.low is not None:
            values.append(self.low if self.open_low else self.low - 1)
        if self.high is not None:
            values.append(self.high if self.open_high else self.high + 1)
        return values


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


POSITIVE = Range(low=1)  # sizes, counts, steps that must happen
NON_NEGATIVE = Range(low=0)
PROBABILITY = Range(low=0, high=1)
FRACTION = Range(low=0, high=1, open_low=True)  # (0, 1]
SHARE = Range(low=0, high=1, open_low=True, open_high=True)  # (0, 1): both parts get some
RATE = Range(low=0, open_low=True)  # learning rates, temperatures: > 0

# dotted key -> rule for the shared sections; list keys check each element. A family's keys have
# their rules in its config class (``RANGES``, keys relative to its section): see :func:`rules`.
RULES: dict[str, Range] = {
    "seed": NON_NEGATIVE,
    "data.image_size": POSITIVE,
    "data.channels": Range(low=1, high=3, note="1 or 3"),
    "data.num_workers": NON_NEGATIVE,
    "data.gain_jitter": Range(low=0.0, high=1.0, note="log-gain bound of the training normals' relighting; 0: off"),
    # synthesis
    "synthesis.defect_probability": PROBABILITY,
    "synthesis.transparency_min": FRACTION,
    "synthesis.transparency_max": FRACTION,
    "synthesis.destructive_probability": PROBABILITY,
    "synthesis.self_texture_probability": PROBABILITY,
    "synthesis.shift_probability": PROBABILITY,
    "synthesis.shift_min": FRACTION,
    "synthesis.shift_max": FRACTION,
    "synthesis.intensity_match": PROBABILITY,
    "synthesis.intensity_offset_min": PROBABILITY,
    "synthesis.intensity_offset_max": PROBABILITY,
    "synthesis.label_threshold": Range(low=0, high=1, open_high=True),
    "synthesis.count": NON_NEGATIVE,
    "synthesis.mask.perlin_scale_min": Range(low=0, high=10),
    "synthesis.mask.perlin_scale_max": Range(low=0, high=10),
    "synthesis.mask.perlin_threshold": Range(low=-1, high=1, open_low=True, open_high=True),
    "synthesis.mask.shape_probability": PROBABILITY,
    "synthesis.mask.max_shapes": POSITIVE,
    "synthesis.mask.soft_probability": PROBABILITY,
    "synthesis.mask.min_area": Range(low=0, high=0.5, open_high=True),
    "synthesis.mask.local_probability": PROBABILITY,
    "synthesis.mask.local_radius_min": FRACTION,
    "synthesis.mask.local_radius_max": FRACTION,
    # train
    "train.batch_size": POSITIVE,
    "train.phase1_epochs": POSITIVE,
    "train.phase2_epochs": POSITIVE,
    "train.max_steps_phase1": Range(low=0, note="0: no cap"),
    "train.max_steps_phase2": Range(low=0, note="0: no cap"),
    "train.max_minutes": Range(low=0, note="0: no wall-clock budget"),
    "train.phase1_fraction": SHARE,
    "train.lr": RATE,
    "train.warmup_steps": NON_NEGATIVE,
    "train.weight_decay": NON_NEGATIVE,
    "train.checkpoint_every": Range(low=0, note="0: only at each phase end"),
    "train.log_every": POSITIVE,
    # eval
    "eval.k_sigma": NON_NEGATIVE,
    "eval.score_smoothing": Range(low=0, note="0: no smoothing"),
    "eval.aupro_fpr_limit": FRACTION,
    "eval.overlays": NON_NEGATIVE,
}

# values of a few keys are a choice among numbers, not a range
CHOICES: dict[str, tuple[int, ...]] = {"data.channels": (1, 3)}


def is_numeric(value: Any) -> bool:
    """A number (not a bool), or a non-empty list of numbers."""
    if isinstance(value, list):
        return bool(value) and all(is_numeric(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def rules() -> dict[str, Range]:
    """Every rule: the shared sections' and each registered family's ``RANGES``, as dotted keys."""
    out = dict(RULES)
    for name, cls in config_classes().items():
        out.update({f"{name}.{key}": rule for key, rule in getattr(cls, "RANGES", {}).items()})
    return out


def validate_ranges(config: Config) -> None:
    """ConfigError naming the dotted key, the rule and the value, for the first value out of range."""
    all_rules = rules()
    for key, value in config.flat().items():
        rule = all_rules.get(key)
        if rule is None:
            continue
        items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            name = key if index is None else f"{key}[{index}]"
            allowed = CHOICES.get(key)
            if allowed is not None and item not in allowed:
                raise ConfigError(f"config key '{name}': expected one of {list(allowed)}, got {item!r}")
            if not rule.allows(float(item)):
                raise ConfigError(f"config key '{name}': expected {rule.describe()}, got {item!r}")
