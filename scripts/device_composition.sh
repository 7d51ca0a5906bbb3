#!/usr/bin/env bash
# One call on a lent GPU machine, observe mode only (clocks, power limit and every other setting
# are never touched), at most 8 files back under $OUT:
#   1. the composition sweeps, decode then prefill (sweep=composition_gpu_decode,
#      composition_gpu_prefill: linear projections, attention and whole decoder layers at
#      Llama-3-8B widths, bf16), each under its share of DEADLINE_S; nothing else uses the GPU;
#   2. while the GPU is idle, the fidelity checks on it (python -m bench.fidelity.gpu);
#   3. with EXTRAS=1, the achievable ceilings (bf16 matmul, device copy and read) and a d128
#      kernel speed table; then the GPU tests in TESTS (default: the kernel tests).
# task=fit needs no GPU: run it here on the points.csv that comes back (README, "Composition").
# Every step runs under what is left of DEADLINE_S, so the call ends in time whatever hangs.
# Files back: device.log, points.csv, misc.tar.gz (gpu_fidelity.md, pytest_gpu.log, ceilings.json),
# kernels_d128.{csv,md} with EXTRAS=1.
set -uo pipefail
START=$(date +%s)
DEADLINE_S=${DEADLINE_S:-510}
left() { echo $(( DEADLINE_S - ($(date +%s) - START) )); }
step() {  # step <name> <seconds at most> <command...>
  local name=$1 cap=$2; shift 2
  local t; t=$(left); [ "$t" -gt "$cap" ] && t=$cap
  if [ "$t" -le 5 ]; then echo "== $name: skipped, no time left"; return 0; fi
  echo "== $name (up to ${t}s, $(left)s left)"
  timeout --signal=INT --kill-after=10 "$t" "$@"; echo "== $name: exit $?"
}
OUT=${OUT:-/tmp/device_composition}; mkdir -p "$OUT"
exec > >(tee "$OUT/device.log") 2>&1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
export PYTHONUNBUFFERED=1
R=${R:-/tmp/r_composition}
M=/tmp/misc; mkdir -p $M  # small files, packed into one at the end (the tool returns 8 files at most)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.draw,power.limit,temperature.gpu,clocks_event_reasons.active --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
date -u +"date %Y-%m-%dT%H:%M:%SZ"

# Decode first: its share is capped so prefill gets the rest (SWEEP_ARGS: extra overrides for both).
step "decode sweep" ${DECODE_CAP_S:-260} python3 -m bench -m sweep=composition_gpu_decode results_dir=$R ${SWEEP_ARGS:-}
cp $R/points.csv "$OUT/points.csv" 2>/dev/null  # kept even if the call is cut short later
step "prefill sweep" $(( $(left) - ${RESERVE_S:-40} )) python3 -m bench -m sweep=composition_gpu_prefill results_dir=$R ${SWEEP_ARGS:-}
cp $R/points.csv "$OUT/points.csv" 2>/dev/null
step "fidelity on this GPU" 30 python3 -m bench.fidelity.gpu --results $R --out "$M/gpu_fidelity.md"
if [ "${EXTRAS:-1}" = 1 ]; then
  step "ceilings" 40 python3 -c "
import json, torch
from bench.perf.table import ceilings
c = ceilings(); c['device'] = torch.cuda.get_device_name(); c['torch'] = torch.__version__
print(c); open('$M/ceilings.json', 'w').write(json.dumps(c, indent=1))"
  step "kernel table d128" 120 python3 -m bench.perf --out "$OUT" --name kernels_d128 --head-dims 128 \
    --seq-lens 4096 --batches 1 32 --contexts 4096 16384
fi
# pyproject's addopts ask for pytest-xdist, which the lent machine may lack: workers only where it has it.
WORKERS=$(python3 -c "import xdist" 2>/dev/null && echo "-n 8")
# shellcheck disable=SC2086  # TESTS is a list of paths, WORKERS empty or one option
step "GPU tests" ${TEST_CAP_S:-110} python3 -m pytest -q -o addopts=-ra -m gpu ${TESTS:-tests/kernels} $WORKERS -p no:cacheprovider \
  > "$M/pytest_gpu.log" 2>&1
tail -n 5 "$M/pytest_gpu.log"
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv
tar czf "$OUT/misc.tar.gz" -C $M .
echo "== done in $(( $(date +%s) - START ))s"
