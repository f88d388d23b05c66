// Small matrix-vector products for the sampling kernels, where one time step or one pixel is a
// handful of vectors per sample: y = bias + W @ x with W row-major (M, K). Each output is a
// contiguous dot product, which the simd reduction vectorizes (AVX2+FMA via target_clones).
#pragma once
#include <stdint.h>

#include <type_traits>

#include "cpu_clones.h"

namespace fastgen::cpu {

// For b < B: y_b[o] = (bias ? bias[o] : 0) + (accumulate ? y_b[o] : 0) + sum_i W[o * K + i] * x_b[i],
// o < M, with x_b = X + b * ldx and y_b = Y + b * ldy. Rows outer, vectors inner: the B dot
// products of a row read it from L1, so a block of vectors streams the matrix once.
template <typename acc_t>
FASTGEN_CPU_CLONES void matvec_block(const acc_t* __restrict W, const acc_t* __restrict X, int64_t ldx, int64_t B,
                                     int64_t M, int64_t K, const acc_t* __restrict bias, bool accumulate,
                                     acc_t* __restrict Y, int64_t ldy) {
  for (int64_t o = 0; o < M; ++o) {
    const acc_t* __restrict row = W + o * K;
    for (int64_t b = 0; b < B; ++b) {
      const acc_t* __restrict x = X + b * ldx;
      acc_t sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < K; ++i) sum += row[i] * x[i];
      if (bias != nullptr) sum += bias[o];
      acc_t* y = Y + b * ldy + o;
      *y = accumulate ? *y + sum : sum;
    }
  }
}

// One vector: y[o] = (bias ? bias[o] : 0) + (accumulate ? y[o] : 0) + W[o, :] @ x.
template <typename acc_t>
inline void matvec(const acc_t* W, const acc_t* x, int64_t M, int64_t K, const acc_t* bias, bool accumulate, acc_t* y) {
  matvec_block(W, x, K, int64_t(1), M, K, bias, accumulate, y, M);
}

// Eight floats in one AVX register (two SSE registers in the baseline clone); the unaligned
// type loads and stores anywhere in a row.
typedef float float8 __attribute__((vector_size(32)));
typedef float float8_unaligned __attribute__((vector_size(32), aligned(4), may_alias));

// out[r][v] = sum_i W[r * K + i] * X[v * ldx + i] in a fixed order: eight lanes (i = l mod 8) in
// input order, the lanes added as ((0 + 4) + (2 + 6)) + ((1 + 5) + (3 + 7)), then the K mod 8
// tail in order. R x V register tiles read each row chunk once for V vectors and each vector
// chunk once for R rows (the plain dot product loads two values per multiply-add).
template <int R, int V>
__attribute__((always_inline)) inline void dot_tile(const float* __restrict W, int64_t K, const float* __restrict X,
                                                    int64_t ldx, float (&out)[R][V]) {
  float8 acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = float8{};
  const int64_t K8 = K / 8 * 8;
  for (int64_t i = 0; i < K8; i += 8) {
    float8 w[R], x[V];
    for (int r = 0; r < R; ++r) w[r] = *reinterpret_cast<const float8_unaligned*>(W + r * K + i);
    for (int v = 0; v < V; ++v) x[v] = *reinterpret_cast<const float8_unaligned*>(X + v * ldx + i);
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < V; ++v) acc[r][v] += w[r] * x[v];
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) {
      const float8 a = acc[r][v];
      float sum = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
      for (int64_t i = K8; i < K; ++i) sum += W[r * K + i] * X[v * ldx + i];
      out[r][v] = sum;
    }
}

// Rows [o, o + R) of the products for vectors [b, b + V): y_b[o] = (bias ? bias[o] : 0) +
// (accumulate ? y_b[o] : 0) + the fixed-order dot product.
template <int R, int V>
__attribute__((always_inline)) inline void dot_tile_into(const float* W, int64_t K, const float* X, int64_t ldx,
                                                         int64_t o, int64_t b, const float* bias, bool accumulate,
                                                         float* Y, int64_t ldy) {
  float out[R][V];
  dot_tile<R, V>(W + o * K, K, X + b * ldx, ldx, out);
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) {
      float sum = out[r][v];
      if (bias != nullptr) sum += bias[o + r];
      float* y = Y + (b + v) * ldy + o + r;
      *y = accumulate ? *y + sum : sum;
    }
}

// matvec_block's products (same arguments) with dot_tile's summation order: the same bits for
// a vector whatever B is, so a block of samples and one sample at a time agree exactly.
FASTGEN_CPU_CLONES inline void dot_block(const float* __restrict W, const float* __restrict X, int64_t ldx, int64_t B,
                                         int64_t M, int64_t K, const float* __restrict bias, bool accumulate,
                                         float* __restrict Y, int64_t ldy) {
  int64_t b = 0;
  for (; b + 4 <= B; b += 4) {  // 2 rows x 4 vectors: 8 accumulators
    int64_t o = 0;
    for (; o + 2 <= M; o += 2) dot_tile_into<2, 4>(W, K, X, ldx, o, b, bias, accumulate, Y, ldy);
    for (; o < M; ++o) dot_tile_into<1, 4>(W, K, X, ldx, o, b, bias, accumulate, Y, ldy);
  }
  for (; b < B; ++b) {  // one vector: 4 rows at a time, so 4 independent multiply-add chains
    int64_t o = 0;
    for (; o + 4 <= M; o += 4) dot_tile_into<4, 1>(W, K, X, ldx, o, b, bias, accumulate, Y, ldy);
    for (; o < M; ++o) dot_tile_into<1, 1>(W, K, X, ldx, o, b, bias, accumulate, Y, ldy);
  }
}

