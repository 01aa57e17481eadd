#!/usr/bin/env bash
# `make demo`: train a small model on the embedded synthetic dataset through train_net.py,
# evaluate it with --eval-only, and write visualized predictions. Everything lands in
# $DEMO_OUT (default output/demo); the synthetic data is generated on first use into
# $DETECTRON2_DATASETS (default ./datasets).
#
#   DEMO_CONFIG=configs/shapes/....yaml   which model to train (default below)
#   DEMO_ITERS=N                          override SOLVER.MAX_ITER
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
CONFIG=${DEMO_CONFIG:-configs/shapes/mask2former_R18_panoptic.yaml}
OUT=${DEMO_OUT:-output/demo}
export DETECTRON2_DATASETS=${DETECTRON2_DATASETS:-datasets}
ITERS_OPT=()
if [ -n "${DEMO_ITERS:-}" ]; then ITERS_OPT=(SOLVER.MAX_ITER "$DEMO_ITERS"); fi
say() { printf '\n[demo] %s\n' "$*"; }

say "1/3 training $CONFIG (synthetic shapes data in $DETECTRON2_DATASETS/shapes)"
"$PY" train_net.py --config-file "$CONFIG" OUTPUT_DIR "$OUT/train" SEED 0 "${ITERS_OPT[@]}"

say "2/3 evaluating $OUT/train/model_final.pth with --eval-only"
"$PY" train_net.py --config-file "$CONFIG" --eval-only \
  MODEL.WEIGHTS "$OUT/train/model_final.pth" OUTPUT_DIR "$OUT/eval" | tee "$OUT/eval.log"

say "3/3 visualizing predictions on validation images into $OUT/vis"
"$PY" tools/demo/demo_visualize.py --config-file "$CONFIG" --weights "$OUT/train/model_final.pth" \
  --output "$OUT/vis" --num-images 6

say "done: metrics in $OUT/eval.log, pictures in $OUT/vis/"
