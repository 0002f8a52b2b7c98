#!/usr/bin/env bash
# Issue 17 round 7: FMR-Net's cpu profile with RB-AE's learning-rate schedule (linear warm-up of 50
# steps, then half a cosine to 2 % over each phase's, and each restart candidate's, budget) instead of
# the paper's constant 1e-3. Round 6's diagnosis budget: 900 + 600 steps, seed 0, one thread per lane.
# Its twin is round 6's jitter25 (the current cpu profile, same seed and steps).
# SURFACES picks the lanes (default both, side by side: elpv mt).
# Run from a worktree of the code (PYTHONPATH=<worktree>/src) under ../shared/tools/quiet.
set -u
M=${M:-/work/main}
OUT=${OUT:-$M/benchmarks/results/2026-12-08/round7}
PY=${PY:-$M/.venv/bin/python}
SURFACES=${SURFACES:-elpv mt}
declare -A DATA=([elpv]=../shared/datasets/elpv/mono [mt]=../shared/datasets/magnetic_tile)
for s in $SURFACES; do
  $PY benchmarks/diagnose.py --family fmrnet --threads 1 --steps1 900 --steps2 600 --data "${DATA[$s]}" \
    --variant cosine:fmrnet.lr_schedule=cosine,fmrnet.warmup_steps=50 --out $M/benchmarks/runs/r7/$s \
    --csv $OUT/diagnose_fmrnet_$s.csv > $OUT/diagnose_fmrnet_$s.log 2>&1 &
done
wait
