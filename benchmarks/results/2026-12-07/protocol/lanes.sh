#!/usr/bin/env bash
# Issue 17, round 2 (2026-12-07): the cpu profile with DRAEM-style synthesis. Two 1-thread lanes side by
# side on the 2 cores, step budgets at half the 15 minutes (RB-AE 500 + 1300, reference 1625),
# magnetic tile and ELPV mono. Lane 1: RB-AE seeds 0-2, then FMR-Net's cpu profile at the diagnosis
# budget with the new synthesis (its old-synthesis twin is re-measured, not retrained). Lane 2: the
# reference's seeds 1 and 2 (seed 0: ../reference/, same steps and code, reproducible by seed).
# Run from the repository root under ../shared/tools/quiet.
set -u
OUT=benchmarks/results/2026-12-07/protocol
RUNS=benchmarks/runs/q1207b
DATA="../shared/datasets/magnetic_tile ../shared/datasets/elpv/mono"
(
  .venv/bin/python benchmarks/quality.py --rows rbae --seeds 0 1 2 --threads 1 --data $DATA \
    --steps-phase1 500 --steps-phase2 1300 --out $RUNS/rbae --results $OUT/rbae > $OUT/rbae.log 2>&1
  .venv/bin/python benchmarks/diagnose.py --family fmrnet --threads 1 --steps1 900 --steps2 600 \
    --out $RUNS/fmrnet --csv $OUT/diagnose_fmrnet.csv --variant cpu_draem_synthesis: > $OUT/fmrnet.log 2>&1
) &
.venv/bin/python benchmarks/quality.py --rows reference --seeds 1 2 --threads 1 --data $DATA \
  --reference-steps 1625 --out $RUNS/reference --results $OUT/reference > $OUT/reference.log 2>&1 &
wait
