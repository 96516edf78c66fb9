#!/usr/bin/env bash
# The prepared GPU check of issue 13 (item 5): ≤ 8 minutes on one GPU, prints a Markdown table for
# benchmarks/RESULTS.md. The logic is in benchmarks/gpu_suite.py; this wrapper only sets the
# environment and a hard time limit.
#
#   benchmarks/gpu_suite.sh                      # full size on cuda (needs a GPU)
#   GPU_SUITE_SIZE=tiny GPU_SUITE_DEVICE=cpu benchmarks/gpu_suite.sh   # seconds, on a CPU
#
# Environment: PYTHON (default python3), GPU_SUITE_SIZE (full|tiny, default full), GPU_SUITE_DEVICE
# (default cuda), GPU_SUITE_BUDGET_S (the driver's own budget, default 420 s), GPU_SUITE_TIMEOUT_S
# (hard kill, default 480 s = 8 minutes).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
exec timeout --signal=TERM --kill-after=10 "${GPU_SUITE_TIMEOUT_S:-480}" \
    "${PYTHON:-python3}" benchmarks/gpu_suite.py \
    --size "${GPU_SUITE_SIZE:-full}" --device "${GPU_SUITE_DEVICE:-cuda}" \
    --budget-s "${GPU_SUITE_BUDGET_S:-420}" "$@"
