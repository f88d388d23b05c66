// CUDA kernels of the standard-normal log-density summed per row, and its backward. The work
// layout is described in gaussian_device.cuh.
#include "gaussian_device.cuh"

namespace fastgen {
namespace cuda {
namespace {

// Row-sum Op: sum of z^2 over one Philox block (elements outside [lo, hi) read as 0).
struct SquareOp {
  template <typename T, typename A = acc_t<T>>
  __device__ static __forceinline__ A block(const ReduceArgs<T>& a, uint64_t /*seed*/,
                                            int64_t base, int64_t lo, int64_t hi) {
    A z[4];
    load4(a.x, base, lo, hi, a.vec, z);
    return ((z[0] * z[0] + z[1] * z[1]) + z[2] * z[2]) + z[3] * z[3];
  }
};

template <typename T>
__global__ void __launch_bounds__(kThreads)
    log_prob_backward_kernel(const T* grad, const T* z, T* grad_z, int64_t cols, int64_t n,
                             bool vec) {
  using A = acc_t<T>;
  FASTGEN_FOR_EACH_BLOCK(b, n) {
    const int64_t base = 4 * b;
    A zs[4], out[4];
    load4(z, base, 0, n, vec, zs);
    // One division per block; with cols < 4 a block spans several rows.
    int64_t row = base / cols, col = base - row * cols;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      out[k] = base + k < n ? -to_acc(grad[row]) * zs[k] : A(0);
      if (++col == cols) {
        col = 0;
        ++row;
      }
    }
    store4(grad_z, base, 0, n, vec, out);
  }
}

}  // namespace

cudaError_t launch_normal_log_prob(DType dtype, const void* z, void* log_prob, void* workspace,
                                   int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows < 0 || cols < 0) return cudaErrorInvalidValue;
  return dispatch(dtype, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    using A = acc_t<T>;
    ReduceArgs<T> a{};
    a.x = static_cast<const T*>(z);
    a.out = static_cast<T*>(log_prob);
    a.rows = rows;
    a.cols = cols;
    a.vec = all_aligned<T>(z);
    a.scale = A(-0.5);
    // cols * log(2 pi) / 2 in double, rounded once, as the reference's Python scalar is.
    a.shift = static_cast<A>(-static_cast<double>(cols) * kHalfLog2Pi);
    return launch_row_reduce<T, SquareOp>(a, workspace, stream);
  });
}

cudaError_t launch_normal_log_prob_backward(DType dtype, const void* grad, const void* z,
                                            void* grad_z, int64_t rows, int64_t cols,
                                            cudaStream_t stream) {
  if (rows < 0 || cols < 0) return cudaErrorInvalidValue;
  const int64_t n = rows * cols;
  if (n == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    log_prob_backward_kernel<T><<<grid_for((n + 3) / 4), kThreads, 0, stream>>>(
        static_cast<const T*>(grad), static_cast<const T*>(z), static_cast<T*>(grad_z), cols, n,
        all_aligned<T>(z, grad_z));
    return cudaGetLastError();
  });
}

}  // namespace cuda
}  // namespace fastgen
