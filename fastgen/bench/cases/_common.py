"""Steps shared by the case modules of the convolution-like families (conv, masked_conv, wavenet,
pixelcnn): which cases a factory makes, and how one case is put together.

Not a case module itself (its name starts with ``_``, so :func:`load_all` skips it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from fastgen.bench.harness import (
    EAGER,
    FASTGEN,
    FASTGEN_TRITON,
    FORWARD,
    FORWARD_BACKWARD,
    BenchCase,
    CaseSpec,
)
from fastgen.bench.registry import triton_kernels

CaseMaker = Callable[[Any, torch.dtype, str, bool], list[BenchCase]]


def family_cases(spec: CaseSpec, triton_family: str, shapes: Iterable[Any], make_cases: CaseMaker
                 ) -> list[BenchCase]:
    """``make_cases(shape, dtype, mode, triton)`` for every shape, dtype and pass (forward, then
    forward+backward). The dtypes: those asked for, else fp32 on a CPU and fp32/bf16/fp16 on a GPU;
    ``--quick`` keeps the first. ``triton``: on a GPU where ``fastgen.triton_kernels.<triton_family>``
    can be launched."""
    on_gpu = spec.device.type == "cuda"
    triton = on_gpu and triton_kernels(triton_family) is not None
    if spec.dtypes is not None:
        dtypes = spec.dtypes
    elif on_gpu:
        dtypes = (torch.float32, torch.bfloat16, torch.float16)
    else:
        dtypes = (torch.float32,)
    if spec.quick:
        dtypes = dtypes[:1]
    cases = []
    for shape in shapes:
        for dtype in dtypes:
            for mode in (FORWARD, FORWARD_BACKWARD):
                cases.extend(make_cases(shape, dtype, mode, triton))
    return cases


def layer_case(op: str, label: str, dtype: torch.dtype, mode: str, *,
               make_inputs: Callable[[torch.device], tuple], eager: Callable, fastgen: Callable,
               triton: Callable | None, elements_moved: int, grad_args: tuple[int, ...], gradient_atol: float,
               flops: int = 0, output_atol: dict[int, float] | None = None) -> BenchCase:
    """One case comparing eager, fastgen and (``triton`` not None) fastgen-triton.

    ``elements_moved``: the minimum elements the pass reads and writes. ``gradient_atol``: the
    absolute tolerance of float32/float64 forward+backward, whose weight and bias gradients sum
    many products (a different but equally exact summation order differs by about that much);
    the default tolerances otherwise. ``output_atol``: see :class:`BenchCase`.
    """
    implementations: dict[str, Callable] = {EAGER: eager, FASTGEN: fastgen}
    if triton is not None:
        implementations[FASTGEN_TRITON] = triton
    element = torch.empty((), dtype=dtype).element_size()
    exact = mode == FORWARD_BACKWARD and dtype in (torch.float32, torch.float64)
    return BenchCase(
        op=op, shape=label, dtype=dtype, mode=mode, make_inputs=make_inputs, implementations=implementations,
        bytes_moved=elements_moved * element, grad_args=grad_args,
        tolerance=(1e-4, gradient_atol) if exact else None, flops=flops, output_atol=output_atol or {},
    )


def asked_grads(grads: Sequence[torch.Tensor], needs: Sequence[bool], n_options: int) -> tuple:
    """What an autograd backward returns: each gradient whose input needs one (else None), then None
    for the ``n_options`` trailing non-tensor arguments."""
    return tuple(g if need else None for g, need in zip(grads, needs)) + (None,) * n_options
