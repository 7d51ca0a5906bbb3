#!/usr/bin/env bash
# The composition check on this machine's CPU: measure the linear-layer, attention and
# decoder-layer cases of the scaled-down preset cpu_small (conf/sweep/composition_cpu.yaml), then
# fit them (task=fit): the profile, and beside it <profile>_composition.{csv,md}, each measured
# layer point against the sum of its parts' fitted costs plus the layer overhead fitted on the
# other layer points. Measured points are kept: a rerun into the same folder only measures what
# is missing (delete the folder to measure anew, e.g. on a quiet machine).
#   scripts/composition_check.sh [results folder, default results/composition/cpu]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-results/composition/cpu}"
python="${PYTHON:-python}"
"$python" -m bench -m sweep=composition_cpu device=cpu results_dir="$out"
"$python" -m bench task=fit results="$out" profiles_dir="$out/profile"
