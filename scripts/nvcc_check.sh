#!/usr/bin/env bash
# Compile-check every kernels/**/*.cu with nvcc alone: no torch, no GPU, so it runs in CI; then
# parse the torch glue of csrc/cuda/ with the host compiler (below).
#
# Each file is compiled to a throwaway object for every arch in FASTGEN_CUDA_ARCHS (default
# "80;90"; "8.0;9.0" and "80,90" are accepted too), with warnings as errors (nvcc's and the host
# compiler's -Wall -Wextra) and under the half/bfloat16 defines torch's BuildExtension adds, so
# what passes here also compiles inside the real extension build.
# Prints one line per file; exits non-zero if any file fails; skips (exit 0) without nvcc.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v nvcc >/dev/null 2>&1; then
  echo "nvcc not found: skipping"
  exit 0
fi

archs="${FASTGEN_CUDA_ARCHS:-80;90}"
archs="${archs//./}"
gencode=()
for arch in ${archs//[;,]/ }; do
  gencode+=(-gencode "arch=compute_${arch},code=sm_${arch}")
done
if [[ ${#gencode[@]} -eq 0 ]]; then
  echo "FASTGEN_CUDA_ARCHS is empty" >&2
  exit 2
fi

flags=(
  -std=c++17 -O3 -Ikernels/include
  # Added by torch.utils.cpp_extension to every .cu file: no implicit half/bf16 conversions.
  -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__
  -D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__
  -Werror all-warnings
  # -Wno-unknown-pragmas: the host pass sees `#pragma unroll` in __host__ __device__ code.
  -Xcompiler -Wall,-Wextra,-Wno-unknown-pragmas
)

mapfile -t sources < <(find kernels -name '*.cu' -type f | LC_ALL=C sort)
if [[ ${#sources[@]} -eq 0 ]]; then
  echo "no .cu files under kernels/"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), archs: ${archs}"
failed=0
for src in "${sources[@]}"; do
  obj="$tmp/${src//\//_}.o"
  start=$SECONDS
  if nvcc "${flags[@]}" "${gencode[@]}" -c "$src" -o "$obj" >"$tmp/log" 2>&1; then
    echo "ok    $src ($((SECONDS - start))s)"
  else
    echo "FAIL  $src"
    sed 's/^/      /' "$tmp/log"
    failed=1
  fi
done

# The torch glue of csrc/cuda/ is compiled only where torch has CUDA; parse it here with the host
# compiler against this torch's headers (CPU wheels ship c10/cuda and ATen/cuda headers, less one
# generated file, stubbed) and the CUDA toolkit's, so its errors show before a GPU machine does.
glue=(csrc/cuda/*.cpp)
torch_include="$(python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "include"))' \
  2>/dev/null || true)"
cuda_include=""
for dir in "${CUDA_HOME:-/nonexistent}/include" /usr/local/cuda/include "$(dirname "$(command -v nvcc)")/../include"; do
  if [[ -f "$dir/cuda_runtime.h" ]]; then cuda_include="$dir"; break; fi
done
if [[ -n "$torch_include" && -n "$cuda_include" && -e "${glue[0]}" ]]; then
  mkdir -p "$tmp/stub/c10/cuda/impl"
  echo '#pragma once' >"$tmp/stub/c10/cuda/impl/cuda_cmake_macros.h"
  python_include="$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  for src in "${glue[@]}"; do
    start=$SECONDS
    if g++ -fsyntax-only -std=c++17 -w -DFASTGEN_WITH_CUDA -I"$torch_include" \
        -I"$torch_include/torch/csrc/api/include" -I"$cuda_include" -I"$tmp/stub" -I"$python_include" \
        -Ikernels/include "$src" >"$tmp/log" 2>&1; then
      echo "ok    $src (host compiler, syntax only; $((SECONDS - start))s)"
    else
      echo "FAIL  $src"
      sed 's/^/      /' "$tmp/log"
      failed=1
    fi
  done
else
  echo "skip  csrc/cuda/*.cpp (no torch or CUDA headers to parse the glue against)"
fi

if [[ $failed -ne 0 ]]; then
  echo "nvcc check failed" >&2
  exit 1
fi
echo "nvcc check passed (${#sources[@]} .cu files, ${#glue[@]} glue files)"
