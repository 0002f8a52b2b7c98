#!/usr/bin/env bash
# Issue 17 item 6 (2026-12-07): the cpu profile of each family rerun with seed 0 exactly as in
# lanes.sh (same code, steps, threads, data), into fresh folders: a step-budget run must reproduce
# its figures. Two 1-thread lanes; run from the repository root under ../shared/tools/quiet.
set -u
OUT=benchmarks/results/2026-12-07/round4
RUNS=benchmarks/runs/r4_repro
MT=../shared/datasets/magnetic_tile
.venv/bin/python benchmarks/diagnose.py --family rbae --threads 1 --steps1 300 --steps2 600 --data $MT \
  --variant cpu: --out $RUNS/rbae --csv $OUT/repro_rbae.csv > $OUT/repro_rbae.log 2>&1 &
.venv/bin/python benchmarks/diagnose.py --family fmrnet --threads 1 --steps1 900 --steps2 600 --data $MT \
  --variant cpu: --out $RUNS/fmrnet --csv $OUT/repro_fmrnet.csv > $OUT/repro_fmrnet.log 2>&1 &
wait
