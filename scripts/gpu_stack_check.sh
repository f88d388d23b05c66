#!/usr/bin/env bash
# Before a GPU lease, on a machine without a GPU: the GPU machine's software stack (by default
# Python 3.12, torch 2.11.0 built with CUDA 13.0 and Triton 3.6.0, what the lent H100/H200
# machines run) in a virtual environment, then
#   1. the extension built with CUDA against that torch (the real CUDA glue build, which CI's
#      nvcc check only parses against the CPU torch's headers),
#   2. the test suite (CPU kernels, Triton in the interpreter; the CUDA tests skip),
#   3. the Triton kernels compiled for sm_90 by that Triton (scripts/triton_compile_check.py),
# so that a version difference breaks here and not in the lease's first minutes.
#
#   bash scripts/gpu_stack_check.sh [OUT_DIR]          (default bench-results/gpu-stack)
#
# Environment: those of scripts/gpu_stack.sh (the Python, torch and Triton versions, the venv's
# folder), FASTGEN_CUDA_ARCHS (9.0). Needs PyPI (the CUDA torch and its CUDA libraries: about 5 GB
# installed) and nvcc. The working tree (tracked and untracked, not ignored files) is copied and
# built in a scratch folder, so this checkout's own build of fastgen._C is left alone. Exits
# non-zero if any step failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out="$(mkdir -p "${1:-bench-results/gpu-stack}" && cd "${1:-bench-results/gpu-stack}" && pwd)"
source scripts/steps.sh  # step, report_head
source scripts/gpu_stack.sh  # build_in_scratch, $python
build_in_scratch || exit 1  # sets $scratch and $src
step "fastgen info" info.txt env -C "$scratch" "$python" -m fastgen info
step "test suite" tests.log env -C "$src" FASTGEN_REQUIRE_EXT=1 "$python" -m pytest -q -p no:cacheprovider
step "Triton kernels compiled for sm_90" triton_compile.log env -C "$src" \
  "$python" scripts/triton_compile_check.py --quick --markdown "$out/triton_compile.md"

{
  report_head "The GPU machine's software stack, checked without a GPU ($(date -u +%Y-%m-%d))"
  echo "Build warnings (fastgen's sources):"
  echo '```'
  grep -E "warning" "$out/build.log" | grep -E "/(csrc|kernels)/" | sort -u | head -n 20
  echo '```'
  echo "Tests: $(tail -n 1 "$out/tests.log")"
  echo "Triton compile check: $(grep -E "kernel variants compiled" "$out/triton_compile.log" | tail -n 1)"
} >"$out/report.md"
echo "report: $out/report.md"
exit $status
