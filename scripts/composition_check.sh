#!/usr/bin/env bash
# The composition check on this machine's CPU: measure the linear-layer, attention and
# decoder-layer cases of the scaled-down preset cpu_small (conf/sweep/composition_cpu.yaml), then
# fit them (task=fit): the profile, and beside it <profile>_composition.{csv,md}, each measured
# layer point against the sum of its parts' fitted costs plus the layer overhead fitted on the
# other layer points. Measured points are kept: a rerun into the same folder only measures what
# is missing (a new folder, or today's default one on another day, measures anew).
#   scripts/composition_check.sh [results folder, default results/composition/cpu_<UTC date>]
# Run it on a quiet machine: wall-clock times of a 2-core VM shared with other work vary by
# tens of percent between points, which no fit can compose away.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-results/composition/cpu_$(date -u +%F)}"
python="${PYTHON:-python}"
mkdir -p "$out"
# glibc's allocator keeps freed memory (unless the caller set these): a serving process reuses its
# buffers step after step (PyTorch's caching allocator does this on a GPU), so the layer and its
# parts are measured as a server runs them, after warm-up, not paying page faults for temporaries
# the allocator handed back to the OS (by default glibc mmaps blocks past a few MiB and trims
# freed ones, so a prefill layer at 512+ tokens faulted thousands of pages in every call while its
# parts alone faulted none). The setting applies to the layer and its parts alike.
export MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-1073741824}"
export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-1073741824}"
{
  uptime
  env | grep '^MALLOC_' | sort
  "$python" -m bench -m sweep=composition_cpu device=cpu results_dir="$out"
  "$python" -m bench task=fit results="$out" profiles_dir="$out/profile"
  uptime
} 2>&1 | tee -a "$out/sweep.log"