// float64 keeps matvec_block (its models are for exactness tests, not speed).
inline void dot_block(const double* W, const double* X, int64_t ldx, int64_t B, int64_t M, int64_t K,
                      const double* bias, bool accumulate, double* Y, int64_t ldy) {
  matvec_block(W, X, ldx, B, M, K, bias, accumulate, Y, ldy);
}

// y[0 : 8V] += sum_i x[i] WT[i, 0 : 8V] for one vector (WT rows M apart, K of them), the V
// partial outputs held in registers for the whole sum: no load or store of y per input, which is
// what limits the axpy loop below at batch 1. Summed in input order.
template <int V>
__attribute__((always_inline)) inline void axpy_rows_in_registers(const float* __restrict WT, int64_t M, int64_t K,
                                                                  const float* __restrict x, float* __restrict y) {
  float8 acc[V];
  for (int v = 0; v < V; ++v) acc[v] = *reinterpret_cast<const float8_unaligned*>(y + 8 * v);
  for (int64_t i = 0; i < K; ++i) {
    const float8 a = x[i] - float8{};  // x[i] in every lane
    const float* __restrict row = WT + i * M;
    for (int v = 0; v < V; ++v) acc[v] += a * *reinterpret_cast<const float8_unaligned*>(row + 8 * v);
  }
  for (int v = 0; v < V; ++v) *reinterpret_cast<float8_unaligned*>(y + 8 * v) = acc[v];
}

// The same products with the matrix stored transposed, WT (K, M) row-major, for columns
// [o0, o1) of y: y_b[o] = (bias ? bias[o] : 0) + (accumulate ? y_b[o] : 0) + sum_i x_b[i] WT[i, o].
// Input elements scale contiguous rows of WT into y ("axpy" form): no horizontal sums, and the
// rows are read once for the B vectors. The summation order is fixed (deterministic).
// The matrix and bias may be stored in a narrower type w_t (float16/bfloat16), widened on load:
// half the bytes streamed per product.
template <typename w_t, typename acc_t>
FASTGEN_CPU_CLONES void matvec_t_block(const w_t* __restrict WT, const acc_t* __restrict X, int64_t ldx, int64_t B,
                                       int64_t M, int64_t K, int64_t o0, int64_t o1, const w_t* __restrict bias,
                                       bool accumulate, acc_t* __restrict Y, int64_t ldy) {
  for (int64_t b = 0; b < B; ++b) {
    acc_t* __restrict y = Y + b * ldy;
    for (int64_t o = o0; o < o1; ++o) {
      y[o] = (accumulate ? y[o] : acc_t(0)) + (bias != nullptr ? static_cast<acc_t>(bias[o]) : acc_t(0));
    }
  }
  if constexpr (std::is_same_v<w_t, float> && std::is_same_v<acc_t, float>) {
    // float32: blocks of 64, 32, 8 outputs accumulated in registers, then the odd outputs.
    for (int64_t b = 0; b < B; ++b) {
      const float* x = X + b * ldx;
      float* y = Y + b * ldy;
      int64_t o = o0;
      for (; o + 64 <= o1; o += 64) axpy_rows_in_registers<8>(WT + o, M, K, x, y + o);
      for (; o + 32 <= o1; o += 32) axpy_rows_in_registers<4>(WT + o, M, K, x, y + o);
      for (; o + 8 <= o1; o += 8) axpy_rows_in_registers<1>(WT + o, M, K, x, y + o);
      for (; o < o1; ++o) {
        for (int64_t i = 0; i < K; ++i) y[o] += x[i] * WT[i * M + o];
      }
    }
    return;
  }
  // Four input elements per pass over y: four multiply-adds per load and store of y[o].
  int64_t i = 0;
  for (; i + 4 <= K; i += 4) {
    const w_t *__restrict r0 = WT + i * M, *__restrict r1 = r0 + M, *__restrict r2 = r1 + M, *__restrict r3 = r2 + M;
    for (int64_t b = 0; b < B; ++b) {
      const acc_t* x = X + b * ldx + i;
      const acc_t a0 = x[0], a1 = x[1], a2 = x[2], a3 = x[3];
      acc_t* __restrict y = Y + b * ldy;
#pragma omp simd
      for (int64_t o = o0; o < o1; ++o) {
        y[o] += a0 * static_cast<acc_t>(r0[o]) + a1 * static_cast<acc_t>(r1[o]) + a2 * static_cast<acc_t>(r2[o]) +
                a3 * static_cast<acc_t>(r3[o]);
      }
    }
  }
  for (; i < K; ++i) {
    const w_t* __restrict row = WT + i * M;
    for (int64_t b = 0; b < B; ++b) {
      const acc_t a = X[b * ldx + i];
      acc_t* __restrict y = Y + b * ldy;
#pragma omp simd
      for (int64_t o = o0; o < o1; ++o) y[o] += a * static_cast<acc_t>(row[o]);
    }
  }
}

}  // namespace fastgen::cpu
