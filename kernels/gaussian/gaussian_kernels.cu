// CUDA kernels of reparameterize, the Gaussian KL and their backward. The per-element math is
// fastgen/gaussian_math.h, the expressions the CPU kernels evaluate; the work layout is
// described in gaussian_device.cuh.
#include "gaussian_device.cuh"

namespace fastgen {
namespace cuda {
namespace {

// Rows shorter than this with in-kernel noise get z from its own elementwise pass (see below).
constexpr int64_t kFuseMinCols = 32;

// The noise of the Philox block at `base`: loaded from eps when given, else drawn (all 4).
template <typename T, typename A>
__device__ __forceinline__ void eps4(const T* eps, uint64_t seed, int64_t base, int64_t lo,
                                     int64_t hi, bool vec, A out[4]) {
  if (eps != nullptr) {
    load4(eps, base, lo, hi, vec, out);
  } else {
    const Normal4<A> n = normal4<A>(seed, static_cast<uint64_t>(base) / 4);
#pragma unroll
    for (int k = 0; k < 4; ++k) out[k] = n.n[k];
  }
}

// Row-sum Op: the KL terms of one Philox block; also writes z there when a.z is set.
struct KlOp {
  template <typename T, typename A = acc_t<T>>
  __device__ static __forceinline__ A block(const ReduceArgs<T>& a, uint64_t seed, int64_t base,
                                            int64_t lo, int64_t hi) {
    A mu[4], lv[4], e[4] = {A(0), A(0), A(0), A(0)}, z[4];
    load4(a.x, base, lo, hi, a.vec, mu);
    load4(a.logvar, base, lo, hi, a.vec, lv);
    if (a.z != nullptr) eps4(a.eps, seed, base, lo, hi, a.vec, e);
    A sum = A(0);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const A std = exp_acc(A(0.5) * lv[k]);
      const bool inside = base + k >= lo && base + k < hi;
      sum += inside ? gaussian_kl_term(mu[k], lv[k], std * std) : A(0);
      z[k] = mu[k] + std * e[k];
    }
    if (a.z != nullptr) store4(a.z, base, lo, hi, a.vec, z);
    return sum;
  }
};

template <typename T>
__global__ void __launch_bounds__(kThreads)
    reparameterize_kernel(const T* mu, const T* logvar, const T* eps, const int64_t* seed_ptr,
                          T* z, int64_t n, bool vec) {
  using A = acc_t<T>;
  const uint64_t seed = eps == nullptr ? static_cast<uint64_t>(*seed_ptr) : uint64_t(0);
  FASTGEN_FOR_EACH_BLOCK(b, n) {
    const int64_t base = 4 * b;
    A m[4], lv[4], e[4], out[4];
    load4(mu, base, 0, n, vec, m);
    load4(logvar, base, 0, n, vec, lv);
    eps4(eps, seed, base, 0, n, vec, e);
#pragma unroll
    for (int k = 0; k < 4; ++k) out[k] = m[k] + exp_acc(A(0.5) * lv[k]) * e[k];
    store4(z, base, 0, n, vec, out);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    gaussian_backward_kernel(const T* grad_z, const T* grad_kl, const T* mu, const T* logvar,
                             const T* eps, const int64_t* seed_ptr, T* grad_mu, T* grad_logvar,
                             int64_t cols, int64_t n, bool vec) {
  using A = acc_t<T>;
  // The noise is only needed (and the seed only read) when there is a grad_z to weight it.
  const bool draws = grad_z != nullptr && eps == nullptr;
  const uint64_t seed = draws ? static_cast<uint64_t>(*seed_ptr) : uint64_t(0);
  FASTGEN_FOR_EACH_BLOCK(b, n) {
    const int64_t base = 4 * b;
    A m[4], lv[4], gz[4] = {A(0), A(0), A(0), A(0)}, e[4] = {A(0), A(0), A(0), A(0)};
    A g_mu[4], g_lv[4];
    load4(mu, base, 0, n, vec, m);
    load4(logvar, base, 0, n, vec, lv);
    if (grad_z != nullptr) {
      load4(grad_z, base, 0, n, vec, gz);
      eps4(eps, seed, base, 0, n, vec, e);
    }
    // One division per block; with cols < 4 a block spans several rows.
    int64_t row = base / cols, col = base - row * cols;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const A gkl = grad_kl != nullptr && base + k < n ? to_acc(grad_kl[row]) : A(0);
      const GaussianGrads<A> g =
          gaussian_backward_term(gz[k], gkl, m[k], exp_acc(A(0.5) * lv[k]), e[k]);
      g_mu[k] = g.mu;
      g_lv[k] = g.logvar;
      if (++col == cols) {
        col = 0;
        ++row;
      }
    }
    store4(grad_mu, base, 0, n, vec, g_mu);
    store4(grad_logvar, base, 0, n, vec, g_lv);
  }
}

}  // namespace

size_t gaussian_workspace_bytes(DType dtype, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return 0;
  const RowPlan p = plan_rows(cols);
  const size_t acc_bytes = dtype == DType::kFloat64 ? sizeof(double) : sizeof(float);
  return p.chunks > 1 ? static_cast<size_t>(rows * p.chunks) * acc_bytes : 0;
}

cudaError_t launch_gaussian_forward(DType dtype, const void* mu, const void* logvar,
                                    const void* eps, const int64_t* seed, void* z, void* kl,
                                    void* workspace, int64_t rows, int64_t cols,
                                    cudaStream_t stream) {
  if (rows < 0 || cols < 0) return cudaErrorInvalidValue;
  if (z != nullptr && eps == nullptr && seed == nullptr) return cudaErrorInvalidValue;
  const int64_t n = rows * cols;
  return dispatch(dtype, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    // Writing z inside the KL pass saves reading mu and logvar twice. But when the noise is
    // drawn and rows are shorter than a few Philox blocks, a block straddling rows would be
    // drawn once per row, so z then gets its own elementwise pass.
    const bool fuse = kl != nullptr && (eps != nullptr || cols >= kFuseMinCols);
    if (z != nullptr && !fuse && n > 0) {
      reparameterize_kernel<T><<<grid_for((n + 3) / 4), kThreads, 0, stream>>>(
          static_cast<const T*>(mu), static_cast<const T*>(logvar), static_cast<const T*>(eps),
          seed, static_cast<T*>(z), n, all_aligned<T>(mu, logvar, eps, z));
      const cudaError_t err = cudaGetLastError();
      if (err != cudaSuccess) return err;
    }
    if (kl == nullptr) return cudaSuccess;
    ReduceArgs<T> a{};
    a.x = static_cast<const T*>(mu);
    a.logvar = static_cast<const T*>(logvar);
    a.eps = static_cast<const T*>(eps);
    a.seed = seed;
    a.z = fuse ? static_cast<T*>(z) : nullptr;
    a.out = static_cast<T*>(kl);
    a.rows = rows;
    a.cols = cols;
    a.vec = all_aligned<T>(mu, logvar, eps, a.z);
    a.scale = acc_t<T>(1);
    a.shift = acc_t<T>(0);
    return launch_row_reduce<T, KlOp>(a, workspace, stream);
  });
}

cudaError_t launch_gaussian_backward(DType dtype, const void* grad_z, const void* grad_kl,
                                     const void* mu, const void* logvar, const void* eps,
                                     const int64_t* seed, void* grad_mu, void* grad_logvar,
                                     int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows < 0 || cols < 0) return cudaErrorInvalidValue;
  if (grad_z != nullptr && eps == nullptr && seed == nullptr) return cudaErrorInvalidValue;
  const int64_t n = rows * cols;
  if (n == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    gaussian_backward_kernel<T><<<grid_for((n + 3) / 4), kThreads, 0, stream>>>(
        static_cast<const T*>(grad_z), static_cast<const T*>(grad_kl), static_cast<const T*>(mu),
        static_cast<const T*>(logvar), static_cast<const T*>(eps), seed,
        static_cast<T*>(grad_mu), static_cast<T*>(grad_logvar), cols, n,
        all_aligned<T>(grad_z, mu, logvar, eps, grad_mu, grad_logvar));
    return cudaGetLastError();
  });
}

}  // namespace cuda
}  // namespace fastgen
