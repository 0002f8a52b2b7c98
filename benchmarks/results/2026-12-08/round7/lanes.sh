#!/usr/bin/env bash
# Issue 17 round 7: the 15-minute step budget for RB-AE's cpu profile (1,000 + 2,600 steps) and the
# reference (3,250 steps), two 1-thread lanes side by side. Lane 1: the reference's seed 0 on
# magnetic tile, then RB-AE seed 1 on both surfaces. Lane 2: RB-AE seeds 0 and 2 on both surfaces.
# Run from a worktree of the code (PYTHONPATH=<worktree>/src) under ../shared/tools/quiet.
set -u
M=${M:-/work/main}
OUT=${OUT:-$M/benchmarks/results/2026-12-08/round7}
RUNS=${RUNS:-$M/benchmarks/runs/q1208r7}
PY=${PY:-$M/.venv/bin/python}
MT=../shared/datasets/magnetic_tile; ELPV=../shared/datasets/elpv/mono
rbae() {  # $1 tag, then seeds
  local tag=$1; shift
  $PY benchmarks/quality.py --rows rbae --seeds "$@" --threads 1 --data $MT $ELPV \
    --steps-phase1 1000 --steps-phase2 2600 --out $RUNS/rbae_$tag --results $OUT/rbae_$tag > $OUT/rbae_$tag.log 2>&1
}
(
  $PY benchmarks/quality.py --rows reference --seeds 0 --threads 1 --data $MT \
    --reference-steps 3250 --out $RUNS/reference_mt --results $OUT/reference_mt > $OUT/reference_mt.log 2>&1
  rbae s1 1
) &
rbae s02 0 2 &
wait
