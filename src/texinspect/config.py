"""Typed configuration: ``params.yaml`` plus named profiles plus ``--set key=value`` overrides.

One file holds every hyper-parameter (the papers' values are the defaults); the same keys are DVC
params, KFP pipeline parameters and Optuna search dimensions. Unknown keys, wrong types and
numbers out of their key's range (``config_ranges``) are errors that name the dotted key, so a
typo never silently falls back to a default and ``train.batch_size=0`` never trains at all.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from texinspect.config_ranges import validate_ranges
from texinspect.errors import ConfigError
from texinspect.models.registry import config_classes, default_sections, discover
from texinspect.outputs import write_text_atomic


@dataclass
class DataConfig:
    """Where the images are and how they are fed to a model."""

    root: str = "data/sample"
    image_size: int = 256  # images are resized to image_size x image_size
    channels: int = 3  # model input channels; grayscale and RGB files are converted to this
    num_workers: int = 0
    # training normals turned at random before synthesis (none: as the papers); flips: mirrored left-right
    # and/or top-bottom; dihedral: also 90-degree turns. Only for surfaces whose texture has no direction.
    augment: Literal["none", "flips", "dihedral"] = "none"
    # training normals multiplied by a random gain exp(U(-j, j)) before synthesis (exposure and
    # illumination drift are not defects); 0: as the papers. synthesis/dataset.py: relight.
    gain_jitter: float = 0.0


@dataclass
class MaskConfig:
    """Random defect masks: thresholded Perlin noise and random shapes (DRAEM-style)."""

    perlin_scale_min: int = 0  # Perlin base resolution is 2**scale along each axis
    perlin_scale_max: int = 6
    perlin_threshold: float = 0.5
    shape_probability: float = 0.3  # chance a mask is made of random shapes instead of noise
    max_shapes: int = 4
    soft_probability: float = 0.25  # chance of a large, soft, low-contrast mask (diffuse defects)
    min_area: float = 0.002  # masks smaller than this fraction of the image are redrawn
    perlin_rotate: bool = True  # rotate the Perlin lattice by a random angle (DRAEM rotates masks)
    local_probability: float = 0.3  # chance a Perlin/shape mask is cut to one small local blob
    local_radius_min: float = 0.02  # that blob's radius as a fraction of the image side
    local_radius_max: float = 0.12


@dataclass
class SynthesisConfig:
    """Artificial defects: RB-AE eq. (1) pastes, FMR-Net eq. (1) adds transparency."""

    texture_pool: str = "../shared/datasets/texture_pool"  # "" or missing: procedural textures
    defect_probability: float = 0.5  # share of training samples that get a defect
    transparency_min: float = 0.15  # FMR-Net lambda range; lambda=1 is a destructive defect
    transparency_max: float = 1.0
    destructive_probability: float = 0.5  # share of defects drawn with lambda = 1
    self_texture_probability: float = 0.2  # anomaly source cut from another normal image
    shift_probability: float = 0.15  # smooth brightness or texture-contrast shift over a soft mask
    shift_min: float = 0.05  # strength of those shifts: mean intensity change where the mask is on
    shift_max: float = 0.25
    transparency_mode: Literal["region", "global"] = "region"  # global: FMR-Net eq. (1) literally
    intensity_match: float = 0.5  # chance a pool source is re-levelled to the surface (see synthesizer)
    intensity_offset_min: float = 0.04  # |mean change| of a re-levelled source, darker or brighter
    intensity_offset_max: float = 0.3
    label_threshold: float = 0.02  # defect mask = where |I_s - I_o| (or its 3x3 mean) is at least this
    count: int = 64  # image/mask pairs written by the `synthesize` stage
    mask: MaskConfig = field(default_factory=MaskConfig)


@dataclass
class TrainConfig:
    """Optimisation schedule shared by both model families (model sections hold their losses)."""

    batch_size: int = 8
    phase1_epochs: int = 400
    phase2_epochs: int = 200
    max_steps_phase1: int = 0  # 0: no cap (epochs decide); >0 caps the steps of the phase
    max_steps_phase2: int = 0
    max_minutes: float = 0.0  # 0: no wall-clock budget; >0 splits it between the phases
    phase1_fraction: float = 0.5  # share of max_minutes given to phase 1
    lr: float = 1e-4
    lr_schedule: Literal["constant", "cosine"] = "constant"  # cosine: to 2 % over each phase (training/loop.py)
    warmup_steps: int = 0  # linear warm-up at the start of each phase
    weight_decay: float = 1e-5
    checkpoint_every: int = 200  # steps between checkpoints (and one at each phase end)
    log_every: int = 20
    channels_last: bool = True
    progress: bool = True


@dataclass
class EvalConfig:
    """How maps become decisions."""

    k_sigma: float = 3.0  # threshold = mean + k * std of normal scores (FMR-Net's k-sigma rule)
    threshold_rule: Literal["k_sigma", "best_f1"] = "k_sigma"
    score_smoothing: float = 4.0  # Gaussian sigma (px) of the map before the max (image score)
    aupro_fpr_limit: float = 0.3
    overlays: int = 8  # overlay PNGs written per defect type


# Secrets are never config keys (params.yaml, pipeline parameters and MLflow params are logged):
# parallel sweep workers read their shared Optuna storage URL, password included, from this
# environment variable, which a Kubernetes Secret fills on a cluster.
SWEEP_STORAGE_ENV = "TEXINSPECT_SWEEP_STORAGE"


@dataclass
class TrackingConfig:
    """MLflow tracking (SQLite + local artifact folder unless MLFLOW_TRACKING_URI is set)."""

    enabled: bool = True
    tracking_uri: str = "sqlite:///mlflow.db"
    artifact_location: str = "mlartifacts"
    experiment: str = "texinspect"
    registered_model: str = "texinspect"
    gate_metric: str = "image_auroc"


@dataclass
class Config:
    """The whole run configuration.

    The shared sections are fields; each model family's section (``rbae``, ``fmrnet``, ...) is
    its own config class, registered from the family's folder (:mod:`texinspect.models.registry`),
    held in ``families`` and read as an attribute: ``config.rbae.widths``. In ``params.yaml``,
    ``to_dict`` and ``flat`` the sections are top-level keys, as before.
    """

    model: str = "rbae"  # a registered family (texinspect.models.registry)
    seed: int = 0
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    families: dict[str, Any] = field(default_factory=default_sections)

    def __getattr__(self, name: str) -> Any:
        """``config.<family>``: that family's section (only called when no field has the name)."""
        sections = self.__dict__.get("families")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"config has no field or family section '{name}'")

    def to_dict(self) -> dict[str, Any]:
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != FAMILIES_FIELD}
        out = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else copy.deepcopy(v) for k, v in shared.items()}
        tracking = out.pop("tracking")
        out.update({name: dataclasses.asdict(section) for name, section in sorted(self.families.items())})
        out["tracking"] = tracking
        return out

    def flat(self) -> dict[str, Any]:
        """Dotted keys -> values, e.g. for MLflow params."""
        return flatten(self.to_dict())

    def with_overrides(self, overrides: list[str] | dict[str, Any]) -> Config:
        data = self.to_dict()
        apply_overrides(data, overrides)
        config = config_from_dict(data)
        validate_ranges(config)
        return config


