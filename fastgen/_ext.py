"""Loading of the compiled extension ``fastgen._C``.

``import fastgen`` must work without it: a failed load gives one warning naming the cause and
fastgen falls back to the plain-PyTorch reference. ``FASTGEN_REQUIRE_EXT=1`` turns that into
an error (for CI and for users who want to be sure they run the kernels).
"""

from __future__ import annotations

import importlib
import warnings

import torch

from fastgen._env import env_flag

_loaded = False
_load_error: str | None = None
_cuda_kernels = False


def _describe_failure(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    if "undefined symbol" in text or "version" in text.lower():
        text += (
            f" (the extension was probably built against another torch than the installed "
            f"{torch.__version__}: rebuild it with `pip install --no-build-isolation -e .`)"
        )
    return text


def _load() -> None:
    global _loaded, _load_error, _cuda_kernels
    require = env_flag("FASTGEN_REQUIRE_EXT")  # read first: a misspelt value fails every import
    if env_flag("FASTGEN_DISABLE_EXT"):
        _load_error = "disabled by FASTGEN_DISABLE_EXT=1"
    else:
        try:
            module = importlib.import_module("fastgen._C")
            _loaded = True
            del module  # importing it ran the op registrations
            _cuda_kernels = _has_cuda_kernel()
        except Exception as error:  # noqa: BLE001 - any load failure means the same fallback
            _load_error = _describe_failure(error)
    if _loaded:
        return
    message = f"fastgen._C could not be loaded ({_load_error})"
    if require:
        raise ImportError(message + "; FASTGEN_REQUIRE_EXT=1 turns off the plain-PyTorch fallback.")
    warnings.warn(message + "; using the plain-PyTorch reference.", RuntimeWarning, stacklevel=3)


def _has_cuda_kernel() -> bool:
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key("fastgen::reparameterize", "CUDA")
    except Exception:  # noqa: BLE001 - private API; absence just means "unknown"
        return False


def available() -> bool:
    """Whether the compiled extension is loaded (its CPU kernels are then live)."""
    return _loaded


def cuda_kernels() -> bool:
    """Whether the compiled extension carries the CUDA kernels."""
    return _cuda_kernels


def has_op(name: str) -> bool:
    """Whether the loaded extension declares the op ``fastgen::name``."""
    if not _loaded:
        return False
    try:
        torch._C._dispatch_find_schema_or_throw(f"fastgen::{name}", "")
    except RuntimeError:
        return False
    return True


def has_compiled_autograd(name: str) -> bool:
    """Whether the loaded extension registers the autograd of ``fastgen::name`` in C++ (checked
    before any Python registration, which would answer the same question with yes)."""
    return has_op(name) and torch._C._dispatch_has_kernel_for_dispatch_key(f"fastgen::{name}", "Autograd")


def check_ops(names: list[str], compiled_autograd: tuple[str, ...] = ()) -> bool:
    """Whether the extension declares every op in ``names`` (and registers the autograd of those in
    ``compiled_autograd`` in C++); if not, warn (or raise) once for them.

    A missing op means fastgen._C was built from older sources than this package (an editable
    install not rebuilt after an update): that op family then runs the reference.
    """
    missing = [name for name in names if not has_op(name)]
    missing += [f"{name} (its C++ autograd)" for name in compiled_autograd
                if has_op(name) and not has_compiled_autograd(name)]
    if not _loaded or not missing:
        return _loaded
    message = (f"fastgen._C lacks the op(s) {', '.join(missing)}: it was built from older sources than "
               "this package, so they run the plain-PyTorch reference; rebuild it with "
               "`pip install --no-build-isolation -e .`.")
    if env_flag("FASTGEN_REQUIRE_EXT"):
        raise ImportError(message + " (FASTGEN_REQUIRE_EXT=1 turns that fallback into this error.)")
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    return False


def load_error() -> str | None:
    """Why the extension is not loaded, or None when it is."""
    return _load_error


_load()
