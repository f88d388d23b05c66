#!/usr/bin/env bash
# The one script for a GPU machine (torch with CUDA, triton, nvcc; no network needed):
# builds the extension with CUDA, runs the whole test suite including the CUDA tests, runs the
# benchmarks, and writes everything into one report folder (default benchmarks/results/gpu-<date>).
#
#   bash scripts/gpu_check.sh [OUT_DIR]
#
# It keeps going after a failing step so the report shows every result; the exit code is
# non-zero if any step failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out="${1:-benchmarks/results/gpu-$(date -u +%Y%m%d)}"
mkdir -p "$out"
python="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}"
status=0

step() {  # step NAME LOGFILE COMMAND...
  local name="$1" log="$2"; shift 2
  echo "== $name"
  local t0=$(date +%s)
  "$@" >"$out/$log" 2>&1
  local rc=$?
  echo "   exit $rc after $(( $(date +%s) - t0 )) s (log: $out/$log)"; tail -n 3 "$out/$log" | sed 's/^/   | /'
  [ $rc -eq 0 ] || status=1
  echo "| $name | $rc | $(( $(date +%s) - t0 )) s | $log |" >>"$out/steps.md"
}

echo "| step | exit | time | log |" >"$out/steps.md"
echo "|---|---|---|---|" >>"$out/steps.md"

step "build with CUDA" build.log "$python" -m pip install --no-build-isolation --no-deps -v -e .
step "fastgen info" info.txt "$python" -m fastgen info
step "nvcc compile check" nvcc_check.log bash scripts/nvcc_check.sh
step "test suite (CUDA included)" tests.log env FASTGEN_REQUIRE_EXT=1 "$python" -m pytest -q -rs
step "benchmarks (cuda)" bench_cuda.log "$python" -m fastgen bench --device cuda --out "$out/bench-cuda"
step "benchmarks (cpu, quick)" bench_cpu.log "$python" -m fastgen bench --quick --device cpu --out "$out/bench-cpu"

{
  echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo '```'
  cat "$out/info.txt" 2>/dev/null
  echo '```'
  echo
  cat "$out/steps.md"
  echo
  echo "## Tests"
  echo '```'
  tail -n 25 "$out/tests.log" 2>/dev/null
  echo '```'
  for b in bench-cuda bench-cpu; do
    if [ -f "$out/$b/results.md" ]; then echo; echo "## $b"; cat "$out/$b/results.md"; fi
  done
} >"$out/report.md"
echo "report: $out/report.md"
exit $status
