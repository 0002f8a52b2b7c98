"""Which optional extras the pipeline components need, derived from what their code imports.

Static (``ast``), so nothing is imported: start from the modules a component body imports, follow
every ``texinspect`` import (module level and inside functions: the CLI dispatches lazily, and a
lazy import still runs in the task), collect the third-party top-level modules on the way, and
map them through the installed distributions to the extras in ``pyproject.toml`` that name them.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import re
import sys
import textwrap
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
META_EXTRAS = {"all", "dev"}


def _module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(tree: ast.AST, package: str) -> set[str]:
    """Absolute module names imported anywhere in ``tree`` (``from a import b`` gives a and a.b)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def component_entry_modules() -> set[str]:
    """Modules the tasks import: each body's imports, and the ``python -m`` module KFP's compiled
    command runs around it (its executor, which must be in the image: nothing is installed)."""
    from texinspect.kubeflow import sweep_pipeline
    from texinspect.kubeflow.components import STAGES, build_components

    bodies: Iterable[Callable[..., object]] = [*STAGES.values(), *sweep_pipeline.SWEEP_STAGES.values()]
    found: set[str] = set()
    for fn in bodies:
        found |= _imports(ast.parse(textwrap.dedent(inspect.getsource(fn))), "texinspect")
    for component in build_components("image").values():
        container = component.component_spec.implementation.container
        found |= set(re.findall(r"python3? -m ([\w.]+)", " ".join(container.command or [])))
    return found


def third_party_closure(entry: Iterable[str]) -> set[str]:
    """Top-level third-party modules reachable from ``entry`` through texinspect's own imports."""
    seen: set[str] = set()
    third: set[str] = set()
    todo = list(entry)
    while todo:
        name = todo.pop()
        top = name.split(".")[0]
        if top != "texinspect":
            if top and top not in sys.stdlib_module_names and not top.startswith("_"):
                third.add(top)
            continue
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c
            module = ".".join(parts[:i])
            path = _module_file(module)
            if path is None or module in seen:
                continue
            seen.add(module)
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            todo.extend(_imports(ast.parse(path.read_text()), package))
    return third


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(reqs: Iterable[str]) -> set[str]:
    """Distribution names of requirement strings whose markers hold here (no extras selected)."""
    from packaging.requirements import Requirement

    names = set()
    for text in reqs:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            names.add(_norm(req.name))
    return names


def installed_closure(names: Iterable[str]) -> set[str]:
    """``names`` and every distribution they require, transitively, as installed here."""
    seen: set[str] = set()
    todo = [_norm(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo.extend(_requirement_names(requires) - seen)
    return seen


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def extras_of_pyproject() -> dict[str, set[str]]:
    """Extra -> the distributions it brings, transitively (``all``/``dev`` left out)."""
    extras = _project()["optional-dependencies"]
    return {
        extra: installed_closure(_requirement_names(reqs))
        for extra, reqs in extras.items()
        if extra not in META_EXTRAS
    }


def needed_distributions(entry: Iterable[str]) -> dict[str, str]:
    """Distribution -> a module the components import from it, for those the core install lacks."""
    core = installed_closure(_requirement_names(_project().get("dependencies", [])))
    dists = importlib.metadata.packages_distributions()
    needed: dict[str, str] = {}
    for module in sorted(third_party_closure(entry)):
        for dist in dists.get(module, [module]):
            if _norm(dist) not in core:
                needed.setdefault(_norm(dist), module)
    return needed


def uncovered(entry: Iterable[str], installed_extras: Iterable[str]) -> dict[str, str]:
    """Needed distributions (-> importing module) that none of ``installed_extras`` brings."""
    extras = extras_of_pyproject()
    brought = set().union(*(extras.get(e, set()) for e in installed_extras))
    return {dist: module for dist, module in needed_distributions(entry).items() if dist not in brought}


def extras_needed(entry: Iterable[str]) -> set[str]:
    """The extras that list a needed distribution directly (the ones an image must name)."""
    direct = {e: _requirement_names(r) for e, r in _project()["optional-dependencies"].items() if e not in META_EXTRAS}
    needed = set(needed_distributions(entry))
    return {extra for extra, reqs in direct.items() if reqs & needed}
