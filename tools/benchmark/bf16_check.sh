#!/usr/bin/env bash
# The issue-16 measurements on a machine without network whose CPU may have native bf16
# (avx512_bf16 / amx_bf16), e.g. an accelerator host: one command, reports under $OUT.
#
# Here, once:   python tools/benchmark/offline_kit.py --dest .whl
# There:        bash tools/benchmark/bf16_check.sh          (with .whl carried along)
#
# It needs python3 with torch, numpy, opencv, scipy, PIL, matplotlib, tqdm, tabulate, portalocker,
# cloudpickle, pyyaml, tokenizers, safetensors on that machine (an accelerator image has them);
# the kit adds detectron2 and the rest in a scratch folder on PYTHONPATH (ahead of the image's
# packages), so nothing installed there is replaced. The models run on the CPU (the benchmark
# sets MODEL.DEVICE cpu), also where a GPU is present. Steps, most important first (a later one
# may run out of time):
#   1. lscpu, versions, native bf16 or not (cpu_bf16_support), bf16 vs fp32 matmul rate;
#   2. network 512x512 batch 1: ours fp32, ours bf16, the peer fp32 (the issue's command with
#      --dtype bfloat16 --profile); without native bf16 it times fp32 only and says so;
#   3. training step 2x512x512, ours vs the peer (the issue's training command), unless
#      SKIP_TRAIN=1.
# Environment: OUT (default out/bf16_check), KIT (.whl), PYTHON (python3), THREADS (2), REPS (9).
# It writes at most 8 files (what an accelerator host sends back): environment.txt, steps.log,
# network_*.json/.log (the logs hold the printed tables), train.json/.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
KIT=${KIT:-.whl}
OUT=${OUT:-out/bf16_check}
PY=${PYTHON:-python3}
THREADS=${THREADS:-2}
REPS=${REPS:-9}
mkdir -p "$OUT"
say() { echo "[bf16_check $(date +%H:%M:%S)] $*" | tee -a "$OUT/steps.log"; }

# offline_kit.py writes its manifest last: without it the folder is not a finished kit.
if [ ! -f "$KIT/offline_kit.txt" ] || ! ls "$KIT"/*.whl >/dev/null 2>&1; then
  echo "[bf16_check] ERROR: no finished kit in $KIT/ (wheels and offline_kit.txt). Run" \
       "'python tools/benchmark/offline_kit.py --dest $KIT' on a machine that reaches the package" \
       "index, and carry $KIT along." >&2
  exit 2
fi
SITE=$(mktemp -d /tmp/restr_d2_kit.XXXXXX)
# The project itself too (from this working tree): its entry points register the model families.
say "installing $(ls "$KIT"/*.whl | wc -l) wheels from $KIT and this checkout into $SITE"
# pip builds the checkout in place, and setuptools leaves a build/ copy of the packages there
[ -e build ] && had_build=1 || had_build=0
"$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir \
  --target "$SITE" "$KIT"/*.whl . > "$SITE.pip.log" 2>&1
pip_rc=$?
[ "$had_build" = 0 ] && rm -rf build
if [ "$pip_rc" != 0 ]; then
  cat "$SITE.pip.log" >&2
  echo "[bf16_check] ERROR: the kit did not install (log above): were the wheels built for this" \
       "machine's Python ($("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])'))?" \
       "offline_kit.py --python-version X.Y" >&2
  exit 2
fi
# The checkout first (as an editable install would have it: tools/ finds configs/ beside it), the
# kit after it (its copy of this project only contributes the entry points' metadata).
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

say "step 1: environment, native bf16, matmul rates"
lscpu > "$OUT/environment.txt" 2>&1 || grep -m2 -E "model name|flags" /proc/cpuinfo > "$OUT/environment.txt"
"$PY" - "$THREADS" <<'EOF' 2>&1 | tee -a "$OUT/environment.txt"
import sys
import torch, numpy, transformers, detectron2
from segmentation_core.precision import cpu_bf16_support
from tools.benchmark.flops import matmul_gflops
torch.set_num_threads(int(sys.argv[1]))
support = cpu_bf16_support()
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, numpy {numpy.__version__}, "
      f"transformers {transformers.__version__}, detectron2 {detectron2.__version__}")
print(f"threads {torch.get_num_threads()}; {support.describe()}")
print(f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}, "
      f"oneDNN {'on' if torch.backends.mkldnn.is_available() else 'off'}")
for n in (512, 2048):
    fp32 = matmul_gflops(n, reps=7)["median_gflops"]
    if not support.native:
        # emulated bf16 runs at ~1 GFLOP/s: a 2048 product would take minutes and mean nothing
        print(f"matmul {n}x{n}: fp32 {fp32:.0f} GFLOP/s, bf16 not timed (emulated)")
        continue
    bf16 = matmul_gflops(n, reps=7, dtype=torch.bfloat16)["median_gflops"]
    print(f"matmul {n}x{n}: fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s, bf16/fp32 {bf16 / fp32:.2f}")
EOF

# bench NAME ARGS...: the issue's benchmark (Swin-T panoptic, 512x512) with ARGS, the JSON and
# the printed report written as $OUT/NAME.json and $OUT/NAME.log; returns its exit status.
bench() {
  local name=$1; shift
  "$PY" tools/benchmark/benchmark.py --preset m2f_swin_t_panoptic --size 512 512 --warmup 1 \
    --threads "$THREADS" "$@" --json "$OUT/$name.json" > "$OUT/$name.log" 2>&1
}

say "step 2: network 512x512 batch 1, fp32 and bf16 vs the fp32 peer"
bench network_bf16 --batch 1 --reps "$REPS" --modes network --dtype bfloat16 --profile
rc=$?
if [ "$rc" = 2 ] && grep -q "bfloat16 not timed" "$OUT/network_bf16.log"; then
  say "no native bf16 on this CPU (network_bf16.log says why): timing fp32 only"
  bench network_fp32 --batch 1 --reps "$REPS" --modes network --profile
  rc=$?
fi
say "step 2 exit status $rc"; tail -n 25 "$OUT"/network_*.log

if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  say "step 3: training step 2x512x512 vs the peer"
  bench train --batch 2 --reps 5 --modes train
  say "step 3 exit status $?"; tail -n 12 "$OUT/train.log"
fi
say "done: reports in $OUT"
