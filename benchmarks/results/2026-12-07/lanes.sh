#!/usr/bin/env bash
# Issue 17 benchmark, 2026-12-07: two 1-thread lanes side by side on the 2 cores, step budgets,
# seed 0, magnetic tile and ELPV mono. Run from the repository root under ../shared/tools/quiet.
set -u
S1=${S1:?phase-1 steps}; S2=${S2:?phase-2 steps}; R=${R:?reference steps}
OUT=benchmarks/results/2026-12-07
DATA="../shared/datasets/magnetic_tile ../shared/datasets/elpv/mono"
.venv/bin/python benchmarks/quality.py --rows rbae --seeds 0 --threads 1 --data $DATA \
  --steps-phase1 "$S1" --steps-phase2 "$S2" --out benchmarks/runs/q1207/rbae --results $OUT/rbae > $OUT/rbae.log 2>&1 &
.venv/bin/python benchmarks/quality.py --rows reference --seeds 0 --threads 1 --data $DATA \
  --reference-steps "$R" --out benchmarks/runs/q1207/reference --results $OUT/reference > $OUT/reference.log 2>&1 &
wait
