#!/usr/bin/env bash
# Issue 17 round 6: does relighting help RB-AE too? Its cpu profile with and without
# data.gain_jitter 0.25 at RB-AE's diagnosis budget (300 + 600 steps, seed 0), diagnose.sh's two
# 1-thread lanes (ELPV | magnetic tile). Run from a worktree of the code under ../shared/tools/quiet.
FAMILY=rbae STEPS1=300 STEPS2=600 TAG=rbae VARIANTS="--variant cpu: --variant jitter25:data.gain_jitter=0.25" \
  exec bash "$(dirname "$0")/diagnose.sh"
