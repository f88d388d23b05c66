"""Compile every Triton kernel of fastgen for real NVIDIA GPUs, without a GPU.

Under ``TRITON_INTERPRET=1`` (how the test suite runs Triton on a CPU machine) nothing is
compiled: a kernel that the interpreter runs can still fail to compile for a GPU (an unsupported
``tl.dot`` shape or dtype, a type error in a branch the interpreter never takes: the tensor-core
path of float16/bfloat16 tiles is only taken when compiled), or compile and then fail at launch
because its tiles need more shared memory or registers than one block may have.

This script calls each Triton wrapper of ``fastgen.triton_kernels`` on CPU tensors with the tile
sizes the wrappers pick on a GPU, for every dtype and the branches the ops take (biases or none,
conditioning, mask types, forward and backward...), at the benchmark sizes and at small odd ones.
A stand-in Triton driver makes each launch compile for the chosen architecture instead of running
(Triton's own code path: ``JITFunction.run`` with ``warmup=True``); the outputs stay unwritten and
are never read. For each compiled kernel the cubin's resource usage (registers, spills) is read
with the ``cuobjdump`` bundled with Triton and checked against the architecture's per-block
limits.

Usage: ``python scripts/triton_compile_check.py [--arch 90 --arch 80] [--markdown FILE]``.
Prints one line per compiled kernel variant; exits non-zero if any fails to compile or exceeds a
limit. Needs the ``triton`` package only (its NVIDIA backend ships ptxas and cuobjdump).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # compile, do not interpret: before triton is imported

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.backends.driver import DriverBase  # noqa: E402
from triton.runtime import driver as triton_driver  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # step_cases: the sampling ops' argument builders

# Per-block limits of each architecture (CUDA programming guide, compute capabilities table):
# the most shared memory one block may opt in to, in bytes, and the registers of one block.
SHARED_LIMIT = {75: 64 * 1024, 80: 163 * 1024, 86: 99 * 1024, 89: 99 * 1024, 90: 227 * 1024}
REGISTERS_PER_BLOCK = 64 * 1024
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
QUICK_DTYPES = [torch.float32, torch.bfloat16]  # IEEE, TF32 and tensor-core tiles: every MODE but float64's


class CompileOnlyDriver(DriverBase):
    """A Triton driver for a GPU that is not there: reports ``arch`` as the current target, so a
    launch compiles for it. The device number is the architecture, which keeps Triton's per-device
    kernel caches apart when several architectures are checked in one process."""

    def __init__(self, arch: int):
        super().__init__()
        self.arch = arch

    @classmethod
    def is_active(cls):
        return True

    def map_python_to_cpp_type(self, ty):
        raise RuntimeError("compile-only driver: nothing is launched")

    def get_current_target(self):
        return GPUTarget("cuda", self.arch, 32)

    def get_active_torch_device(self):
        return torch.device("cpu")

    def get_benchmarker(self):
        raise RuntimeError("compile-only driver: nothing is timed")

    def get_current_device(self):
        return self.arch

    def get_current_stream(self, device=None):
        return 0


@dataclass
class Variant:
    """One compiled specialisation of a kernel and what it needs from a block."""

    case: str
    kernel: str
    constants: str
    num_warps: int
    dynamic_shared: int
    registers: int = -1
    stack: int = -1
    local: int = -1
    static_shared: int = 0
    problems: list[str] = field(default_factory=list)


class Recorder:
    """Replaces ``JITFunction.run``: every launch compiles (Triton's warmup path) and is recorded."""

    def __init__(self):
        self.case = ""
        self.launches: list[tuple[str, object, object]] = []
        self._original = JITFunction.run

    def __enter__(self):
        recorder = self

        def run(fn, *args, grid, warmup, **kwargs):
            kernel = recorder._original(fn, *args, grid=grid, warmup=True, **kwargs)
            recorder.launches.append((recorder.case, fn, kernel))
            return kernel

        JITFunction.run = run
        return self

    def __exit__(self, *exc):
        JITFunction.run = self._original


def _resource_usage(cubin: bytes) -> dict[str, int]:
    """REG, STACK, SHARED, LOCAL of the cubin's one function, from the bundled cuobjdump."""
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([str(tool), "--dump-resource-usage", f.name], capture_output=True, text=True,
                             check=True).stdout
    return {key: int(value) for key, value in re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", out)}


def _constants(fn, kernel) -> str:
    """The kernel's constexpr arguments as ``NAME=value``, dtypes by their short names."""
    names = [p.name for p in fn.params]
    parts = []
    for key, value in kernel.src.constants.items():
        name = names[key[0]] if isinstance(key, tuple) and len(key) == 1 else str(key)
        if not isinstance(value, (int, float, bool, str)) and hasattr(value, "name"):
            value = value.name
        parts.append(f"{name}={value}")
    return " ".join(parts)


def _variant(case: str, fn, kernel, arch: int) -> Variant:
    meta = kernel.metadata
    v = Variant(case, fn.fn.__name__, _constants(fn, kernel), meta.num_warps, meta.shared)
    usage = _resource_usage(kernel.asm["cubin"])
    v.registers, v.stack, v.local = usage.get("REG", -1), usage.get("STACK", 0), usage.get("LOCAL", 0)
    v.static_shared = usage.get("SHARED", 0)
    shared = v.dynamic_shared + v.static_shared
    if shared > SHARED_LIMIT[arch]:
        v.problems.append(f"shared memory {shared} B > {SHARED_LIMIT[arch]} B per block on sm_{arch}")
    if v.registers * 32 * v.num_warps > REGISTERS_PER_BLOCK:
        v.problems.append(f"{v.registers} registers x {32 * v.num_warps} threads > {REGISTERS_PER_BLOCK}")
    # The precision mode of the tile products (_common.mma) must reach the tensor cores.
    ptx = kernel.asm["ptx"]
    if re.search(r"\bMODE=(0|3)\b", v.constants) and "mma" not in ptx:
        v.problems.append("tensor-core MODE but no mma instruction in the PTX")
    if re.search(r"\bMODE=3\b", v.constants) and ".tf32" not in ptx:
        v.problems.append("MODE=3 (TF32) but no tf32 instruction in the PTX")
    if re.search(r"\bMODE=1\b", v.constants) and ".tf32" in ptx:
        v.problems.append("MODE=1 (IEEE float32) but tf32 instructions in the PTX")
    return v


# ---------------------------------------------------------------------------------------------
# The calls: each case function calls one wrapper the way the op does on a GPU.
# ---------------------------------------------------------------------------------------------

def _rnd(dtype, *shape):
    return torch.randn(*shape).to(dtype)


def _gaussian_cases(dtypes):
    from fastgen.triton_kernels import gaussian as tk

    seed = torch.tensor(7, dtype=torch.int64)
    for dtype in dtypes:
        for n, d in [(64, 32), (3, 1000)]:
            mu, logvar = _rnd(dtype, n, d), _rnd(dtype, n, d)
            yield f"gaussian {dtype} {n}x{d}", lambda: (
                tk.reparameterize(mu, logvar, None, seed), tk.reparameterize_with_kl(mu, logvar, mu, None),
                tk.gaussian_kl(mu, logvar), tk.standard_normal_log_prob(mu),
                tk.standard_normal_log_prob_backward(torch.ones(n, dtype=dtype), mu),
                tk.reparameterize_backward(mu, torch.ones(n, dtype=dtype), mu, logvar, None, seed),
                tk.reparameterize_backward(None, torch.ones(n, dtype=dtype), mu, logvar, mu, None))


def _flow_cases(dtypes):
    from fastgen.bench.cases import flows as bench_flows
    from fastgen.triton_kernels import flows as tk

    # The benchmark's GPU shapes too: the tile sizes the wrappers pick depend on the shape.
    shapes = [(3, 5, 7, 1)] + sorted({shape for _, shape, _ in bench_flows.GPU_SHAPES})
    for dtype in dtypes:
        for shape in shapes:
            x = _rnd(dtype, *shape)
            c = torch.zeros(shape[1], dtype=dtype)
            logdet_grad = torch.ones(shape[0], dtype=torch.float64 if dtype == torch.float64 else torch.float32)
            for scale in ["tanh_clamp", "sigmoid", "exp"]:
                for reverse in [False, True]:
                    yield f"affine_coupling {dtype} {shape} {scale} reverse={reverse}", lambda: (
                        tk.affine_coupling(x, x, x, reverse, scale, 2.0),
                        tk.affine_coupling_backward(x, logdet_grad, x, x, x, reverse, scale, 2.0),
                        tk.affine_coupling_backward(x, None, x, x, x, reverse, scale, 2.0))
            for reverse in [False, True]:
                yield f"additive_coupling/actnorm {dtype} {shape} reverse={reverse}", lambda: (
                    tk.additive_coupling(x, x, reverse), tk.actnorm(x, c, c, reverse),
                    tk.actnorm_backward(x, logdet_grad, x, c, c, reverse),
                    tk.actnorm_backward(x, None, x, c, c, reverse))


def _causal_conv_cases(dtypes):
    from fastgen.bench.cases import conv as bench_conv
    from fastgen.triton_kernels import conv as tk

    bench = [(n, c, c, t, k, dilation) for n, c, t, k, dilation in bench_conv.GPU_SHAPES]
    cases = [(16, 64, 128, 1000, 2, 8), (2, 3, 5, 37, 3, 2), (1, 33, 40, 150, 1, 1)] + bench
    for dtype in dtypes:
        for n, c_in, c_out, t, k, dilation in cases:
            x, w, b, gy = _rnd(dtype, n, c_in, t), _rnd(dtype, c_out, c_in, k), _rnd(dtype, c_out), \
                _rnd(dtype, n, c_out, t)
            yield f"causal_conv1d {dtype} {n}x{c_in}x{t}->{c_out} k{k}", lambda: (
                tk.causal_conv1d(x, w, b, dilation), tk.causal_conv1d(x, w, None, dilation),
                tk.causal_conv1d_backward(gy, x, w, dilation, [True, True, True]),
                tk.causal_conv1d_backward(gy, x, w, dilation, [False, True, False]))


def _masked_conv_cases(dtypes):
    from fastgen.triton_kernels import masked_conv as tk

    # (N, C_in, C_out, H, W, KH, KW, dilation, groups, color_channels, mask_type)
    cases = [(32, 64, 64, 28, 28, 3, 3, 1, 1, 1, "B"), (32, 1, 64, 28, 28, 7, 7, 1, 1, 1, "A"),
             (2, 6, 9, 5, 6, 7, 7, 2, 1, 3, "B"), (2, 6, 3, 5, 5, 3, 3, 1, 1, 3, "A"),
             (1, 10, 6, 5, 6, 5, 3, 2, 2, 1, "B"), (2, 3, 4, 4, 5, 1, 1, 1, 1, 1, "B")]
    for dtype in dtypes:
        for case in cases:
            n, c_in, c_out, h, w, kh, kw, dilation, groups, colour, mask = case
            x, wt, b = _rnd(dtype, n, c_in, h, w), _rnd(dtype, c_out, c_in // groups, kh, kw), _rnd(dtype, c_out)
            gy = _rnd(dtype, n, c_out, h, w)
            options = (mask, dilation, groups, colour)
            yield f"masked_conv2d {dtype} {case}", lambda: (
                tk.masked_conv2d(x, wt, b, *options), tk.masked_conv2d(x, wt, None, *options),
                tk.masked_conv2d_backward(gy, x, wt, *options, [True, True, True]),
                tk.masked_conv2d_backward(gy, x, wt, *options, [True, False, False]))


def _gated_pixelcnn_cases(dtypes):
    from fastgen.triton_kernels import gated_pixelcnn as tk

    # (N, C_in, C, H, W, kernel n, mask, conditioning features, biases)
    cases = [(32, 64, 64, 28, 28, 3, "B", 0, True), (2, 3, 5, 6, 5, 5, "A", 3, True),
             (1, 1, 2, 4, 3, 1, "A", 0, False), (2, 200, 200, 6, 5, 3, "B", 0, True)]
    for dtype in dtypes:
        for case in cases:
            n, c_in, c, h, w, size, mask, d, biases = case
            k = size // 2
            t = dict(v=_rnd(dtype, n, c_in, h, w), h=_rnd(dtype, n, c_in, h, w),
                     w_v=_rnd(dtype, 2 * c, c_in, k + 1, size), w_h=_rnd(dtype, 2 * c, c_in, 1, k + 1),
                     w_v2h=_rnd(dtype, 2 * c, 2 * c), w_res=_rnd(dtype, c, c),
                     cond=_rnd(dtype, n, d) if d else None, w_cond_v=_rnd(dtype, 2 * c, d) if d else None,
                     w_cond_h=_rnd(dtype, 2 * c, d) if d else None)
            b2, b1 = (_rnd(dtype, 2 * c), _rnd(dtype, c)) if biases else (None, None)
            args = (t["v"], t["h"], t["w_v"], b2, t["w_h"], b2, t["w_v2h"], b2, t["w_res"], b1, mask, t["cond"],
                    t["w_cond_v"], t["w_cond_h"])
            gv, gh = _rnd(dtype, n, c, h, w), _rnd(dtype, n, c, h, w)

            def run(args=args, t=t, gv=gv, gh=gh, mask=mask):
                tk.gated_pixelcnn_layer(*args, False)
                _, _, v_pre, h_pre = tk.gated_pixelcnn_layer(*args, True)
                tk.gated_pixelcnn_layer_backward(gv, gh, t["v"], t["h"], v_pre, h_pre, t["w_v"], t["w_h"],
                                                 t["w_v2h"], t["w_res"], mask, t["cond"], t["w_cond_v"],
                                                 t["w_cond_h"])
            yield f"gated_pixelcnn_layer {dtype} {case}", run


def _wavenet_cases(dtypes):
    from fastgen.bench.cases import wavenet as bench_wavenet
    from fastgen.triton_kernels import wavenet as tk

    # (N, C_res, C_gate, C_skip, C_cond, T, K, dilation)
    h = bench_wavenet.HEADLINE
    cases = [(16, 64, 128, 256, 0, 600, 2, 8), (2, 3, 6, 5, 2, 37, 3, 2), (1, 2, 4, 33, 3, 130, 1, 2),
             (2, 6, 300, 40, 3, 20, 2, 1), (h.n, h.c_res, h.c_gate, h.c_skip, 0, h.t, h.k, h.dilation)]
    for dtype in dtypes:
        for case in cases:
            n, r, g, s, d, t, k, dilation = case
            x = _rnd(dtype, n, r, t)
            args = [x, _rnd(dtype, g, r, k), _rnd(dtype, g), _rnd(dtype, r, g // 2), _rnd(dtype, r),
                    _rnd(dtype, s, g // 2), _rnd(dtype, s)]
            cond = [_rnd(dtype, n, d, t), _rnd(dtype, g, d)] if d else [None, None]
            grads = _rnd(dtype, n, r, t), _rnd(dtype, n, s, t)

            def run(args=args, cond=cond, grads=grads, dilation=dilation):
                no_bias = [None if i in (2, 4, 6) else a for i, a in enumerate(args)]
                tk.wavenet_layer(*no_bias, dilation, *cond, False)
                _, _, h = tk.wavenet_layer(*args, dilation, *cond, True)
                tk.wavenet_layer_backward(*grads, args[0], h, args[1], args[3], args[5], dilation, *cond)
            yield f"wavenet_layer {dtype} {case}", run


def _step_cases(dtypes):
    from fastgen.triton_kernels import steps as tk

    for dtype in dtypes:
        for n, r, g, s, k, dilation, d in [(1, 64, 128, 256, 2, 16384, 0), (3, 40, 70, 33, 3, 2, 3)]:
            length = dilation * (k - 1)
            state = torch.zeros(n, length, r, dtype=dtype)
            w = [_rnd(dtype, g, r, k), _rnd(dtype, g), _rnd(dtype, r, g // 2), _rnd(dtype, r),
                 _rnd(dtype, s, g // 2), None if d else _rnd(dtype, s)]
            cond = (_rnd(dtype, n, d), _rnd(dtype, g, d)) if d else (None, None)
            x = _rnd(dtype, n, r)
            yield f"wavenet_layer_step {dtype} {n}x{r} gate{g} skip{s}", lambda: tk.wavenet_layer_step(
                x, state, torch.tensor(5), *w, dilation, *cond)
        for n, c_in, c, taps, mask, d in [(16, 64, 64, 2, "B", 0), (3, 40, 40, 3, "B", 3), (2, 3, 4, 2, "A", 0)]:
            state = torch.zeros(n, c_in, taps, dtype=dtype)
            w_h, b_h, w_res = _rnd(dtype, 2 * c, c_in, 1, taps), _rnd(dtype, 2 * c), _rnd(dtype, c, c)
            cond = (_rnd(dtype, n, d), _rnd(dtype, 2 * c, d)) if d else (None, None)
            x, link = _rnd(dtype, n, c_in), _rnd(dtype, n, 2 * c)
            yield f"gated_pixelcnn_horizontal_step {dtype} {n}x{c_in}->{c} {mask}", lambda: (
                tk.gated_pixelcnn_horizontal_step(state, x, link, w_h, b_h, w_res, None if d else w_res[0], mask,
                                                  *cond))


def _decoder_cases(dtypes):
    from step_cases import generate_args, row_args

    from fastgen.triton_kernels import pixelcnn_rows, wavenet_decoder

    for dtype in dtypes:
        for sizes, cond_channels, k in [((64, 128, 256, 256, 256), 0, 2), ((5, 6, 7, 8, 9), 2, 3)]:
            args, kwargs = generate_args(n=2, steps=4, dtype=dtype, sizes=sizes, cond_channels=cond_channels, k=k)
            w_cond = kwargs["w_cond"] or [None] * len(args[0])
            yield f"wavenet_generate {dtype} {sizes} cond={cond_channels} k={k}", lambda: (
                wavenet_decoder.wavenet_generate(*args[:10], w_cond, *args[10:], kwargs["cond"], 0))
    for dtype in [d for d in dtypes if d in (torch.float32, torch.float64)]:  # the row kernel's dtypes
        for case in [dict(n=16, c=64, kernels=(7,) + (3,) * 14, width=28, levels=256),
                     dict(c_img=3, levels=9, cond_features=2)]:
            args, kwargs = row_args(dtype=dtype, **case)
            w_cond_h = kwargs["w_cond_h"] or [None] * len(args[2])
            links, uniforms, w_h, b_h, w_res, b_res, masks, wh, bh, wo, bo = args
            yield f"pixelcnn_generate_row {dtype} {case}", lambda: pixelcnn_rows.pixelcnn_generate_row(
                links, uniforms, w_h, b_h, w_res, b_res, masks, kwargs["cond"], w_cond_h, wh, bh, wo, bo,
                kwargs["levels"])


# Slowest to compile first, so parallel workers finish together.
CASE_FAMILIES = {f.__name__: f for f in [_gated_pixelcnn_cases, _wavenet_cases, _masked_conv_cases, _step_cases,
                                          _causal_conv_cases, _decoder_cases, _flow_cases, _gaussian_cases]}


def check(arch: int, family: str, dtypes: list[torch.dtype]) -> tuple[list[Variant], list[str]]:
    """(every distinct compiled variant, the cases whose calls raised) of one case family."""
    previous = triton_driver._active  # reset_active() would look for a real GPU driver
    triton_driver.set_active(CompileOnlyDriver(arch))
    saved_tf32 = torch.backends.cudnn.allow_tf32
    variants: dict[tuple[str, str], Variant] = {}
    failures = []
    try:
        with Recorder() as recorder:
            for case, call in CASE_FAMILIES[family](dtypes):
                # float32 twice: TF32 tiles (PyTorch's default) and IEEE ones.
                for tf32 in ([True, False] if "float32" in case else [True]):
                    recorder.case = case + (" tf32" if "float32" in case and tf32 else "")
                    torch.backends.cudnn.allow_tf32 = tf32
                    try:
                        call()
                    except Exception as error:  # a compile error: report it and go on
                        summary = "".join(traceback.format_exception_only(error)).strip()
                        failures.append(f"{recorder.case}: {summary[-1500:]}")
            for case, fn, kernel in recorder.launches:
                key = (fn.fn.__name__, kernel.metadata.hash)
                if key not in variants:
                    variants[key] = _variant(case, fn, kernel, arch)
    finally:
        triton_driver._active = previous
        torch.backends.cudnn.allow_tf32 = saved_tf32
    return list(variants.values()), failures


def _table(arch: int, variants: list[Variant]) -> list[str]:
    lines = [f"## sm_{arch}: {len(variants)} kernel variants", "",
             "| kernel | first case | constexprs | warps | registers | stack B | shared B | problems |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for v in sorted(variants, key=lambda v: (v.kernel, v.case)):
        lines.append(f"| {v.kernel} | {v.case} | {v.constants} | {v.num_warps} | {v.registers} | {v.stack} | "
                     f"{v.dynamic_shared + v.static_shared} | {'; '.join(v.problems) or '-'} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, action="append", choices=sorted(SHARED_LIMIT),
                        help="compute capability x10 to compile for (repeatable; default 80 and 90, --quick 90)")
    parser.add_argument("--quick", action="store_true",
                        help="float32 (TF32 and IEEE) and bfloat16 only, sm_90 unless --arch: what CI runs")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="compiling processes")
    parser.add_argument("--markdown", type=Path, help="also write the per-kernel tables to this file")
    parser.add_argument("--verbose", action="store_true", help="list the kernels that use a stack frame")
    args = parser.parse_args(argv)
    archs = args.arch or ([90] if args.quick else [80, 90])
    dtypes = QUICK_DTYPES if args.quick else DTYPES
    tasks = [(arch, family, dtypes) for arch in archs for family in CASE_FAMILIES]
    start = time.perf_counter()
    with ProcessPoolExecutor(max(1, args.jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(check, *zip(*tasks)))
    report = [f"# Triton kernels compiled for {', '.join(f'sm_{a}' for a in archs)} without a GPU", "",
              f"triton {triton.__version__}, torch {torch.__version__}; dtypes "
              f"{', '.join(str(d).removeprefix('torch.') for d in dtypes)}. `stack B` > 0: registers spilled "
              "(or a local array).", ""]
    bad = 0
    for arch in archs:
        variants = [v for (a, _, _), (vs, _) in zip(tasks, results) if a == arch for v in vs]
        failures = [f for (a, _, _), (_, fs) in zip(tasks, results) if a == arch for f in fs]
        problems = [v for v in variants if v.problems]
        spills = [v for v in variants if v.stack > 0 or v.local > 0]
        print(f"sm_{arch}: {len(variants)} kernel variants compiled; {len(failures)} failed calls, "
              f"{len(problems)} with a problem (a per-block limit or the tile-product instructions), "
              f"{len(spills)} with a stack frame")
        for line in failures:
            print(f"  FAILED {line}")
        for v in problems:
            print(f"  PROBLEM {v.kernel} ({v.case}; {v.constants}): {'; '.join(v.problems)}")
        for v in spills if args.verbose else []:
            print(f"  stack {v.stack} B: {v.kernel} ({v.case}; {v.constants})")
        report += _table(arch, variants) + [""] + [f"- FAILED {line}" for line in failures] + [""]
        bad += len(failures) + len(problems)
    print(f"{time.perf_counter() - start:.0f} s with {args.jobs} processes")
    if args.markdown:
        args.markdown.write_text("\n".join(report))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
