#!/usr/bin/env bash
# Issue 17 item 5, round 6: candidate synthetic validation sets judged on models that exist (no
# training): the ELPV models of the issue and the magnetic-tile models of rounds 2-6, each measured
# on every set, for exposure_rho, and on its test split; two 1-thread lanes. Lists: *_models.txt.
# Run from a worktree of the code (PYTHONPATH=<worktree>/src, benchmarks/runs linked to main's).
set -u
M=${M:-/work/main}
OUT=$M/benchmarks/results/2026-12-07/round6
PY=${PY:-$M/.venv/bin/python}
FULL="synthesis.defect_probability=0.5,synthesis.transparency_min=0.15,synthesis.destructive_probability=0.5,synthesis.self_texture_probability=0.2,synthesis.shift_probability=0.15,synthesis.intensity_match=0.5,synthesis.mask.shape_probability=0.3,synthesis.mask.soft_probability=0.25,synthesis.mask.local_probability=0.3"
SETS=(--yardstick syn: --yardstick relevel:synthesis.intensity_match=1.0
      --yardstick shapes:synthesis.intensity_match=1.0,synthesis.mask.shape_probability=0.5
      --yardstick "full:$FULL")
lane() {  # $1 model list, $2 tag
  $PY benchmarks/selection.py --models $(cat "$1") "${SETS[@]}" --val-images 120 --threads 1 \
    --csv $OUT/yardsticks_$2.csv > $OUT/yardsticks_$2.log 2>&1
}
lane $OUT/elpv_models.txt elpv &
lane $OUT/mt_models.txt mt &
wait
