// Host/device qualifiers shared by the CPU kernels (g++) and the CUDA kernels (nvcc).
// Everything under kernels/include is free of torch headers so nvcc can compile it on a
// machine whose torch has no CUDA.
#pragma once

#if defined(__CUDACC__)
#define FASTGEN_HD __host__ __device__ __forceinline__
#else
#define FASTGEN_HD inline __attribute__((always_inline))
#endif
