"""What a run was made from: the git commit of the code and the DVC hash of the data.

The dataset hash is computed exactly as DVC computes a directory's ``md5`` (a ``.dir`` hash over
the sorted file list), so the value logged with a run can be compared with ``data.dvc`` and with
``dvc.lock``. When the dataset folder lies inside a DVC-tracked folder (``data/sample`` inside
``data/``, tracked by ``data.dvc``), the hash recorded in that ``.dvc`` file is logged too.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

import texinspect

log = logging.getLogger(__name__)

COMMIT_ENV_VARS = ("TEXINSPECT_GIT_COMMIT", "GIT_COMMIT")  # for containers without .git


def code_dir() -> Path:
    """Where the running texinspect code lives (a checkout for an editable install)."""

    return Path(texinspect.__file__).resolve().parent


def git_info(cwd: str | Path | None = None) -> dict[str, str]:
    """``git.commit``, ``git.dirty``, ``git.branch`` of the code that runs.

    Looks in ``cwd`` if given, else in the checkout holding the texinspect package (an editable
    install), else in the working directory; outside any repository (an installed package in a
    container) the commit comes from ``TEXINSPECT_GIT_COMMIT`` / ``GIT_COMMIT`` if set. Only
    read-only git commands run (``--no-optional-locks`` keeps ``status`` from touching the index).
    """
    for where in [str(cwd)] if cwd is not None else [str(code_dir()), str(Path.cwd())]:
        info = _git_info_at(where)
        if info:
            return info
    env_commit = next((os.environ[n] for n in COMMIT_ENV_VARS if os.environ.get(n)), None)
    return {"git.commit": env_commit} if env_commit else {}


def _git_info_at(where: str) -> dict[str, str]:
    """Commit, dirty flag and branch of the repository around ``where`` ({} outside one)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "--no-optional-locks", *args],
                cwd=where,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    info: dict[str, str] = {}
    commit = git("rev-parse", "HEAD")
    if commit:
        info["git.commit"] = commit
        status = git("status", "--porcelain", "--untracked-files=no")
        if status is not None:
            info["git.dirty"] = str(bool(status)).lower()
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
        if branch:
            info["git.branch"] = branch
    return info


_HASH_CACHE: dict[tuple[str, int], dict[str, Any]] = {}  # (folder, listing fingerprint) -> result


def dvc_dir_hash(root: str | Path) -> dict[str, Any]:
    """DVC's ``md5`` of a folder (``<hex>.dir``), its file count and total size.

    Remembered per process while no file's size or modification time changes, so a sweep's
    many runs hash the dataset once.
    """
    base = Path(root)
    files = [p for p in sorted(base.rglob("*")) if p.is_file() and not _ignored_by_dvc(p.relative_to(base))]
    stats = tuple((p.relative_to(base).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (str(base.resolve()), hash(stats))
    if key not in _HASH_CACHE:
        _HASH_CACHE[key] = _hash_files(base, files)
    return dict(_HASH_CACHE[key])


def _hash_files(base: Path, files: list[Path]) -> dict[str, Any]:
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.meta import Meta
    from dvc_data.hashfile.tree import Tree

    tree = Tree()
    size = 0
    for path in files:
        digest = hashlib.md5()  # noqa: S324 - DVC's content hash, not for security
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        n = path.stat().st_size
        size += n
        tree.add(path.relative_to(base).parts, Meta(size=n), HashInfo("md5", digest.hexdigest()))
    tree.digest()
    return {"md5": str(tree.hash_info.value), "nfiles": len(tree), "size": size}


def _ignored_by_dvc(rel: Path) -> bool:
    """DVC's built-in ignores inside a tracked folder (VCS and DVC metadata folders)."""
    return any(part in (".git", ".hg", ".dvc") for part in rel.parts[:-1]) or rel.name == ".dvcignore"


def tracking_dvc_file(path: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The ``.dvc`` file whose output contains ``path`` (searching upwards), with that output."""
    target = Path(path).resolve()
    for folder in (target, *target.parents):
        candidate = folder.parent / f"{folder.name}.dvc"
        if candidate.is_file():
            try:
                spec = yaml.safe_load(candidate.read_text()) or {}
            except (OSError, yaml.YAMLError):
                return None
            for out in spec.get("outs", []) or []:
                if (candidate.parent / str(out.get("path", ""))).resolve() == folder:
                    return candidate, out
    return None


def dataset_version(root: str | Path) -> dict[str, Any]:
    """Dataset identity for a run: ``dataset.md5`` etc.; empty if the folder does not exist."""
    base = Path(root)
    if not base.is_dir():
        log.warning("dataset folder %s not found: no dataset version logged", base)
        return {}
    try:
        digest = dvc_dir_hash(base)
    except ImportError:  # pragma: no cover - dvc comes with the `data` extra
        log.warning("dvc-data is not installed: no dataset version logged")
        return {}
    out: dict[str, Any] = {
        "dataset.path": str(root),
        "dataset.md5": digest["md5"],
        "dataset.nfiles": digest["nfiles"],
        "dataset.size": digest["size"],
    }
    tracked = tracking_dvc_file(base)
    if tracked is not None:
        dvc_file, spec = tracked
        out["dataset.dvc_file"] = os.path.relpath(dvc_file, Path.cwd())
        out["dataset.dvc_md5"] = str(spec.get("md5", ""))
        if (dvc_file.parent / str(spec.get("path"))).resolve() == base.resolve():
            out["dataset.dvc_matches"] = str(out["dataset.dvc_md5"] == digest["md5"]).lower()
    return out
