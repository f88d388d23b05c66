// Host launchers of the CUDA kernels of the Gaussian op family (reparameterize, KL,
// standard-normal log-density, and their backwards).
//
// Why raw pointers and a cudaStream_t: this header and its .cu are free of torch so nvcc can
// compile them on a machine whose torch has no CUDA; csrc/cuda/gaussian_cuda.cpp is the torch
// glue. The math is in kernels/include/fastgen/gaussian_math.h, shared with the CPU kernels.
//
// Conventions for every launcher:
// - tensors are dense, row-major, all of `dtype` and on the current device: the first dim is
//   the batch (`rows`), the others are flattened into `cols`; per-row results have `rows` entries;
// - accumulation is in float (double for kFloat64); row sums are deterministic (fixed order,
//   no atomics) and depend only on (rows, cols), not on the GPU;
// - `seed` is a device pointer to one int64, read by the kernels (never copied to the host, so
//   launches are CUDA-graph capturable); element i of the noise is fastgen's Philox stream at i;
// - everything is enqueued on `stream`; the return value is cudaGetLastError() after the
//   launches, or cudaErrorInvalidValue for bad arguments (nothing is launched then);
// - rows == 0 or cols == 0 is fine (a row of zero columns has a sum of 0).
#pragma once
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "fastgen/cuda_dtype.h"

namespace fastgen {
namespace cuda {

// Bytes of scratch that launch_gaussian_forward (with kl) and launch_normal_log_prob need for
// a (rows, cols) input: per-(row, chunk) partial sums when rows are long, else 0. Pass a buffer
// of at least this size, 16-byte aligned (any allocator's block is), or nullptr when it is 0.
size_t gaussian_workspace_bytes(DType dtype, int64_t rows, int64_t cols);

// z = mu + exp(logvar / 2) * eps              (written when z != nullptr)
// kl[row] = sum_col 0.5 * (mu^2 + std^2 - 1 - logvar), std = exp(logvar / 2)
//                                              (written when kl != nullptr, needs workspace)
// eps may be nullptr: the noise is then drawn from `seed` (required when z is written).
cudaError_t launch_gaussian_forward(DType dtype, const void* mu, const void* logvar,
                                    const void* eps, const int64_t* seed, void* z, void* kl,
                                    void* workspace, int64_t rows, int64_t cols,
                                    cudaStream_t stream);

// Backward of z and kl, with std = exp(logvar / 2) and eps given or regenerated from `seed`:
//   grad_mu     = gz + gkl[row] * mu
//   grad_logvar = 0.5 * (gz * std * eps + gkl[row] * (std^2 - 1))
// grad_z (like mu) nullptr means gz = 0, and then neither eps nor seed is read;
// grad_kl (rows entries) nullptr means gkl = 0. grad_mu and grad_logvar are like mu.
cudaError_t launch_gaussian_backward(DType dtype, const void* grad_z, const void* grad_kl,
                                     const void* mu, const void* logvar, const void* eps,
                                     const int64_t* seed, void* grad_mu, void* grad_logvar,
                                     int64_t rows, int64_t cols, cudaStream_t stream);

// log_prob[row] = -0.5 * sum_col z^2 - cols * 0.5 * log(2 pi).
cudaError_t launch_normal_log_prob(DType dtype, const void* z, void* log_prob, void* workspace,
                                   int64_t rows, int64_t cols, cudaStream_t stream);

// grad_z = -grad[row] * z, with grad of `rows` entries.
cudaError_t launch_normal_log_prob_backward(DType dtype, const void* grad, const void* z,
                                            void* grad_z, int64_t rows, int64_t cols,
                                            cudaStream_t stream);

}  // namespace cuda
}  // namespace fastgen
