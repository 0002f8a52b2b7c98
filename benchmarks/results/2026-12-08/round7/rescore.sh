#!/usr/bin/env bash
# Issue 17 round 7: RB-AE's half-budget (2026-12-07 protocol) and 15-minute (round 7) models on two
# synthetic sets and their test split, the 15-minute ones also with score smoothing 0 and 2; two
# 1-thread lanes (magnetic tile | ELPV). Inference only. Run from a worktree of the code
# (PYTHONPATH=<worktree>/src) under ../shared/tools/quiet.
set -u
M=${M:-/work/main}
OUT=$M/benchmarks/results/2026-12-08/round7
PY=${PY:-$M/.venv/bin/python}
HALF=$M/benchmarks/runs/q1207b/rbae; FULL=$M/benchmarks/runs/q1208r7
lane() {  # $1 surface folder, $2 tag, $3 sigmas
  # shellcheck disable=SC2086
  $PY "$OUT/rescore.py" "$OUT/rescore_rbae_$2.csv" --sigmas $3 \
    --models $HALF/$1/rbae/seed{0,1,2}/model --derive $FULL/rbae_*/$1/rbae/seed{0,1,2}/model \
    > "$OUT/rescore_rbae_$2.log" 2>&1
}
lane magnetic_tile mt "0 2" &
lane elpv_mono elpv "0" &
wait
