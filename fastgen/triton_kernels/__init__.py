"""Triton kernels for the GPU, one module per op family.

They implement the ``fastgen::`` op schemas (``csrc/ops.cpp``) for the CUDA dispatch key when
the compiled CUDA kernels are not built. Set ``TRITON_INTERPRET=1`` before importing a module
here to run its kernels on CPU tensors (that is how CI tests them).
"""
