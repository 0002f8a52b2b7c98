#!/usr/bin/env bash
# Issue 17 round 6: FMR-Net's cpu profile with training normals relit (data.gain_jitter 0.25), the
# round-5 diagnosis budget (900 + 600 steps, seed 0), two 1-thread lanes (ELPV | magnetic tile).
# Its twin without the jitter is round 5's img256s64_draem (same code path, same budget, same seed).
# Run from a worktree of the code (PYTHONPATH=<worktree>/src) under ../shared/tools/quiet.
set -u
M=${M:-/work/main}
OUT=$M/benchmarks/results/2026-12-07/round6
PY=${PY:-$M/.venv/bin/python}
lane() {  # $1 data, $2 tag
  $PY benchmarks/diagnose.py --family fmrnet --threads 1 --steps1 900 --steps2 600 --data "$1" \
    --variant jitter25:data.gain_jitter=0.25 --out $M/benchmarks/runs/r6/$2 \
    --csv $OUT/diagnose_fmrnet_$2.csv > $OUT/diagnose_fmrnet_$2.log 2>&1
}
lane ../shared/datasets/elpv/mono elpv &
lane ../shared/datasets/magnetic_tile mt &
wait
