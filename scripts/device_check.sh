#!/usr/bin/env bash
# The one call on a lent GPU machine (about 9 minutes, at most 8 files back under $OUT):
#   1. a quick GPU test subset (<= 90 s);
#   2. the attention sweep sized for this call, sweep=device_check (observe mode: clocks, power
#      limit and settings are never touched);
#   3. the fidelity checks on this GPU: counter update period, the protocol's CV at three shapes,
#      counter vs integrated instant power (python -m bench.fidelity.gpu);
#   4. that sweep's profile (profiles/<hardware>.*);
#   5. the d128 kernel speed table at the shapes the speed bars are judged on.
# Every step runs under what is left of DEADLINE_S, so the call ends in time whatever hangs.
# Files back: device_check.log, gpu_fidelity.md, points.csv, <profile>.{csv,json,md}, kernels_d128.{csv,md}.
set -uo pipefail
START=$(date +%s)
DEADLINE_S=${DEADLINE_S:-530}
left() { echo $(( DEADLINE_S - ($(date +%s) - START) )); }
step() {  # step <name> <seconds at most> <command...>
  local name=$1 cap=$2; shift 2
  local t; t=$(left); [ "$t" -gt "$cap" ] && t=$cap
  if [ "$t" -le 5 ]; then echo "== $name: skipped, no time left"; return 0; fi
  echo "== $name (up to ${t}s, $(left)s left)"
  timeout --signal=INT --kill-after=10 "$t" "$@"; echo "== $name: exit $?"
}
OUT=${OUT:-/tmp/device_check}; mkdir -p "$OUT"
exec > >(tee "$OUT/device_check.log") 2>&1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
export PYTHONUNBUFFERED=1
R=/tmp/r_check
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.draw,power.limit,temperature.gpu --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
date -u +"date %Y-%m-%dT%H:%M:%SZ"

step "GPU tests" 90 python3 -m pytest -q -o addopts=-ra -x -m gpu tests/kernels/test_attention.py -k "d128 or decode" -p no:cacheprovider
step "attention sweep" 200 python3 -m bench -m sweep=device_check results_dir=$R
step "fidelity on this GPU" 30 python3 -m bench.fidelity.gpu --results $R --out "$OUT/gpu_fidelity.md"
step "profile" 40 python3 -m bench task=fit results=$R profiles_dir=profiles
step "kernel table d128" 200 python3 -m bench.perf --out "$OUT" --name kernels_d128 --head-dims 128 \
  --seq-lens 4096 16384 --batches 1 32 64 --contexts 4096 16384

cp $R/points.csv "$OUT/points.csv" 2>/dev/null
# Only the profile this call wrote (older profiles in the tree stay where they are).
find profiles -maxdepth 1 -name 'nvidia-*' -newermt "@$START" \( -name '*.csv' -o -name '*.json' -o -name '*.md' \) \
  -exec cp {} "$OUT/" \;
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv
echo "== done in $(( $(date +%s) - START ))s"
