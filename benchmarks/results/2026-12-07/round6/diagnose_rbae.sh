#!/usr/bin/env bash
# Issue 17 round 6: does relighting help RB-AE too? Its cpu profile with and without
# data.gain_jitter 0.25 at RB-AE's diagnosis budget (300 + 600 steps, seed 0), two 1-thread lanes
# (ELPV | magnetic tile). Run from a worktree of the code (PYTHONPATH=<worktree>/src) under ../shared/tools/quiet.
set -u
M=${M:-/work/main}
OUT=$M/benchmarks/results/2026-12-07/round6
PY=${PY:-$M/.venv/bin/python}
lane() {  # $1 data, $2 tag
  $PY benchmarks/diagnose.py --family rbae --threads 1 --steps1 300 --steps2 600 --data "$1" \
    --variant cpu: --variant jitter25:data.gain_jitter=0.25 --out $M/benchmarks/runs/r6rbae/$2 \
    --csv $OUT/diagnose_rbae_$2.csv > $OUT/diagnose_rbae_$2.log 2>&1
}
lane ../shared/datasets/elpv/mono elpv &
lane ../shared/datasets/magnetic_tile mt &
wait
