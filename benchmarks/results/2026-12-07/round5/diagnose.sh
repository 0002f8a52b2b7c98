#!/usr/bin/env bash
# Issue 17 round 5 diagnosis (not timed: step budgets, two 1-thread lanes, magnetic tile | ELPV mono).
# Run from the repository root. A: the network at 128 px; B: 256 px, non-overlapping windows, segmenter at half side.
set -u
PY=${PY:-.venv/bin/python}; OUT=benchmarks/results/2026-12-07/round5; RUNS=benchmarks/runs/r5
D=synthesis.defect_probability=0.6,synthesis.transparency_min=0.1,synthesis.destructive_probability=0.0,synthesis.self_texture_probability=0.0,synthesis.shift_probability=0.0,synthesis.intensity_match=0.0,synthesis.mask.shape_probability=0.0,synthesis.mask.soft_probability=0.0,synthesis.mask.local_probability=0.0
A=fmrnet.train_size=128,fmrnet.segmentation=pixel_unet,fmrnet.segmenter_training=images,fmrnet.patch_weight_power=0,fmrnet.image_score=map
B=fmrnet.patch_stride=64,fmrnet.segmentation=pixel_unet,fmrnet.segmenter_training=images,fmrnet.segmenter_scale=0.5,fmrnet.patch_weight_power=0,fmrnet.image_score=map
# These ran with this round's code and the params.yaml of before it (git show 7e2a520:params.yaml): its
# cpu profile had the paper-default synthesis for FMR-Net (the "syn" yardstick), stride 32, power 2 and the
# patch image score. The cpu profile now is B with D, so rerun these against that params.yaml to reproduce.
lane() {  # $1 data, $2 tag
  $PY benchmarks/diagnose.py --family fmrnet --threads 1 --steps1 900 --steps2 600 --data $1 \
    --variant img128_draem:$A,$D --variant img128:$A --rescore patch:fmrnet.image_score=patch \
    --yardstick draem:$D --out $RUNS/$2 --csv $OUT/diagnose_fmrnet_$2.csv > $OUT/diagnose_$2.log 2>&1
  $PY benchmarks/diagnose.py --family fmrnet --threads 1 --steps1 900 --steps2 600 --data $1 \
    --variant img256s64_draem:$B,$D --rescore patch:fmrnet.image_score=patch \
    --yardstick draem:$D --out $RUNS/$2 --csv $OUT/diagnose_fmrnet_$2_256.csv > $OUT/diagnose_$2_256.log 2>&1
}
lane ../shared/datasets/magnetic_tile mt &
lane ../shared/datasets/elpv/mono elpv &
wait
