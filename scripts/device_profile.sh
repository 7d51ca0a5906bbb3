#!/usr/bin/env bash
# One call on a lent GPU machine: a GPU sweep in observe mode (clocks are never changed), then,
# once the sweep is complete, its profile. SWEEP=default (the profile's sweep) or offload;
# arguments are passed to the sweep as extra overrides.
#
# The default sweep (~60 points) takes longer than one call may run (10 min), so the sweep runs
# for at most BUDGET_S seconds, stops cleanly (SIGINT: finished points are kept) and packs what
# it has into $OUT/<sweep>.tar.gz. The next call resumes it, skipping measured points, from
# either place the points can be:
#   - /tmp on this machine, while it is still warm;
#   - device_results/<sweep>.tar.gz in the working tree: copy the tarball that came back there
#     and name "device_results" in the call's carry (with ".whl").
# Everything comes back in at most 6 files (the device tool returns 8 at most): gpu_state.txt,
# <sweep>_sweep.log, <sweep>.tar.gz (points/, points.csv), and when complete fit.log and
# profiles.tar.gz.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1
sweep=${SWEEP:-default}
budget_s=${BUDGET_S:-480}
work=/tmp/energy-bench-device/$sweep
# Compiled Triton kernels survive between calls on a warm machine, so a resumed sweep does not
# compile again (autotuning itself is always done before any energy window).
export TRITON_CACHE_DIR=/tmp/energy-bench-device/triton-cache
mkdir -p "$work"
if [ -f "device_results/$sweep.tar.gz" ]; then
  tar xzf "device_results/$sweep.tar.gz" -C "$work" && echo "resuming from device_results/$sweep.tar.gz"
fi
echo "points already measured: $(ls "$work/points" 2>/dev/null | wc -l)"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.draw,power.limit,temperature.gpu --format=csv \
  | tee -a $OUT/gpu_state.txt
timeout --signal=INT --kill-after=30 "$budget_s" \
  python3 -m bench -m sweep=$sweep gpu.clocks.mode=observe results_dir=$work "$@" 2>&1 \
  | grep -v "^\[" | tee $OUT/${sweep}_sweep.log | tail -40
rc=${PIPESTATUS[0]}
tar czf $OUT/$sweep.tar.gz -C "$work" --exclude=./logs --exclude=./.lock .
echo "points measured: $(ls "$work/points" 2>/dev/null | wc -l); sweep exit status $rc"
if [ "$rc" = 0 ] && [ "$sweep" = default ]; then
  python3 -m bench task=fit results=$work profiles_dir=/tmp/energy-bench-device/profiles 2>&1 \
    | tee $OUT/fit.log | tail -30
  tar czf $OUT/profiles.tar.gz -C /tmp/energy-bench-device profiles
elif [ "$rc" != 0 ]; then
  echo "sweep incomplete: call again (the machine stays warm for 30 s; otherwise carry device_results/)"
fi
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv | tee -a $OUT/gpu_state.txt
