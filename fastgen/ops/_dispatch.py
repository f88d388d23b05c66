"""Which implementation a functional call runs: the registered kernels or the reference.

The kernels run when a kernel for the tensor's device is registered under ``torch.ops.fastgen``
(the C++ CPU kernels, the CUDA kernels, or Triton registered for CUDA); otherwise the call
falls back to the plain-PyTorch reference, which gives the same numbers, only slower.
The table is filled once at import, so under torch.compile the check is a constant.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable

import torch

from fastgen import _ext
from fastgen._env import env_flag

_log = logging.getLogger(__name__)

_DISPATCH_KEYS = {"cpu": "CPU", "cuda": "CUDA"}

# op name -> device types ("cpu", "cuda") with a registered kernel
KERNEL_DEVICES: dict[str, frozenset[str]] = {}


def record_kernels(op_names: list[str]) -> None:
    """Fill KERNEL_DEVICES for ``op_names`` from the dispatcher (call after registering kernels)."""
    force_reference = env_flag("FASTGEN_FORCE_REFERENCE")
    for name in op_names:
        devices = set()
        if _ext.has_op(name) and not force_reference:
            for device_type, key in _DISPATCH_KEYS.items():
                if torch._C._dispatch_has_kernel_for_dispatch_key(f"fastgen::{name}", key):
                    devices.add(device_type)
        KERNEL_DEVICES[name] = frozenset(devices)


def use_kernel(op_name: str, tensor: torch.Tensor) -> bool:
    """Whether ``fastgen::op_name`` has a kernel for ``tensor``'s device, and may run it here.

    Under forward-mode AD (``torch.autograd.forward_ad``, ``torch.func.jvp`` / ``jacfwd``) and the
    other ``torch.func`` transforms (``grad``, ``jacrev``, ``vmap``) the reference runs instead: the
    kernels have no forward derivative nor functorch rules, and PyTorch gives a custom op's output
    no tangent rather than an error, so ``jvp`` would silently be zero.
    """
    if under_function_transform():
        return False
    return tensor.device.type in KERNEL_DEVICES.get(op_name, frozenset())


def under_function_transform() -> bool:
    """Whether a forward-AD dual level or a torch.func transform is active (global state: the
    transformed tensor may be any argument, e.g. only the weight under ``torch.func.grad``).
    Always False while torch.compile traces: the compiled graph uses the kernels."""
    if torch.compiler.is_compiling():
        return False
    return torch.autograd.forward_ad._current_level >= 0 or torch._C._functorch.peek_interpreter_stack() is not None


def needs_grad(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd will ask for a gradient of any of ``tensors`` (None entries are skipped)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels accumulate and save pre-activations in: float32 for float16/bfloat16."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def register_triton_for_cuda(modules: dict[str, str]) -> None:
    """Register Triton kernels as the CUDA implementation of the ops without a compiled one.

    ``modules`` maps op name -> module holding a function of that name (in
    ``fastgen.triton_kernels``, or the Python side of a compiled kernel that needs one). Checked
    per op, so a compiled CUDA kernel, once written, takes over by itself. Without a GPU nothing
    is registered; without Triton the reference runs on CUDA tensors.
    """
    if not torch.cuda.is_available():
        return
    for name, module_name in modules.items():
        if torch._C._dispatch_has_kernel_for_dispatch_key(f"fastgen::{name}", "CUDA"):
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            _log.info("Triton unavailable (%s): %s on CUDA uses the reference implementation", error, name)
            continue
        except Exception as error:  # noqa: BLE001 - a broken kernel module must not break import
            _log.warning("%s failed to load (%s): %s on CUDA uses the reference implementation",
                         module_name, error, name)
            continue
        torch.library.register_kernel(f"fastgen::{name}", "cuda", getattr(module, name))


def once_differentiable(op_name: str) -> Callable[[Callable], Callable]:
    """Decorate the autograd backward of ``fastgen::op_name``: its gradients are exact, but the
    fused backward kernel has no derivative of its own. Differentiating them again (after
    ``create_graph=True``) raises an error naming the op, instead of silently giving zeros.
    Outside ``create_graph=True`` (grad mode off in the backward) it costs nothing."""
    message = (f"fastgen::{op_name} has no second derivative: its backward is a fused kernel, so the "
               "gradients it returns cannot be differentiated again (create_graph=True)").encode()

    def decorate(backward: Callable) -> Callable:
        @functools.wraps(backward)
        def run(ctx, *grads):
            if not torch.is_grad_enabled():
                return backward(ctx, *grads)
            with torch.no_grad():
                outputs = backward(ctx, *grads)
            single = not isinstance(outputs, tuple)
            outputs = (outputs,) if single else outputs
            # Error nodes behind detached copies: reached only if someone differentiates them.
            inputs = [o.detach().requires_grad_(True) if isinstance(o, torch.Tensor) and o.is_floating_point()
                      else o for o in outputs]
            wrapped = torch._C._functions.DelayedError(message, len(inputs))(*inputs)
            wrapped = wrapped if isinstance(wrapped, tuple) else (wrapped,)
            return wrapped[0] if single else tuple(wrapped)

        return run

    return decorate


def zeros_for_none(grads: tuple, shapes: tuple, like: torch.Tensor) -> tuple:
    """The output gradients a fused layer's backward kernel takes, with zeros of the output's shape
    (dtype and device of ``like``) for an output autograd gave none (it was not used)."""
    return tuple(like.new_zeros(shape) if grad is None else grad for grad, shape in zip(grads, shapes))


def register_fused_layer(op_names: list[str], triton_module: str, register_fakes: Callable[[], None],
                         backward: Callable, setup_context: Callable) -> None:
    """Register a fused layer ``[forward op, backward op]``: its fake kernels, the autograd of the
    forward op and the Triton CUDA fallback of both, when the extension has the ops; then record
    which devices have kernels."""
    if _ext.check_ops(op_names):
        register_fakes()
        torch.library.register_autograd(f"fastgen::{op_names[0]}", once_differentiable(op_names[0])(backward),
                                        setup_context=setup_context)
        register_triton_for_cuda({name: triton_module for name in op_names})
    record_kernels(op_names)
