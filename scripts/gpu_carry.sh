#!/usr/bin/env bash
# Before a GPU lease, on a machine without a GPU: build what scripts/gpu_check.sh would otherwise
# spend the lease's first minutes on, for the lent machine's stack (scripts/gpu_stack.sh: Python
# 3.12, torch 2.11 with CUDA 13.0, Triton 3.6):
#   - fastgen/_C.abi3.so, the extension built with CUDA (sm_90 by default; the stable CPython
#     ABI, so the Python patch version does not matter, but the torch version does);
#   - triton-cache-sm90.tar.xz, every Triton kernel variant of scripts/triton_compile_check.py
#     compiled for sm_90 (all dtypes), ready for Triton's cache (scripts/triton_cache.py).
# Both go into CARRY_DIR (default .gpu-carry, ignored by git) with sources.sha256, the digest of
# the extension's sources it was built from: gpu_check.sh uses the extension only when its own
# sources have that digest, else it builds; Triton finds a kernel only where its source is the same.
#
#   bash scripts/gpu_carry.sh [CARRY_DIR]
#
# Then the lease's one command carries the folder (the device tool's `carry: [".gpu-carry"]`,
# about 17 MiB) and runs gpu_check.sh as the README's GPU section says. Takes about 10 minutes on
# 2 cores (the stack's first install adds a few: about 5 GB from PyPI).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

carry="$(mkdir -p "${1:-.gpu-carry}" && cd "${1:-.gpu-carry}" && pwd)"
out="$carry/logs"
mkdir -p "$out"
source scripts/steps.sh  # step, source_digest, has_cuda_kernels
source scripts/gpu_stack.sh  # build_in_scratch, $python
rm -f "$carry/_C.abi3.so" "$carry/sources.sha256" "$carry/triton-cache-sm90.tar.xz"
build_in_scratch || exit 1  # sets $scratch and $src
step "the build has the CUDA kernels" load.log has_cuda_kernels "$src"
if [ "$status" -eq 0 ]; then
  cp "$src/fastgen/_C.abi3.so" "$carry/" && (cd "$src" && source_digest) >"$carry/sources.sha256"
fi
step "Triton kernels compiled for sm_90" triton_compile.log env -C "$src" TRITON_CACHE_DIR="$scratch/triton-cache" \
  "$python" scripts/triton_compile_check.py --arch 90
step "Triton kernels packed" triton_pack.log \
  "$python" scripts/triton_cache.py pack "$scratch/triton-cache" "$carry/triton-cache-sm90.tar.xz"

{
  echo "Built $(date -u +%Y-%m-%dT%H:%MZ) from $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' plus uncommitted changes')"
  echo "Stack: $("$python" -c 'import sys, torch, triton; print(f"python {sys.version.split()[0]}, torch {torch.__version__}, triton {triton.__version__}")')"
  echo "Extension sources digest: $(cat "$carry/sources.sha256" 2>/dev/null || echo 'none (the build failed)')"
  tail -n 1 "$out/triton_pack.log"
  cat "$out/steps.md"
} >"$carry/manifest.md"
cat "$carry/manifest.md"
du -sh "$carry"
exit $status
