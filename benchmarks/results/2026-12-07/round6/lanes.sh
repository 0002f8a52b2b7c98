#!/usr/bin/env bash
# Issue 17 round 6: round 5's lanes (FMR-Net's cpu profile at the 15-minute step budget, 1,260 + 580
# steps, seeds 0 1 2, two 1-thread lanes: magnetic tile | ELPV mono), now with data.gain_jitter 0.25
# in the profile. Run from a worktree of the code (PYTHONPATH=<worktree>/src) under ../shared/tools/quiet.
set -u
M=${M:-/work/main}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$M/benchmarks/results/2026-12-07/round6 RUNS=$M/benchmarks/runs/q1207r6 PY=${PY:-$M/.venv/bin/python} \
  bash "$HERE/../round5/lanes.sh"
