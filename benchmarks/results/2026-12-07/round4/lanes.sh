#!/usr/bin/env bash
# Issue 17, round 4 (2026-12-07): mirrored training images (data.augment=flips) for both families
# on both surfaces, and a rerun of each family's cpu profile, seed 0, to show that a step-budget run
# reproduces its figures (issue 17 item 6). Two 1-thread lanes side by side on the 2 cores, the
# diagnosis budgets of rounds 1-3 (RB-AE 300 + 600 steps, FMR-Net 900 + 600). Run from the
# repository root under ../shared/tools/quiet.
set -u
OUT=benchmarks/results/2026-12-07/round4
RUNS=benchmarks/runs/r4
MT=../shared/datasets/magnetic_tile
ELPV=../shared/datasets/elpv/mono
(
  .venv/bin/python benchmarks/diagnose.py --family rbae --threads 1 --steps1 300 --steps2 600 --data $MT $ELPV \
    --variant cpu: --variant flips:data.augment=flips --out $RUNS/rbae --csv $OUT/diagnose_rbae.csv > $OUT/rbae.log 2>&1
) &
(
  .venv/bin/python benchmarks/diagnose.py --family fmrnet --threads 1 --steps1 900 --steps2 600 --data $MT \
    --variant cpu: --variant flips:data.augment=flips --out $RUNS/fmrnet --csv $OUT/diagnose_fmrnet_mt.csv > $OUT/fmrnet_mt.log 2>&1
  .venv/bin/python benchmarks/diagnose.py --family fmrnet --threads 1 --steps1 900 --steps2 600 --data $ELPV \
    --variant flips:data.augment=flips --out $RUNS/fmrnet --csv $OUT/diagnose_fmrnet_elpv.csv > $OUT/fmrnet_elpv.log 2>&1
) &
wait
