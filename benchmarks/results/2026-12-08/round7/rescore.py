"""Issue 17 round 7: what a synthetic set sees of RB-AE's half- and full-budget models.

Inference only, no training. Every model folder given is measured by ``benchmarks/selection.py
--models`` (one thread) on the profile's synthetic set (``cpu``), on the same defects cut to one
small blob each (``small``: ``synthesis.mask.local_probability=1``) and on its test split. Each
model named after ``--derive`` is also measured with other ``eval.score_smoothing`` sigmas (the
Gaussian before the map's maximum; cpu profile: 4 px at 256 px), derived with thresholds
re-calibrated on its held-out normals (``benchmarks/common.derive_model``). Run from a worktree of
the code (PYTHONPATH=<worktree>/src):

    python .../rescore.py CSV --sigmas 0 2 --derive MODEL... --models MODEL...
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path.cwd() / "benchmarks"))
import torch  # noqa: E402
from common import derive_model  # noqa: E402

from texinspect.config import load_config  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("csv")
    parser.add_argument("--sigmas", type=float, nargs="*", default=[])
    parser.add_argument("--derive", nargs="*", default=[])
    parser.add_argument("--models", nargs="*", default=[])
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config("params.yaml", ["device=cpu"], "cpu")
    models = [*args.models, *args.derive]
    for base in map(Path, args.derive):
        for sigma in args.sigmas:
            target = base.parent.parent / f"{base.parent.name}_smoothing{sigma:g}" / "model"
            derive_model(base, [f"eval.score_smoothing={sigma}"], target, config)
            models.append(str(target))
    cmd = [sys.executable, "benchmarks/selection.py", "--threads", "1", "--models", *models,
           "--yardstick", "cpu:", "--yardstick", "small:synthesis.mask.local_probability=1.0", "--csv", args.csv]
    return subprocess.call(cmd)


if __name__ == "__main__":
    raise SystemExit(main())
