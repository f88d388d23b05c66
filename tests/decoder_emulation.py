"""Runs the persistent CUDA WaveNet decoder's block program on the CPU (tests/native/
decoder_emulator.cpp, built here with g++ and loaded with ctypes): the same source as the GPU
kernel, with one thread per CUDA thread and real barriers, so its indexing, packed-weight
layout and barrier placement are checked on machines without a GPU."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import torch

from fastgen.ops import _wavenet_decoder_cuda as cuda_decoder

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "tests" / "native" / "decoder_emulator.cpp"


def build(directory: Path) -> ctypes.CDLL | None:
    """The emulator as a shared library in ``directory`` (None without g++)."""
    compiler = shutil.which("g++")
    if compiler is None:
        return None
    library = directory / "decoder_emulator.so"
    subprocess.run([compiler, "-O1", "-std=c++20", "-pthread", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
                    f"-I{ROOT / 'kernels' / 'include'}", f"-I{ROOT / 'kernels' / 'wavenet'}", str(SOURCE), "-o",
                    str(library)], check=True, capture_output=True, text=True)
    lib = ctypes.CDLL(str(library))
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.emulate_wavenet_decoder.argtypes = [ctypes.c_int, p, p, p, p, p, p, p, p, i64, i64, i64, i64, p, ctypes.c_int]
    lib.emulate_wavenet_decoder.restype = ctypes.c_int
    lib.wavenet_decoder_smem_bytes.argtypes = [p, i64, i64, i64]
    lib.wavenet_decoder_smem_bytes.restype = i64
    return lib


def dims(shape: cuda_decoder.Shape) -> torch.Tensor:
    return torch.tensor(shape.as_list(), dtype=torch.int64)


def generate(lib: ctypes.CDLL, states, first_input, uniforms, embedding, w_dilated, b_dilated, w_res, b_res, w_skip,
             b_skip, dilations, w_hidden, b_hidden, w_out, b_out, *, cond=None, w_cond=None, start=0,
             resident_elems=None, threads=64) -> torch.Tensor:
    """wavenet_generate's codes from the emulated kernel (float32 or float64 CPU tensors); the
    states are updated in place. ``resident_elems`` defaults to every weight in shared memory."""
    w_cond = w_cond or [None] * len(states)
    shape = cuda_decoder.shape_of(states, w_dilated, w_skip, w_hidden, w_out, cond)
    weights = cuda_decoder.pack_weights(shape, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, w_cond,
                                        w_hidden, b_hidden, w_out, b_out)
    resident = shape.weight_elems() if resident_elems is None else resident_elems
    n, steps = uniforms.shape
    codes = torch.full((n, steps), -1, dtype=torch.int64)
    cond_steps = None if cond is None else cond.transpose(1, 2).contiguous()
    rings = torch.tensor([s.data_ptr() for s in states], dtype=torch.int64)
    dilation_tensor = torch.tensor(list(dilations), dtype=torch.int64)
    sizes = dims(shape)
    keep = [first_input.contiguous(), uniforms.contiguous(), embedding.contiguous(), weights]  # alive for the call
    assert all(s.is_contiguous() for s in states)
    status = lib.emulate_wavenet_decoder(
        int(first_input.dtype == torch.float64), rings.data_ptr(), dilation_tensor.data_ptr(),
        *(t.data_ptr() for t in keep), None if cond_steps is None else cond_steps.data_ptr(), codes.data_ptr(),
        n, steps, start, resident, sizes.data_ptr(), threads)
    assert status == 0
    return codes
