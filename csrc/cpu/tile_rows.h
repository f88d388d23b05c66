// Row-wise helpers of the fused layer kernels (wavenet_layer, gated_pixelcnn_layer): their tiles
// are 2-D (channels, positions) views with unit stride along a row.
#pragma once
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>

#include "cpu_clones.h"

namespace fastgen::cpu {
// Internal linkage: each kernel file gets its own copy (target_clones resolvers stay local).
namespace {

template <typename acc_t>
acc_t* ptr(const at::Tensor& t) {
  return t.data_ptr<acc_t>();
}

// dst = src + bias[row]; a missing src or bias counts as zero. Prepares a GEMM's beta = 1 output.
template <typename acc_t>
void fill_rows(const at::Tensor& dst, const at::Tensor* src, const acc_t* bias) {
  const int64_t rows = dst.size(0), len = dst.size(1), ld = dst.stride(0);
  acc_t* d = ptr<acc_t>(dst);
  const acc_t* s = src != nullptr ? ptr<acc_t>(*src) : nullptr;
  const int64_t ld_s = src != nullptr ? src->stride(0) : 0;
  for (int64_t r = 0; r < rows; ++r) {
    const acc_t b = bias != nullptr ? bias[r] : acc_t(0);
    acc_t* __restrict dr = d + r * ld;
    if (s != nullptr) {
      const acc_t* __restrict sr = s + r * ld_s;
#pragma omp simd
      for (int64_t t = 0; t < len; ++t) dr[t] = sr[t] + b;
    } else {
      std::fill(dr, dr + len, b);
    }
  }
}

// out[row] += sum of m[row, :len] (a tile's share of a bias gradient or a per-channel sum).
template <typename acc_t>
FASTGEN_CPU_CLONES void add_row_sums(acc_t* __restrict out, const acc_t* __restrict m, int64_t ld, int64_t rows,
                                     int64_t len) {
  for (int64_t r = 0; r < rows; ++r) {
    const acc_t* __restrict row = m + r * ld;
    acc_t sum = acc_t(0);
#pragma omp simd reduction(+ : sum)
    for (int64_t t = 0; t < len; ++t) sum += row[t];
    out[r] += sum;
  }
}

}  // namespace
}  // namespace fastgen::cpu
