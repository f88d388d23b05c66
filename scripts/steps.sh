# Sourced by the GPU scripts (gpu_check.sh, gpu_stack_check.sh, gpu_carry.sh; from the repository
# root): run named steps with their output in log files, keep going after a failure, and list them
# in $out/steps.md for the report. Needs $out; $budget (seconds for the whole run, 0: none) counts
# from $started. A failed or skipped step sets status=1. cuda_home finds the CUDA toolkit for the
# extension build.
status=0
started="${started:-$(date +%s)}"
budget="${budget:-0}"
echo "| step | exit | time | log |" >"$out/steps.md"
echo "|---|---|---|---|" >>"$out/steps.md"

step() {  # step NAME LOGFILE COMMAND...
  local name="$1" log="$2"; shift 2
  echo "== $name"
  local t0=$(date +%s) limit=()
  if [ "$budget" -gt 0 ]; then
    local left=$(( budget - (t0 - started) ))
    if [ "$left" -lt 15 ]; then
      echo "   skipped: time budget spent"; echo "| $name | skipped | 0 s | - |" >>"$out/steps.md"; status=1
      return
    fi
    limit=(timeout --kill-after=5 "$left")
    # timeout runs programs: a shell function runs in a child bash, so it must be exported
    # (export -f, with the variables it reads).
    if [ "$(type -t "$1")" = function ]; then limit+=(bash -c '"$@"' bash); fi
  fi
  "${limit[@]}" "$@" >"$out/$log" 2>&1
  local rc=$?
  echo "   exit $rc after $(( $(date +%s) - t0 )) s (log: $out/$log)"; tail -n 3 "$out/$log" | sed 's/^/   | /'
  [ $rc -eq 0 ] || status=1
  echo "| $name | $rc | $(( $(date +%s) - t0 )) s | $log |" >>"$out/steps.md"
}

cuda_home() {  # the CUDA toolkit's folder (/usr/local/bin/nvcc may be a wrapper script)
  local nvcc dir
  nvcc="$(command -v nvcc || true)"
  for dir in "${CUDA_HOME:-}" /usr/local/cuda ${nvcc:+"$(dirname "$(dirname "$(readlink -f "$nvcc")")")"}; do
    if [ -n "$dir" ] && [ -x "$dir/bin/nvcc" ] && [ -f "$dir/include/cuda_runtime.h" ]; then echo "$dir"; return; fi
  done
  return 1
}

report_head() {  # report_head TITLE: the report's title, `fastgen info` and the steps table
  echo "# $1"
  echo
  echo '```'
  cat "$out/info.txt" 2>/dev/null
  echo '```'
  echo
  cat "$out/steps.md"
  echo
}

source_digest() {  # a digest of the extension's sources: which sources a prebuilt fastgen._C came from
  find setup.py csrc kernels -type f \( -name '*.py' -o -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) \
    -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
}

has_cuda_kernels() {  # [DIR]: $python imports the fastgen in DIR (default .) with its CUDA kernels
  (cd "${1:-.}" && "$python" -c "import sys, torch, fastgen._C
sys.exit(not torch._C._dispatch_has_kernel_for_dispatch_key('fastgen::reparameterize', 'CUDA'))")
}
