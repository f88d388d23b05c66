// Small matrix-vector products for the sampling step kernels, where one time step or one pixel
// is a handful of vectors per sample: y = bias + W @ x with W row-major (M, K). Each output is
// a contiguous dot product, which the simd reduction vectorizes (AVX2+FMA via target_clones).
#pragma once
#include <stdint.h>

#include "cpu_clones.h"

namespace fastgen::cpu {

// y[o] = (bias ? bias[o] : 0) + (accumulate ? y[o] : 0) + sum_i W[o * K + i] * x[i], o < M.
template <typename acc_t>
FASTGEN_CPU_CLONES void matvec(const acc_t* __restrict W, const acc_t* __restrict x, int64_t M, int64_t K,
                               const acc_t* __restrict bias, bool accumulate, acc_t* __restrict y) {
  for (int64_t o = 0; o < M; ++o) {
    const acc_t* __restrict row = W + o * K;
    acc_t sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < K; ++i) sum += row[i] * x[i];
    if (bias != nullptr) sum += bias[o];
    y[o] = accumulate ? y[o] + sum : sum;
  }
}

}  // namespace fastgen::cpu
