#!/usr/bin/env bash
# One call on a lent GPU machine: the default GPU sweep (observe mode: clocks are never changed),
# then its profile. SWEEP=offload measures the CPU-offload sweep instead. Writes under $OUT.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1
sweep=${SWEEP:-default}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv | tee $OUT/gpu_state.txt
python3 -m bench -m sweep=$sweep gpu.clocks.mode=observe results_dir=$OUT/$sweep 2>&1 | grep -v "^\[" \
  | tee $OUT/${sweep}_sweep.log | tail -40
rm -rf $OUT/$sweep/logs
[ "$sweep" = default ] && python3 -m bench task=fit results=$OUT/$sweep profiles_dir=$OUT/profiles 2>&1 | tee $OUT/fit.log | tail -30
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv | tee -a $OUT/gpu_state.txt
