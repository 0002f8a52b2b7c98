"""Helpers for the benchmark smoke tests: load a script from ``benchmarks/``, the shared flags.

The scripts live in ``benchmarks/`` (not a package) and import ``common`` from beside them, as
they do when run as ``python benchmarks/<script>.py``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"

# Every smoke run: smoke profile (tiny widths), 64 px, procedural anomaly sources, one thread.
SMOKE = ["--profile", "smoke", "--image-size", "64", "--threads", "1", "--set", "synthesis.texture_pool="]


def load_script(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` the way running it as a script would resolve ``common``."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    loaded = sys.modules.get("common")
    if loaded is not None and Path(getattr(loaded, "__file__", "")).resolve() != BENCH / "common.py":
        raise RuntimeError(f"another module named 'common' is loaded ({loaded.__file__}); benchmarks need theirs")
    return importlib.import_module(name)
