"""Argument checks for the functional API: each error names the argument and what was expected."""

from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def check_float_tensor(value: object, name: str, *, min_dim: int = 1) -> torch.Tensor:
    """``value`` must be a floating-point tensor of rank >= ``min_dim``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must have a floating dtype (float32, float16, bfloat16 or float64), got {value.dtype}"
        )
    if value.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimension(s) (the first is the batch), "
            f"got shape {tuple(value.shape)}"
        )
    return value


def check_like(value: object, name: str, reference: torch.Tensor, reference_name: str) -> torch.Tensor:
    """``value`` must be a tensor with the shape, dtype and device of ``reference``."""
    check_float_tensor(value, name, min_dim=0)
    assert isinstance(value, torch.Tensor)
    if value.shape != reference.shape:
        raise ValueError(
            f"{name} must have the shape of {reference_name} {tuple(reference.shape)}, got {tuple(value.shape)}"
        )
    if value.dtype != reference.dtype:
        raise TypeError(f"{name} must have the dtype of {reference_name} ({reference.dtype}), got {value.dtype}")
    if value.device != reference.device:
        raise ValueError(
            f"{name} must be on the device of {reference_name} ({reference.device}), got {value.device}"
        )
    return value


def check_generator(generator: object) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def check_rank(value: object, name: str, rank: int, layout: str) -> torch.Tensor:
    """``value`` must be a floating-point tensor with exactly ``rank`` dimensions laid out as ``layout``."""
    check_float_tensor(value, name, min_dim=0)
    assert isinstance(value, torch.Tensor)
    if value.dim() != rank:
        raise ValueError(f"{name} must have {rank} dimensions {layout}, got shape {tuple(value.shape)}")
    return value


def check_same(value: torch.Tensor, name: str, x: torch.Tensor, x_name: str = "x") -> None:
    """``value`` must have the dtype and device of the input ``x`` (called ``x_name`` in errors)."""
    if value.dtype != x.dtype:
        raise TypeError(f"{name} must have the dtype of {x_name} ({x.dtype}), got {value.dtype}")
    check_device(value, name, x, x_name)


def check_device(value: torch.Tensor, name: str, x: torch.Tensor, x_name: str = "x") -> None:
    """``value`` must be on the device of the input ``x`` (called ``x_name`` in errors)."""
    if value.device != x.device:
        raise ValueError(f"{name} must be on the device of {x_name} ({x.device}), got {value.device}")


def check_bias(bias: object, c_out: int, x: torch.Tensor, name: str = "bias", x_name: str = "x") -> None:
    """``bias`` must be None or a (C_out,) tensor with the dtype and device of ``x``."""
    if bias is None:
        return
    check_float_tensor(bias, name, min_dim=0)
    assert isinstance(bias, torch.Tensor)
    check_same(bias, name, x, x_name)
    if tuple(bias.shape) != (c_out,):
        raise ValueError(f"{name} must have shape (C_out,) = ({c_out},), got {tuple(bias.shape)}")


def check_flag(value: object, name: str) -> bool:
    """``value`` must be a bool (a string such as "no" would otherwise count as true)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_positive_int(value: object, name: str) -> int:
    """``value`` must be a Python int >= 1 (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


MAX_REACH = 2**62  # the kernels' int64 tap offsets stay far from overflow below this


def check_dilation(value: object, reach: int, reach_name: str) -> int:
    """``value`` must be an int >= 1 with ``reach * value`` (the farthest tap's offset: K - 1 for a
    causal kernel, the half-width for a masked one) below 2**62."""
    dilation = check_positive_int(value, "dilation")
    if reach * dilation >= MAX_REACH:
        raise ValueError(f"dilation must keep {reach_name} * dilation below 2**62, got dilation {dilation} "
                         f"with {reach_name} = {reach}")
    return dilation


def check_apart(state: torch.Tensor, **inputs: torch.Tensor | None) -> None:
    """The ``inputs`` (None skipped) are read while ``state`` is updated in place: none may share
    memory with it (the result would depend on the order the kernel reads and writes).

    Skipped while torch.compile traces (it cannot trace the overlap query; the compiled graph's
    kernels are the ops themselves, whose CPU kernels check it again at run time)."""
    if torch.compiler.is_compiling():
        return
    for name, value in inputs.items():
        if value is not None and torch._C._overlaps(value, state):
            raise ValueError(f"{name} must not share memory with state (state is updated in place while "
                             f"{name} is read): pass a copy")
