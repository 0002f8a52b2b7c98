#!/usr/bin/env bash
# Issue 17 round 5: FMR-Net's new cpu profile at the 15-minute step budget (1,260 + 580 steps,
# calibrated from speed.py at 2 threads), seeds 0 1 2, two 1-thread lanes side by side
# (magnetic tile | ELPV mono). Run from the repository root under ../shared/tools/quiet.
set -u
OUT=${OUT:-benchmarks/results/2026-12-07/round5}
RUNS=${RUNS:-benchmarks/runs/q1207r5}
PY=${PY:-.venv/bin/python}
lane() {  # $1 data, $2 tag
  $PY benchmarks/quality.py --rows fmrnet --seeds 0 1 2 --threads 1 --data "$1" \
    --steps-phase1 1260 --steps-phase2 580 --out $RUNS/$2 --results $OUT/fmrnet_$2 > $OUT/fmrnet_$2.log 2>&1
}
lane ../shared/datasets/magnetic_tile mt &
lane ../shared/datasets/elpv/mono elpv &
wait
