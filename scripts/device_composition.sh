#!/usr/bin/env bash
# One call on a lent GPU machine (about 8.5 minutes, at most 8 files back under $OUT), observe
# mode only (clocks, power limit and every other setting are never touched):
#   1. the composition sweep, sweep=composition_gpu: linear projections, attention and whole
#      decoder layers at Llama-3-8B widths, bf16 (the GPU is idle otherwise: nothing else runs);
#   2. task=fit on it (in the background, on the CPU): the profile and the composition table;
#   3. meanwhile, the achievable ceilings (bf16 matmul, device copy and read) and the GPU tests;
#   4. the kernel speed table at a few d128 shapes, with what time is left.
# Before 3, while the GPU is idle, the fidelity checks on it (python -m bench.fidelity.gpu).
# Every step runs under what is left of DEADLINE_S, so the call ends in time whatever hangs.
# Files back: device.log, points.csv, profile.tar.gz (the fit: profile and composition table),
# misc.tar.gz (ceilings.json, gpu_fidelity.md, pytest_gpu.log), kernels_d128.{csv,md}.
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
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.draw,power.limit,temperature.gpu,clocks_event_reasons.active --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
date -u +"date %Y-%m-%dT%H:%M:%SZ"

step "composition sweep" ${SWEEP_CAP_S:-270} python3 -m bench -m sweep=composition_gpu results_dir=$R ${SWEEP_ARGS:-}
cp $R/points.csv "$OUT/points.csv" 2>/dev/null
M=/tmp/misc; mkdir -p $M  # small files, packed into one at the end (the tool returns 8 files at most)
# While the GPU is idle: its counter's update period, and the protocol's CV on the sweep's points.
step "fidelity on this GPU" 30 python3 -m bench.fidelity.gpu --results $R --out "$M/gpu_fidelity.md"
# The fit needs no GPU: it runs beside the steps below, which leave the energy counters alone.
( step "fit" 120 python3 -m bench task=fit results=$R profiles_dir=$R/profile > "$R/fit.log" 2>&1
  tar czf "$OUT/profile.tar.gz" -C "$R" profile fit.log ) &
fit_pid=$!
step "ceilings" 40 python3 -c "
import json, torch
from bench.perf.table import ceilings
c = ceilings(); c['device'] = torch.cuda.get_device_name(); c['torch'] = torch.__version__
print(c); open('$M/ceilings.json', 'w').write(json.dumps(c, indent=1))"
step "GPU tests" ${TEST_CAP_S:-110} python3 -m pytest -q -m gpu tests/kernels -n 8 -p no:cacheprovider \
  --junit-xml=/tmp/junit.xml -o junit_family=xunit1 > "$M/pytest_gpu.log" 2>&1
tail -n 15 "$M/pytest_gpu.log"
step "kernel table d128" 120 python3 -m bench.perf --out "$OUT" --name kernels_d128 --head-dims 128 \
  --seq-lens 4096 --batches 1 32 --contexts 4096 16384
wait $fit_pid
tail -n 40 "$R/fit.log"
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv
tar czf "$OUT/misc.tar.gz" -C $M .
echo "== done in $(( $(date +%s) - START ))s"
