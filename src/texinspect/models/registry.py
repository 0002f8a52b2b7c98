"""The family registry: family name -> the package that builds and trains it, and its config class.

Learned from timm's ``register_model``: a family registers itself from its own folder, so adding
one touches that folder only. Each folder under ``texinspect/models/`` with a ``config.py`` is a
family; that module calls :func:`register_family` (usually as a decorator on the family's config
dataclass, whose fields become the ``<family>.*`` keys of ``params.yaml``). A family without
tunable keys (AE-SSIM) registers with no config class.

Discovery imports only those light ``config`` modules, and only when a name is first looked up,
so :mod:`texinspect.config` (which needs the config classes to read ``params.yaml``) sits below
every family and imports none of them. The family package itself (network, trainer) is imported
by :func:`family_module` when it is used. Outside code (benchmark baselines, test doubles,
plugins) adds a family at run time with :func:`register`.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

from texinspect.errors import ModelError

MODELS_PACKAGE = "texinspect.models"
CONFIG_MODULE = "config"  # a family folder's module that registers it

T = TypeVar("T")


@dataclass(frozen=True)
class FamilySpec:
    """What the rest of texinspect knows of a family.

    ``module`` exposes ``build(config) -> Detector`` and ``train(config, out_dir, resume=True) ->
    Path`` (docs/architecture.md). ``config_class`` is the dataclass of the ``<name>`` section of
    the config, or None when the family has no keys.
    """

    name: str
    module: str
    config_class: type | None = None


FAMILIES: dict[str, FamilySpec] = {}
_discovered = False


def register_family(name: str, module: str | None = None) -> Callable[[T], T]:
    """Decorator for a family's config class: ``@register_family("rbae")`` above ``RBAEConfig``.

    ``module`` defaults to the package the config class lives in (``texinspect.models.rbae``).
    """

    def decorate(config_class: T) -> T:
        package = module or str(getattr(config_class, "__module__", "")).rpartition(".")[0]
        register(name, package, config_class)  # type: ignore[arg-type]
        return config_class

    return decorate


def register(name: str, module: str, config_class: type | None = None) -> FamilySpec:
    """Add or replace a family at run time (baselines in benchmarks, test doubles, plugins).

    The families in ``texinspect/models/`` are discovered first, so a replacement stays replaced.
    Replacing a family without naming a config class keeps its config section (a test double
    that stands in for ``rbae`` reads the same ``rbae.*`` keys).
    """
    if not name.isidentifier():
        raise ModelError(f"family name {name!r} must be a Python identifier (it is a config section)")
    discover()
    if config_class is None and name in FAMILIES:
        config_class = FAMILIES[name].config_class
    spec = FamilySpec(name, module, config_class)
    FAMILIES[name] = spec
    return spec


def discover() -> dict[str, FamilySpec]:
    """Every registered family, importing each ``texinspect/models/<family>/config.py`` once."""
    global _discovered
    if not _discovered:
        _discovered = True
        package = importlib.import_module(MODELS_PACKAGE)
        for info in pkgutil.iter_modules(package.__path__):
            if info.ispkg and importlib.util.find_spec(f"{MODELS_PACKAGE}.{info.name}.{CONFIG_MODULE}"):
                importlib.import_module(f"{MODELS_PACKAGE}.{info.name}.{CONFIG_MODULE}")
    return FAMILIES


def family_spec(name: str) -> FamilySpec:
    families = discover()
    if name not in families:
        raise ModelError(f"unknown model family '{name}' (known: {', '.join(sorted(families))})")
    return families[name]


def family_module(name: str) -> ModuleType:
    """The family's package, which has ``build`` and ``train``."""
    return importlib.import_module(family_spec(name).module)


def config_classes() -> dict[str, type]:
    """Family name -> config class, for the families that have keys (sorted by name)."""
    return {name: spec.config_class for name, spec in sorted(discover().items()) if spec.config_class is not None}


def default_sections() -> dict[str, Any]:
    """A default instance of every family's config section."""
    return {name: cls() for name, cls in config_classes().items()}
