#!/usr/bin/env bash
# One call on a lent GPU machine (see README "Measured on a GPU"): GPU tests, the default job,
# and a GPU-sized sweep. Clocks are only observed, never changed. Writes under $OUT.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.draw,power.limit,temperature.gpu --format=csv | tee $OUT/gpu_state.txt
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a $OUT/gpu_state.txt
python3 -m pytest -q -o addopts=-ra -m gpu tests/kernels 2>&1 | tee $OUT/pytest.log | tail -8
python3 -m bench results_dir=/tmp/r_default 2>&1 | tee $OUT/default_job.log | tail -14
python3 -m bench -m kernel=prefill.torch,decode.torch,decode.torch_paged batch_size=1,8,32 seq_len=2048 \
  context_len=8192 measure.min_window_s=1.0 results_dir=/tmp/r_gpu 2>&1 | tee $OUT/gpu_sweep.log | tail -16
cp /tmp/r_default/points.csv $OUT/default_points.csv
cp /tmp/r_gpu/points.csv $OUT/gpu_points.csv
nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv | tee -a $OUT/gpu_state.txt
