"""Issue 19: the hpo extra installs only what texinspect imports (optuna-integration was a
dependency nothing used; the sweep's MLflow parent/child runs span pods, which its single-process
MLflowCallback does not)."""

from __future__ import annotations

import ast
import re
import tomllib

from .conftest import REPO


def _imported_top_levels() -> set[str]:
    found: set[str] = set()
    for path in (REPO / "src" / "texinspect").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found


def test_every_hpo_dependency_is_imported() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    imported = _imported_top_levels()
    for requirement in extras["hpo"]:
        name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]
        assert name.replace("-", "_").lower() in imported, f"hpo extra lists {name}, which src/texinspect never imports"
