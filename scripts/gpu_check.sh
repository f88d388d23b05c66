#!/usr/bin/env bash
# The one script for a GPU machine (torch with CUDA, triton, nvcc; no network needed):
# builds the extension with CUDA, runs the whole test suite including the CUDA tests, runs the
# benchmarks, and writes everything into one report folder (default benchmarks/results/gpu-<date>).
#
#   bash scripts/gpu_check.sh [OUT_DIR]
#
# It keeps going after a failing step so the report shows every result; the exit code is
# non-zero if any step failed. The steps run most-valuable first (build, the compiled CUDA
# kernels' tests, the issues' GPU targets (copy-bandwidth share of the flow ops, the convolutions
# against cuDNN with TFLOP/s, sampling speed), the CUDA and Triton tests, the full GPU benchmarks
# with torch.compile, then the CPU-only tests CI also runs), and with
# FASTGEN_GPU_CHECK_BUDGET_S=N the whole script stops after about N seconds: a step that would
# run past it is cut off (exit 124) and later steps are skipped, so a time-boxed GPU lease
# still brings back a report. FASTGEN_CUDA_ARCHS=9.0 builds for Hopper only (faster).
# What scripts/gpu_carry.sh built before the lease (FASTGEN_GPU_CARRY, default .gpu-carry) saves
# the build and most Triton compiles: the extension is used when it was built from these sources,
# and the compiled Triton kernels are unpacked into TRITON_CACHE_DIR (/tmp/fastgen-triton-cache).
# On a lent machine that returns at most 8 files from $OUT (the workplace's device tool; carry
# .gpu-carry):
#   FASTGEN_GPU_CHECK_BUDGET_S=520 FASTGEN_CUDA_ARCHS=9.0 bash scripts/gpu_check.sh /tmp/gpu;
#   cp /tmp/gpu/report.md "$OUT"/; tar czf "$OUT"/gpu.tgz -C /tmp gpu
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out="${1:-benchmarks/results/gpu-$(date -u +%Y%m%d)}"
mkdir -p "$out"
python="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}"
started=$(date +%s)
budget="${FASTGEN_GPU_CHECK_BUDGET_S:-0}"  # 0: no limit
source scripts/steps.sh  # step, report_head, cuda_home, source_digest, has_cuda_kernels
# torch guesses CUDA_HOME from nvcc's path, wrong where that is a wrapper (/usr/local/bin/nvcc).
if [ -z "${CUDA_HOME:-}" ] && cuda="$(cuda_home)"; then export CUDA_HOME="$cuda"; fi

carry="${FASTGEN_GPU_CARRY:-.gpu-carry}"
install_prebuilt() {  # gpu_carry.sh's fastgen._C; removed again if it does not load here
  FASTGEN_SKIP_EXT=1 "$python" -m pip install --no-build-isolation --no-deps -e . && cp "$carry/_C.abi3.so" fastgen/ &&
    has_cuda_kernels || { rm -f fastgen/_C.abi3.so; return 1; }
}
export -f has_cuda_kernels install_prebuilt && export python carry
if [ -f "$carry/_C.abi3.so" ] && [ "$(cat "$carry/sources.sha256")" = "$(source_digest)" ]; then
  step "install with the extension built before the lease ($carry)" build_prebuilt.log install_prebuilt
elif [ -f "$carry/_C.abi3.so" ]; then
  echo "== $carry/_C.abi3.so was built from other sources than these: building"
fi
if [ -f "$carry/triton-cache-sm90.tar.xz" ]; then
  export TRITON_CACHE_DIR="${TRITON_CACHE_DIR:-/tmp/fastgen-triton-cache}"
  step "unpack the Triton kernels compiled before the lease" triton_cache.log \
    "$python" scripts/triton_cache.py unpack "$carry/triton-cache-sm90.tar.xz" "$TRITON_CACHE_DIR"
fi
if ! has_cuda_kernels 2>/dev/null; then
  step "build with CUDA" build.log "$python" -m pip install --no-build-isolation --no-deps -v -e .
