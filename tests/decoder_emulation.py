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
    lib.emulate_wavenet_decoder_cluster.argtypes = [ctypes.c_int, p, p, p, p, p, p, p, p, i64, i64, i64, p,
                                                    ctypes.c_int, i64, i64, ctypes.c_int]
    lib.emulate_wavenet_decoder_cluster.restype = ctypes.c_int
    lib.wavenet_decoder_cluster_smem_bytes.argtypes = [p, i64, i64, i64, i64, ctypes.c_int]
    lib.wavenet_decoder_cluster_smem_bytes.restype = i64
    return lib


def dims(shape: cuda_decoder.Shape) -> torch.Tensor:
    return torch.tensor(shape.as_list(), dtype=torch.int64)


class _Call:
    """A wavenet_generate call's tensors in the kernels' form, kept alive while the kernel runs."""

    def __init__(self, states, first_input, uniforms, embedding, w_dilated, b_dilated, w_res, b_res, w_skip,
                 b_skip, dilations, w_hidden, b_hidden, w_out, b_out, cond, w_cond):
        assert all(s.is_contiguous() for s in states)
        w_cond = w_cond or [None] * len(states)
        self.shape = cuda_decoder.shape_of(states, w_dilated, w_skip, w_hidden, w_out, cond)
        self.weights = cuda_decoder.pack_weights(self.shape, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip,
                                                 w_cond, w_hidden, b_hidden, w_out, b_out)
        self.n, self.steps = uniforms.shape
        self.codes = torch.full((self.n, self.steps), -1, dtype=torch.int64)
        self.cond = None if cond is None else cond.transpose(1, 2).contiguous()
        self.rings = torch.tensor([s.data_ptr() for s in states], dtype=torch.int64)
        self.dilations = torch.tensor(list(dilations), dtype=torch.int64)
        self.sizes = dims(self.shape)
        self.tensors = [first_input.contiguous(), uniforms.contiguous(), embedding.contiguous(), self.weights]
        self.double = int(first_input.dtype == torch.float64)

    def pointers(self):
        """double flag, rings, dilations, first_input, uniforms, embedding, weights, cond, codes, N, T."""
        return (self.double, self.rings.data_ptr(), self.dilations.data_ptr(), *(t.data_ptr() for t in self.tensors),
                None if self.cond is None else self.cond.data_ptr(), self.codes.data_ptr(), self.n, self.steps)


def generate(lib: ctypes.CDLL, *args, cond=None, w_cond=None, start=0, resident_elems=None,
             threads=64) -> torch.Tensor:
    """wavenet_generate's codes from the emulated one-block-per-sample kernel (float32 or float64
    CPU tensors; positional arguments as ops.wavenet_generate's); the states are updated in place.
    ``resident_elems`` defaults to every weight in shared memory."""
    call = _Call(*args, cond, w_cond)
    resident = call.shape.weight_elems() if resident_elems is None else resident_elems
    status = lib.emulate_wavenet_decoder(*call.pointers(), start, resident, call.sizes.data_ptr(), threads)
    assert status == 0
    return call.codes


def generate_cluster(lib: ctypes.CDLL, *args, cond=None, w_cond=None, start=0, cluster=2, resident_layers=None,
                     head_resident=True, threads=32) -> torch.Tensor:
    """The same from the emulated cluster kernel: ``cluster`` blocks per sample, the first
    ``resident_layers`` layers' slices (default: all) and the head's in shared memory."""
    call = _Call(*args, cond, w_cond)
    layers = call.shape.layers if resident_layers is None else resident_layers
    status = lib.emulate_wavenet_decoder_cluster(*call.pointers(), start, call.sizes.data_ptr(), threads, cluster,
                                                 layers, int(head_resident))
    assert status == 0
    return call.codes