FAMILIES_FIELD = "families"


def config_from_dict(data: dict[str, Any]) -> Config:
    """A :class:`Config` from its ``to_dict`` form; errors name the dotted key.

    Top-level keys named after a registered family are that family's section; ``model`` must be
    a registered family.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"the config must be a mapping, got {data!r}")
    classes = config_classes()
    shared_names = {f.name for f in dataclasses.fields(Config)} - {FAMILIES_FIELD}
    unknown = sorted(set(data) - shared_names - set(classes))
    if unknown:
        known = ", ".join(sorted(shared_names | set(classes)))
        raise ConfigError(f"unknown config key '{unknown[0]}' (known keys here: {known})")
    hints = get_type_hints(Config)
    shared = {name: _coerce(hints[name], data[name], name) for name in shared_names if name in data}
    families = discover()
    if "model" in shared and shared["model"] not in families:
        raise ConfigError(f"config key 'model': expected one of {sorted(families)}, got {shared['model']!r}")
    sections = {name: from_dict(cls, {} if data.get(name) is None else data[name], f"{name}.") for name, cls in classes.items()}
    return Config(**shared, families=sections)


# --------------------------------------------------------------------------- loading


BY_MODEL = "by_model"  # profile key: {family: {keys}} applied only when config.model is that family
EXTENDS = "extends"  # profile key: the name of a profile applied first (its keys, then this one's)


def resolve_profile(
    profiles: dict[str, Any], name: str, source: str | Path | None = "params.yaml"
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A profile's flat keys and its ``by_model`` keys per family, the profiles it extends applied first.

    ``extends`` lets a profile say "like cpu, except ...": the demo profile is the cpu profile on
    the small sample, so a measured cpu choice reaches the demo without being copied.
    """
    chain: list[str] = []
    current: Any = name
    while current:
        if current in chain:
            raise ConfigError(f"{source}: profiles extend each other in a loop: {' -> '.join([*chain, current])}")
        if current not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            if chain:
                raise ConfigError(
                    f"{source}: profile '{chain[-1]}' extends '{current}', which is not a profile (profiles: {known})"
                )
            raise ConfigError(f"unknown profile '{current}' (profiles in {source}: {known})")
        entry = profiles[current] or {}
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: profile '{current}' must be a mapping of keys, got {type(entry).__name__}")
        chain.append(current)
        current = entry.get(EXTENDS)
    keys: dict[str, Any] = {}
    by_model: dict[str, dict[str, Any]] = {}
    for profile in reversed(chain):  # the base first, so the extending profile's keys win
        entry = {k: v for k, v in (profiles[profile] or {}).items() if k != EXTENDS}
        for family, family_keys in (entry.pop(BY_MODEL, None) or {}).items():
            by_model.setdefault(family, {}).update(flatten(family_keys or {}))
        keys.update(flatten(entry))
    return keys, by_model


