"""A throwaway clone of the project's DVC setup, and ``dvc`` / ``texinspect`` runners for it.

Tests never touch the DVC cache or remotes of the working tree: they copy the files a fresh
``git clone`` would have (dvc.yaml, data.dvc, params.yaml, .dvc/config, src/ for the code
dependencies) into a temporary repository and run DVC there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COPIED_FILES = (
    "dvc.yaml",
    "data.dvc",
    "params.yaml",
    ".dvcignore",
    ".gitignore",
    ".dvc/config",
    ".dvc/.gitignore",
)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class DvcRepo:
    """A temporary repository with the project's DVC files; commands run with the venv on PATH."""

    def __init__(self, root: Path, extra_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_TRACKING"))},
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "DVC_SITE_CACHE_DIR": str(root.parent / "dvc-site-cache"),
            "DVC_NO_ANALYTICS": "1",
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
            **(extra_env or {}),
        }

    @classmethod
    def clone(cls, tmp: Path) -> DvcRepo:
        root = tmp / "repo"
        root.mkdir(parents=True)
        for name in COPIED_FILES:
            src = REPO / name
            if src.exists():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, root / name)
        shutil.copytree(
            REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        )
        repo = cls(root)
        repo.git("init", "-q")
        repo.git("add", "-A")
        repo.git("commit", "-q", "-m", "clone")
        return repo

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> Result:
        done = subprocess.run(
            list(args),
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def git(self, *args: str) -> Result:
        result = self.run("git", *args)
        assert result.returncode == 0, result.output
        return result

    def dvc(self, *args: str, env: dict[str, str] | None = None, check: bool = True) -> Result:
        result = self.run(str(BIN / "dvc"), *args, env=env)
        if check:
            assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.output[-4000:]}"
        return result

    def texinspect(self, *args: str) -> Result:
        result = self.run(str(BIN / "texinspect"), *args)
        assert result.returncode == 0, f"texinspect {' '.join(args)} failed:\n{result.output[-4000:]}"
        return result

    # ------------------------------------------------------------------ files

    def params(self) -> dict[str, Any]:
        return yaml.safe_load((self.root / "params.yaml").read_text())

    def write_params(self, params: dict[str, Any]) -> None:
        (self.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def set_param(self, dotted: str, value: Any) -> None:
        params = self.params()
        node = params
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
        self.write_params(params)

    def set_profile_var(self, profile: str) -> None:
        """Change the ``profile`` var of dvc.yaml (the one line a user edits to pick a profile)."""
        text = (self.root / "dvc.yaml").read_text()
        new, n = re.subn(r"(?m)^(\s*-\s*profile:\s*).*$", lambda m: f'{m.group(1)}"{profile}"', text)
        assert n == 1, "dvc.yaml has no `- profile:` var"
        (self.root / "dvc.yaml").write_text(new)

    def make_sample_data(self) -> None:
        """The documented way to recreate data/: `texinspect data sample data/sample`."""
        self.texinspect("data", "sample", "data/sample")


def ran_stages(output: str) -> list[str]:
    """Stage names in the order `dvc repro` ran them."""
    return re.findall(r"Running stage '([^']+)'", output)
