#!/usr/bin/env bash
# Issue 17 round 6: FMR-Net's cpu profile with training normals relit (data.gain_jitter 0.25), the
# round-5 diagnosis budget (900 + 600 steps, seed 0), two 1-thread lanes (ELPV | magnetic tile).
# Its twin without the jitter is round 5's img256s64_draem (same code path, same budget, same seed).
# FAMILY, STEPS1, STEPS2, VARIANTS and TAG reuse the lanes for another family (diagnose_rbae.sh).
# Run from a worktree of the code (PYTHONPATH=<worktree>/src) under ../shared/tools/quiet.
set -u
M=${M:-/work/main}
OUT=$M/benchmarks/results/2026-12-07/round6
PY=${PY:-$M/.venv/bin/python}
FAMILY=${FAMILY:-fmrnet}; STEPS1=${STEPS1:-900}; STEPS2=${STEPS2:-600}; TAG=${TAG:-}
VARIANTS=${VARIANTS:---variant jitter25:data.gain_jitter=0.25}
lane() {  # $1 data, $2 tag
  # shellcheck disable=SC2086  # VARIANTS is a list of flags
  $PY benchmarks/diagnose.py --family "$FAMILY" --threads 1 --steps1 "$STEPS1" --steps2 "$STEPS2" --data "$1" \
    $VARIANTS --out $M/benchmarks/runs/r6$TAG/$2 \
    --csv $OUT/diagnose_${FAMILY}_$2.csv > $OUT/diagnose_${FAMILY}_$2.log 2>&1
}
lane ../shared/datasets/elpv/mono elpv &
lane ../shared/datasets/magnetic_tile mt &
wait
