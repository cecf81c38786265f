#!/usr/bin/env bash
# The corrupted-input and classical-baseline tables of every task on the paper's test sets
# (redcore.evaluate; CSV/JSON under runs/eval).  Usage: bash bench/eval_baselines.sh [denoise|others|all]
# Takes about 20 minutes on 2 cores, most of it BM3D on BSD68.
set -euo pipefail
which=${1:-all}
run() { python -m redcore.evaluate "$@"; echo; }
if [[ $which == denoise || $which == all ]]; then
  for set in Set12 BSD68; do
    for sigma in 10 25 30 50 70; do run --task denoise --level $sigma --data $set; done
  done
fi
if [[ $which == others || $which == all ]]; then
  for scale in 2 3 4; do run --task sr --level $scale --data Set5; done
  for q in 10 20 30 40; do run --task jpeg --level $q --data classic5; done
  for blur in disk gaussian motion; do run --task deblur --level $blur --data Set12; done
  for level in text10 text20 scratches; do run --task inpaint --level $level --data Set12; done
fi
