"""What fastgen runs on here: versions, and which of its backends are live.

``fastgen.info()`` prints a short report and returns it as a dict; ``fastgen info`` on the
command line prints the same (``--json`` for the dict). Everything is probed defensively:
this is the first thing a user runs when something is wrong, so it must never raise.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import warnings
from typing import Any, TextIO

import torch

from fastgen._env import env_flag


def _fastgen_version() -> str | None:
    # Read lazily: fastgen/__init__.py imports this module before it sets __version__.
    try:
        import fastgen

        version = getattr(fastgen, "__version__", None)
        if version is not None:
            return str(version)
    except Exception:  # noqa: BLE001 - fall through to the installed metadata
        pass
    try:
        from importlib.metadata import version as dist_version

        return dist_version("fastgen")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return None


def _extension() -> dict[str, Any]:
    try:
        with warnings.catch_warnings():
            # The load warning is reported here as `load_error`; don't print it twice.
            warnings.simplefilter("ignore", RuntimeWarning)
            from fastgen import _ext
    except Exception as error:  # noqa: BLE001 - e.g. FASTGEN_REQUIRE_EXT=1 and no extension
        return {"cpu": False, "cuda": False, "load_error": f"{type(error).__name__}: {error}"}
    return {"cpu": _ext.available(), "cuda": _ext.cuda_kernels(), "load_error": _ext.load_error()}


def _triton() -> dict[str, Any]:
    interpret = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    try:
        triton = importlib.import_module("triton")
    except Exception as error:  # noqa: BLE001 - missing or broken install reads the same
        return {"available": False, "version": None, "interpreter": interpret,
                "error": f"{type(error).__name__}: {error}"}
    return {"available": True, "version": getattr(triton, "__version__", None),
            "interpreter": interpret, "error": None}


def _gpus() -> list[dict[str, Any]]:
    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        gpus.append({
            "index": index,
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count,
        })
    return gpus


def collect() -> dict[str, Any]:
    """The facts :func:`info` prints, as a JSON-serialisable dict (prints nothing)."""
    extension = _extension()
    triton = _triton()
    gpus = _gpus()
    return {
        "fastgen": _fastgen_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "backends": {
            "reference": True,  # plain PyTorch: always there
            # the kernels may be built and loaded and still bypassed
            "force_reference": env_flag("FASTGEN_FORCE_REFERENCE"),
            "cpu_extension": extension["cpu"],
            "cuda_extension": extension["cuda"],
            "extension_load_error": extension["load_error"],
            "triton": triton["available"],
            "triton_version": triton["version"],
            "triton_interpreter": triton["interpreter"],
            "triton_error": triton["error"],
            "cuda_available": torch.cuda.is_available(),
        },
        "gpus": gpus,
    }


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def format_info(data: dict[str, Any]) -> str:
    """Render the dict from :func:`collect` as aligned ``key: value`` lines."""
    backends = data["backends"]
    cpu_ext = _yes_no(backends["cpu_extension"])
    if not backends["cpu_extension"] and backends["extension_load_error"]:
        cpu_ext += f" ({backends['extension_load_error']})"
    if backends["triton"]:
        triton = f"yes ({backends['triton_version']}"
        if backends["triton_interpreter"]:
            triton += ", interpreter on: TRITON_INTERPRET=1)"
        elif not backends["cuda_available"]:
            triton += "; its kernels need a GPU, or TRITON_INTERPRET=1 on the CPU)"
        else:
            triton += ")"
    else:
        triton = f"no ({backends['triton_error']})"
    gpu_lines = [
        f"{gpu['name']} (cuda:{gpu['index']}, sm_{gpu['capability'].replace('.', '')}, "
        f"{gpu['memory_gib']} GiB)"
        for gpu in data["gpus"]
    ] or ["none (torch.cuda.is_available() is False)"]
    rows = [
        ("fastgen", data["fastgen"] or "unknown"),
        ("torch", f"{data['torch']} (CUDA {data['torch_cuda'] or 'none'})"),
        ("python", data["python"]),
        ("platform", data["platform"]),
        ("CPU threads", str(data["cpu_threads"])),
        ("reference ops", "yes (plain PyTorch)" + ("; FASTGEN_FORCE_REFERENCE=1: every op runs it, the kernels "
                                                   "are bypassed" if backends.get("force_reference") else "")),
        ("CPU extension", cpu_ext),
        ("CUDA extension", _yes_no(backends["cuda_extension"])),
        ("Triton", triton),
    ]
    rows += [("GPU" if i == 0 else "", line) for i, line in enumerate(gpu_lines)]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key + ':' if key else '':<{width + 1}} {value}" for key, value in rows)


def info(*, file: TextIO | None = None, echo: bool = True) -> dict[str, Any]:
    """Print what fastgen runs on (versions, live backends, GPUs) and return it as a dict.

    Args:
        file: where to print (default ``sys.stdout``).
        echo: ``False`` returns the dict without printing.

    Returns:
        dict with keys ``fastgen``, ``torch``, ``torch_cuda``, ``python``, ``platform``,
        ``machine``, ``cpu_threads``, ``backends`` (dict of flags and load errors) and
        ``gpus`` (list of dicts, empty without CUDA).
    """
    data = collect()
    if echo:
        print(format_info(data), file=file if file is not None else sys.stdout)
    return data