fi
if ! "$python" -c "import fastgen._C" 2>/dev/null; then
  # The CUDA sources have never met this compiler before: keep the rest of the check alive (CPU
  # kernels + Triton on the GPU) with a CPU-only build; build.log says what failed.
  step "build without CUDA (the CUDA build failed)" build_cpu.log env FASTGEN_SKIP_CUDA=1 \
    "$python" -m pip install --no-build-isolation --no-deps -v -e .
fi
step "fastgen info" info.txt "$python" -m fastgen info
# Triton JIT-compiles per test: spread them over processes when pytest-xdist is there.
parallel=""
if "$python" -c "import xdist" 2>/dev/null; then parallel="-n 8"; fi
# The compiled CUDA kernels first (seconds), then the sampling benchmark that times the CUDA
# WaveNet decoder against the Triton one and the step ops: the checks nothing else can make.
step "compiled CUDA kernels" tests_compiled_cuda.log env FASTGEN_REQUIRE_EXT=1 "$python" -m pytest -q -rs \
  tests/test_wavenet_decoder_cuda.py tests/test_gaussian_cuda.py
# The numbers the open issues ask of a GPU need no torch.compile (minutes of Inductor compiles on
# a GPU): fastgen vs eager (cuDNN for the convolutions) in float32 and bfloat16, short timings.
step "GPU targets: flow ops vs copy bandwidth, convolutions vs cuDNN" bench_cuda_targets.log \
  "$python" -m fastgen bench --device cuda --ops flows,masked_conv,pixelcnn,wavenet --impls eager,fastgen \
  --dtypes fp32,bf16 --max-time 0.5 --no-progress --out "$out/bench-cuda-targets"
step "autoregressive sampling (cuda)" sampling_cuda.log \
  "$python" benchmarks/autoregressive_sampling.py --device cuda --out "$out/autoregressive_sampling"
step "tests on CUDA and Triton" tests_cuda.log env FASTGEN_REQUIRE_EXT=1 "$python" -m pytest -q -rs $parallel -k "cuda or triton"
families="steps flows masked_conv wavenet pixelcnn gaussian conv"  # the newest first: the budget may end the list
for family in $families; do
  step "benchmarks ($family, cuda)" "bench_cuda_$family.log" \
    "$python" -m fastgen bench --device cuda --ops "$family" --no-progress --out "$out/bench-cuda-$family"
done
step "rest of the test suite" tests_rest.log env FASTGEN_REQUIRE_EXT=1 "$python" -m pytest -q -rs -k "not (cuda or triton)"
step "nvcc compile check" nvcc_check.log bash scripts/nvcc_check.sh
step "benchmarks (cpu, quick)" bench_cpu.log "$python" -m fastgen bench --quick --device cpu --no-progress --out "$out/bench-cpu"

{
  report_head "GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
  if [ -f "$out/triton_cache.log" ]; then
    echo "## Triton kernels compiled before the lease"
    echo '```'
    cat "$out/triton_cache.log"
    "$python" scripts/triton_cache.py count "$TRITON_CACHE_DIR"
    echo '```'
  fi
  if [ -f "$out/build_cpu.log" ]; then
    echo "## The CUDA build's first errors (build.log)"
    echo '```'
    grep -m 30 -E "error|Error" "$out/build.log"
    echo '```'
  fi
  for log in tests_compiled_cuda.log tests_cuda.log tests_rest.log; do
    echo "## Tests: $log"
    echo '```'
    tail -n 25 "$out/$log" 2>/dev/null
    echo '```'
  done
  for b in bench-cuda-targets autoregressive_sampling $(for f in $families; do echo "bench-cuda-$f"; done) bench-cpu; do
    if [ -f "$out/$b/results.md" ]; then echo; echo "## $b"; cat "$out/$b/results.md"; fi
  done
} >"$out/report.md"
echo "report: $out/report.md"
exit $status
