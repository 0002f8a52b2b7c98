"""The layout rules of docs/architecture.md, checked on the source so that they stay true.

The import rules themselves (layers, no cycles) are import-linter contracts in pyproject.toml;
``make test`` runs ``lint-imports`` before pytest, and the first test here runs it too so that a
plain ``pytest`` catches a broken rule. The rest are what import-linter cannot see: an import
hidden inside a function, a function too long to read, a package that does not say what it holds.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "texinspect"
MAX_FUNCTION_LINES = 60
DEFERRED = "# deferred:"  # the comment that says why an import sits inside a function

# Where every import sits inside a function on purpose (paths relative to src/texinspect/):
IMPORTS_INSIDE_BY_DESIGN = {
    # KFP lightweight components run their body alone in a container: every import must be inside
    "kubeflow/components.py": "KFP component bodies",
    "kubeflow/sweep_pipeline.py": "KFP component bodies (sweep_setup, sweep_worker, sweep_best)",
    # the top layer, imported by nothing (so it can dodge no cycle): a command loads its library
    # only when it runs, so that `texinspect --help` and argument errors answer at once
    "cli/": "command handlers",
}

# Declarative functions may be longer: they list things (a pipeline's tasks), they do not branch.
DECLARATIVE = {
    ("kubeflow/training_pipeline.py", "build_pipeline"),
    ("kubeflow/training_pipeline.py", "texinspect_training"),
    ("kubeflow/sweep_pipeline.py", "build_sweep_pipeline"),
}


def _sources() -> Iterator[tuple[str, ast.Module, list[str]]]:
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        yield path.relative_to(SRC).as_posix(), ast.parse(text), text.splitlines()


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_import_contracts_hold() -> None:
    """``lint-imports``: layers from ``errors`` up to ``cli``, and no cycles inside any package."""
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.fail(f"{exe} not found: import-linter is a dev dependency (pip install -e '.[dev]')")
    done = subprocess.run([str(exe), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_imports_inside_functions_say_why() -> None:
    """An import of texinspect inside a function hides a dependency from the import rules, so each
    one must say why it is there (``# deferred: <reason>``, e.g. an optional extra or a slow import);
    an import that only dodged a cycle has no reason left once the layers hold."""
    unexplained = []
    for rel, tree, lines in _sources():
        if any(rel == place or (place.endswith("/") and rel.startswith(place)) for place in IMPORTS_INSIDE_BY_DESIGN):
            continue
        for function in _functions(tree):
            for node in ast.walk(function):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                if not any(name == "texinspect" or name.startswith("texinspect.") for name in names):
                    continue
                text = " ".join(lines[node.lineno - 1 : node.end_lineno])
                if DEFERRED not in text:
                    unexplained.append(f"{rel}:{node.lineno} in {function.name}(): {lines[node.lineno - 1].strip()}")
    assert unexplained == [], "\n".join(unexplained)


def test_functions_fit_on_a_screen() -> None:
    too_long = []
    for rel, tree, _ in _sources():
        for function in _functions(tree):
            length = (function.end_lineno or function.lineno) - function.lineno + 1
            if length > MAX_FUNCTION_LINES and (rel, function.name) not in DECLARATIVE:
                too_long.append(f"{rel}:{function.lineno} {function.name}: {length} lines")
    assert too_long == [], "\n".join(too_long)


def test_every_package_says_what_lives_there() -> None:
    """Each package's docstring opens with at most two lines that say what lives there."""
    missing = []
    for init in sorted(SRC.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        summary = doc.split("\n\n")[0].splitlines() if doc else []
        if not summary or len(" ".join(summary).split()) < 8 or len(summary) > 2:
            missing.append(init.relative_to(SRC).as_posix())
    assert missing == [], f"packages without a two-line docstring saying what lives there: {missing}"


def test_the_declarative_exceptions_still_exist() -> None:
    """An exception for a function that was renamed or split would silently allow the next one."""
    defined = {(rel, f.name) for rel, tree, _ in _sources() for f in _functions(tree)}
    assert DECLARATIVE <= defined, sorted(DECLARATIVE - defined)
    assert all((SRC / rel).exists() for rel in IMPORTS_INSIDE_BY_DESIGN)


def _layers() -> list[list[str]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in config if c["type"] == "layers"]
    return [[m.strip() for m in layer.replace(":", "|").split("|")] for layer in layers]


def _picture() -> str:
    doc = (REPO / "docs" / "architecture.md").read_text()
    section = doc.split("## The layout in one picture", 1)[1]
    return section.split("```", 2)[1]


def test_the_architecture_picture_matches_the_layers() -> None:
    """docs/architecture.md draws every layer of the import contract, top to bottom in its order."""
    picture = _picture()
    positions = []
    for layer in _layers():
        found = []
        for module in layer:
            parts = module.split(".")[1:]
            tokens = ["/".join(parts) + "/", "/".join(parts) + ".py", parts[-1] + ".py", parts[-1] + "/"]
            hits = [picture.find(t) for t in tokens if picture.find(t) >= 0]
            assert hits, f"{module} is a layer in pyproject.toml but not in docs/architecture.md's picture"
            found.append(min(hits))
        positions.append((min(found), max(found), layer))
    for (_, upper_end, upper), (lower_start, _, lower) in zip(positions, positions[1:], strict=False):
        assert upper_end < lower_start, f"the picture draws {lower} above {upper}, the contract has it below"
