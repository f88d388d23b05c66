"""Build of fastgen and its compiled extension fastgen._C.

The CPU kernels are always built. The CUDA part (kernels/**/*.cu and csrc/cuda/*.cpp) is
added only when the installed torch was built with CUDA and a CUDA toolkit is found: the
decision never depends on whether a GPU is present, so a GPU-less build machine produces
the same library as a GPU machine.

Environment switches:
  FASTGEN_SKIP_CUDA=1       build the CPU kernels only, even where CUDA is available
  FASTGEN_SKIP_EXT=1        build no extension at all (pure-Python install, reference ops)
  FASTGEN_CUDA_ARCHS="8.0;9.0"  CUDA architectures to compile for (default sm_80 and sm_90)
  MAX_JOBS=N                parallel compile jobs (read by torch's BuildExtension/ninja)
"""

from __future__ import annotations

import glob
import importlib.util
import os

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _load_env_module():
    """fastgen/_env.py loaded alone: importing the package would import the extension being built."""
    spec = importlib.util.spec_from_file_location("fastgen_env", os.path.join(ROOT, "fastgen", "_env.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_flag = _load_env_module().env_flag  # fastgen's own reading of an on/off variable


def _sources(pattern: str) -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern), recursive=True))


def _remove_stale_builds() -> None:
    """Python imports an in-place build from before the stable-ABI switch (fastgen/_C.cpython-*.so)
    ahead of fastgen/_C.abi3.so, so a rebuild would not be seen."""
    for path in glob.glob(os.path.join(ROOT, "fastgen", "_C.cpython-*.so")):
        os.remove(path)


def _extensions() -> tuple[list, dict]:
    if _flag("FASTGEN_SKIP_EXT"):
        return [], {}
    _remove_stale_builds()
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    with_cuda = torch.version.cuda is not None and CUDA_HOME is not None and not _flag("FASTGEN_SKIP_CUDA")
    sources = _sources("csrc/*.cpp") + _sources("csrc/cpu/*.cpp")
    cxx_flags = ["-O3", "-g0", "-fopenmp", "-std=c++17", "-fno-math-errno", "-fno-trapping-math"]
    include_dirs = [os.path.join(ROOT, "kernels", "include")]
    # -fopenmp at link time: at::parallel_for is inlined into our code and only runs in
    # parallel when compiled with OpenMP; libgomp resolves to the copy torch already loaded.
    # py_limited_api: the module object uses only CPython's stable ABI (csrc/module.cpp) and the
    # ops are dispatcher registrations, so one build (fastgen/_C.abi3.so) loads under every Python
    # >= 3.10 with the same torch; torch_python is not linked.
    common = {"include_dirs": include_dirs, "extra_link_args": ["-fopenmp"], "py_limited_api": True}
    if with_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", os.environ.get("FASTGEN_CUDA_ARCHS", "8.0;9.0"))
        sources += _sources("csrc/cuda/*.cpp") + _sources("kernels/**/*.cu")
        extension = CUDAExtension(
            "fastgen._C",
            sources,
            extra_compile_args={
                "cxx": cxx_flags + ["-DFASTGEN_WITH_CUDA"],
                "nvcc": ["-O3", "-std=c++17", "-DFASTGEN_WITH_CUDA"],
            },
            **common,
        )
    else:
        extension = CppExtension("fastgen._C", sources, extra_compile_args={"cxx": cxx_flags}, **common)
    return [extension], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
