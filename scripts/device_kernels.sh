#!/usr/bin/env bash
# One call on a lent GPU machine: the GPU kernel tests, then the kernel speed table (bench.perf).
# PHASES ("prefill decode") and HEAD_DIMS ("128 64") split the table over calls that each fit the
# device's 10-minute limit; SKIP_TESTS=1 skips the tests. The table is written as
# $OUT/kernels_<phases>_d<head dims>.{csv,md}; rows timed before a cut-off stay in *_partial.csv.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1
PHASES=${PHASES:-prefill decode}
HEAD_DIMS=${HEAD_DIMS:-128 64}
NAME="kernels_${PHASES// /_}_d${HEAD_DIMS// /_}"
[ "${SKIP_TESTS:-0}" = 1 ] || timeout 200 python3 -m pytest -q -o addopts=-ra -m gpu tests/kernels 2>&1 | tee $OUT/pytest_gpu.log | tail -6
# shellcheck disable=SC2086  # PHASES and HEAD_DIMS are word lists
python3 -m bench.perf --out $OUT --name "$NAME" --phases $PHASES --head-dims $HEAD_DIMS 2>&1 | tee $OUT/perf_$NAME.log | tail -80
