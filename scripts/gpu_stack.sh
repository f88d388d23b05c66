# Sourced by gpu_stack_check.sh and gpu_carry.sh, after steps.sh: the lent GPU machines' software
# stack (by default Python 3.12, torch 2.11.0 built with CUDA 13.0, Triton 3.6.0) in a virtual
# environment on a machine without a GPU, and the working tree built with it in a scratch copy.
# Environment: FASTGEN_STACK_PYTHON (a Python 3.12 where there is one, else python3),
# FASTGEN_STACK_TORCH (2.11.0), FASTGEN_STACK_TRITON (3.6.0), FASTGEN_STACK_VENV
# (/tmp/fastgen-gpu-stack; reused when it already holds those versions).
torch_version="${FASTGEN_STACK_TORCH:-2.11.0}"
triton_version="${FASTGEN_STACK_TRITON:-3.6.0}"
venv="${FASTGEN_STACK_VENV:-/tmp/fastgen-gpu-stack}"
python="$venv/bin/python"

python312() {  # a Python 3.12 that runs (a pyenv shim may name one it will not run), else python3
  local candidate
  for candidate in "$(command -v python3.12)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
    if [ -x "$candidate" ] && "$candidate" -c "" 2>/dev/null; then echo "$candidate"; return; fi
  done
  command -v python3
}
base_python="${FASTGEN_STACK_PYTHON:-$(python312)}"

have_stack() {
  "$python" -c "import sys, torch, triton; sys.exit(not (torch.__version__.startswith('$torch_version') and
    torch.version.cuda and triton.__version__ == '$triton_version'))" 2>/dev/null
}

install_stack() {
  rm -rf "$venv" && "$base_python" -m venv "$venv" &&
    "$python" -m pip install -q --upgrade pip wheel &&
    # The workplace's pip constraints cap torch for the main environment; this one pins its own.
    # numpy < 2.3: Triton 3.6's interpreter turns scalar arguments into 1-element arrays, which
    # newer numpy refuses to convert with int() (the compiled kernels are not affected).
    PIP_CONSTRAINT="" "$python" -m pip install -q "torch==$torch_version" "triton==$triton_version" \
      ninja setuptools "numpy<2.3" tqdm scikit-learn pillow matplotlib pytest pytest-benchmark hypothesis scikit-image
}

ensure_stack() {  # installs the stack unless the venv holds it already; fails if it cannot
  have_stack || step "install torch $torch_version (CUDA) and triton $triton_version into $venv" install.log install_stack
  have_stack || { echo "the stack could not be installed (see $out/install.log)" >&2; return 1; }
}

copy_tree() {  # copy_tree DEST: the tracked and untracked, not ignored files, and ../shared beside it
  local dest="$1"
  rm -rf "$dest" && mkdir -p "$dest" &&
    git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$dest" &&
    if [ -d ../shared ]; then ln -sfn "$(cd ../shared && pwd)" "$(dirname "$dest")/shared"; fi
}

build_in_scratch() {  # the stack (installed if missing), then the working tree copied into a scratch
  # folder ($src, removed on exit) and built there with CUDA (FASTGEN_CUDA_ARCHS, default 9.0)
  if [ -z "${CUDA_HOME:-}" ] && cuda="$(cuda_home)"; then export CUDA_HOME="$cuda"; fi
  ensure_stack || return 1
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  src="$scratch/main"
  step "copy the working tree" copy.log copy_tree "$src"
  step "build with CUDA (sm_${FASTGEN_CUDA_ARCHS:-9.0})" build.log env -C "$src" \
    FASTGEN_CUDA_ARCHS="${FASTGEN_CUDA_ARCHS:-9.0}" "$python" -m pip install --no-build-isolation --no-deps -v -e .
}