def load_config(
    path: str | Path | None = "params.yaml",
    overrides: list[str] | dict[str, Any] | None = None,
    profile: str | None = None,
) -> Config:
    """Load ``path`` (missing file: built-in defaults), apply ``profile`` then ``overrides``."""
    raw: dict[str, Any] = {}
    if path is not None and Path(path).exists():
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    elif path is not None and str(path) != "params.yaml":
        raise ConfigError(f"config file not found: {path}")
    profiles = raw.pop("profiles", {}) or {}
    sweep = raw.pop("sweep", None)  # the search space is read by texinspect.tuning, not here
    del sweep
    data = copy.deepcopy(raw)
    by_model: dict[str, dict[str, Any]] = {}
    if profile:
        keys, by_model = resolve_profile(profiles, profile, path)
        apply_overrides(data, keys)
    if overrides:
        apply_overrides(data, overrides)
    if profile and by_model:
        # a profile's ``by_model.<family>`` keys apply only to that family (a choice measured for one
        # family is not imposed on the other); explicit overrides still win, so they go on again
        family_keys = by_model.get(data.get("model"))
        if family_keys:
            apply_overrides(data, family_keys)
            if overrides:
                apply_overrides(data, overrides)
    config = config_from_dict(data)
    validate_ranges(config)
    return config


def load_profiles(path: str | Path = "params.yaml") -> dict[str, dict[str, Any]]:
    if not Path(path).exists():
        return {}
    raw = yaml.safe_load(Path(path).read_text()) or {}
    return dict(raw.get("profiles", {}) or {})


def save_config(config: Config, path: str | Path) -> None:
    write_text_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=3`` -> ("a.b", 3); the value is parsed as YAML so lists and bools work."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value (e.g. train.batch_size=4)")
    key, _, value = text.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': value is not valid YAML: {exc}") from exc
    return key, parsed


def apply_overrides(data: dict[str, Any], overrides: list[str] | dict[str, Any]) -> None:
    items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides)
    for key, value in items:
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override '{key}': '{part}' is a value, not a section")
            node = nxt
        node[parts[-1]] = value


# --------------------------------------------------------------------------- typed conversion


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; errors name the dotted key."""
    if not isinstance(data, dict):
        raise ConfigError(f"'{prefix.rstrip('.') or '<root>'}' must be a mapping, got {data!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        key = prefix + unknown[0]
        raise ConfigError(f"unknown config key '{key}' (known keys here: {', '.join(sorted(names))})")
    kwargs = {name: _coerce(hints[name], data[name], prefix + name) for name in names if name in data}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key + ".")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"config key '{key}': expected one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None and type(None) in get_args(tp):
            return None
        errors = []
        for arg in args:
            try:
                return _coerce(arg, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        (item,) = get_args(tp)[:1] or (Any,)
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
        return value
    return value
