#!/usr/bin/env bash
# One call on a lent GPU machine: the GPU kernel tests, then the kernel speed table (bench.perf).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1
[ "${SKIP_TESTS:-0}" = 1 ] || timeout 200 python3 -m pytest -q -m gpu tests/kernels 2>&1 | tee $OUT/pytest_gpu.log | tail -6
python3 -m bench.perf --out $OUT --head-dims 128 64 2>&1 | tee $OUT/perf.log | tail -80
