// gated_pixelcnn_vertical_step: the vertical stack of a Gated PixelCNN layer for one new image
// row (the row caches of the Fast PixelCNN++ scheme).
//
//   state (N, C_in, k + 1, W): the last k + 1 rows; shift up, append new_row
//   v_pre = conv(state, w_v, columns j - k .. j + k) + b_v (+ w_cond_v @ cond)     (N, 2C, W)
//   v_out = tanh(v_pre[:, :C]) * sigmoid(v_pre[:, C:]);  link = w_v2h @ v_pre + b_v2h
//
// CPU: the rows of both products are the positions (n, w): the k + 1 cached rows' columns are
// gathered once (im2col, C_in (k + 1) (2k + 1) values a position), v_pre is one GEMM, the bias,
// conditioning and gate are one pass that also writes v_out in (N, C, W) order, the link is a
// second GEMM and one pass adds its bias while writing (N, 2C, W). oneDNN's convolution with one
// output row and torch.compile of the eager ops both spent more time outside the GEMMs (measured
// at N = 16, C = 64, W = 28, 3x3: 580 us, and 540 us compiled). CUDA builds register the ATen
// version (a cuDNN convolution and a cuBLAS GEMM).
//
// float16/bfloat16 are computed in float32; float64 in float64.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/sigmoid.h>
#include <ATen/ops/tanh.h>
#include <torch/library.h>

#include <optional>
#include <tuple>
#include <vector>

#include "../step_checks.h"
#include "conv_common.h"
#include "cpu_clones.h"
#include "gate_math.h"
#include "step_common.h"

namespace fastgen::cpu {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

// Move the cached rows up one (in increasing order, so each copy reads a row not yet overwritten)
// and put new_row last.
void shift_rows(Tensor& state, const Tensor& new_row) {
  const int64_t rows = state.size(2);
  for (int64_t r = 0; r + 1 < rows; ++r) state.select(2, r).copy_(state.select(2, r + 1));
  state.select(2, rows - 1).copy_(new_row);
}

// The CUDA version: ATen ops (cuDNN / cuBLAS do the work).
std::tuple<Tensor, Tensor> vertical_step_aten(Tensor state, const Tensor& new_row, const Tensor& w_v,
                                              const OptTensor& b_v, const Tensor& w_v2h, const OptTensor& b_v2h,
                                              const OptTensor& cond, const OptTensor& w_cond_v) {
  check_pixelcnn_vertical_step_inputs(state, new_row, w_v, b_v, w_v2h, b_v2h, cond, w_cond_v);
  shift_rows(state, new_row);
  const int64_t k = w_v.size(3) / 2, C = w_v.size(0) / 2;
  const at::ScalarType acc = acc_type(new_row.scalar_type());
  const OptTensor b_v_acc = b_v.has_value() ? OptTensor(b_v->to(acc)) : OptTensor();
  // (N, 2C, 1, W) -> (N, 2C, W): the last row's pre-activation, columns padded by k each side.
  const std::vector<int64_t> stride{1, 1}, padding{0, k};
  Tensor v_pre = at::conv2d(state.to(acc), w_v.to(acc), b_v_acc, stride, padding).select(2, 0);
  if (cond.has_value()) v_pre = v_pre + at::mm(cond->to(acc), w_cond_v->to(acc).t()).unsqueeze(2);
  const Tensor v_out = at::tanh(v_pre.narrow(1, 0, C)) * at::sigmoid(v_pre.narrow(1, C, C));
  Tensor link = at::matmul(w_v2h.to(acc), v_pre);
  if (b_v2h.has_value()) link = link + b_v2h->to(acc).unsqueeze(1);
  return {v_out.to(new_row.scalar_type()), link.to(new_row.scalar_type())};
}

// cols[(n, w), (c, r, s)] = state[n, c, r, w + s - k] (0 outside the row), for samples [n0, n1).
template <typename scalar_t, typename acc_t>
void gather_columns(const scalar_t* state, int64_t C_in, int64_t rows, int64_t W, int64_t k, int64_t n0, int64_t n1,
                    acc_t* cols) {
  const int64_t taps = 2 * k + 1, width = C_in * rows * taps;
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t w = 0; w < W; ++w) {
      acc_t* out = cols + (n * W + w) * width;
      for (int64_t c = 0; c < C_in; ++c)
        for (int64_t r = 0; r < rows; ++r) {
          const scalar_t* row = state + ((n * C_in + c) * rows + r) * W;
          for (int64_t s = 0; s < taps; ++s) {
            const int64_t col = w + s - k;
            *out++ = col >= 0 && col < W ? static_cast<acc_t>(row[col]) : acc_t(0);
          }
        }
    }
}

// One position: row (2C) += shift (when given), then z[c] = tanh(row[c]) * sigmoid(row[C + c]).
template <typename acc_t>
FASTGEN_CPU_CLONES void shift_and_gate(acc_t* __restrict row, const acc_t* __restrict shift, acc_t* __restrict z,
                                       int64_t C) {
  if (shift != nullptr) {
#pragma omp simd
    for (int64_t o = 0; o < 2 * C; ++o) row[o] += shift[o];
  }
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) z[c] = tanh_acc(row[c]) * sigmoid_acc(row[C + c]);
}

template <typename scalar_t>
std::tuple<Tensor, Tensor> vertical_step_kernel(const Tensor& state, const Tensor& w_v, const OptTensor& b_v,
                                                const Tensor& w_v2h, const OptTensor& b_v2h, const OptTensor& cond,
                                                const OptTensor& w_cond_v) {
  using acc_t = at::opmath_type<scalar_t>;
  const at::ScalarType acc = acc_type(state.scalar_type());
  const int64_t N = state.size(0), C_in = state.size(1), rows = state.size(2), W = state.size(3);
  const int64_t k = w_v.size(3) / 2, two_c = w_v.size(0), C = two_c / 2, positions = N * W;
  const auto options = state.options();
  Tensor cols = at::empty({positions, w_v[0].numel()}, options.dtype(acc));
  const int64_t grain = std::max<int64_t>(1, 256 / std::max<int64_t>(W, 1));
  at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
    gather_columns(state.const_data_ptr<scalar_t>(), C_in, rows, W, k, n0, n1, cols.mutable_data_ptr<acc_t>());
  });
  Tensor v_pre = at::mm(cols, acc_contiguous(w_v, acc).reshape({two_c, -1}).t());  // (N W, 2C)
  // Per sample, what is added to every position: b_v + w_cond_v @ cond[n].
  Tensor shift;
  if (cond.has_value()) {
    shift = at::mm(cond->to(acc), w_cond_v->to(acc).t());
    if (b_v.has_value()) shift = shift + b_v->to(acc);
  } else if (b_v.has_value()) {
    shift = b_v->to(acc).expand({N, two_c});
  }
  shift = shift.defined() ? shift.contiguous() : shift;
  Tensor v_out = at::empty({N, C, W}, options);
  acc_t* pre = v_pre.mutable_data_ptr<acc_t>();
  const acc_t* shift_p = shift.defined() ? shift.const_data_ptr<acc_t>() : nullptr;
  scalar_t* out_p = v_out.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
    std::vector<acc_t> z(W * C);  // one sample's gate, (w, c): the loop over c vectorizes
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t w = 0; w < W; ++w)
        shift_and_gate(pre + (n * W + w) * two_c, shift_p == nullptr ? nullptr : shift_p + n * two_c,
                       z.data() + w * C, C);
      for (int64_t c = 0; c < C; ++c)
        for (int64_t w = 0; w < W; ++w) out_p[(n * C + c) * W + w] = static_cast<scalar_t>(z[w * C + c]);
    }
  });
  const Tensor link_rows = at::mm(v_pre, acc_contiguous(w_v2h, acc).t());  // (N W, 2C)
  Tensor link = at::empty({N, two_c, W}, options);
  const acc_t* lr = link_rows.const_data_ptr<acc_t>();
  const Tensor b_link = acc_contiguous(b_v2h, acc);
  const acc_t* b_link_p = data_or_null<acc_t>(b_link);
  scalar_t* link_p = link.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t o = 0; o < two_c; ++o) {
        const acc_t bias = b_link_p != nullptr ? b_link_p[o] : acc_t(0);
        for (int64_t w = 0; w < W; ++w)
          link_p[(n * two_c + o) * W + w] = static_cast<scalar_t>(lr[(n * W + w) * two_c + o] + bias);
      }
  });
  return {v_out, link};
}

std::tuple<Tensor, Tensor> vertical_step_cpu(Tensor state, const Tensor& new_row, const Tensor& w_v,
                                             const OptTensor& b_v, const Tensor& w_v2h, const OptTensor& b_v2h,
                                             const OptTensor& cond, const OptTensor& w_cond_v) {
  check_pixelcnn_vertical_step_inputs(state, new_row, w_v, b_v, w_v2h, b_v2h, cond, w_cond_v);
  shift_rows(state, new_row);
  std::tuple<Tensor, Tensor> out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, state.scalar_type(), "gated_pixelcnn_vertical_step", [&] {
    out = vertical_step_kernel<scalar_t>(state, w_v, b_v, w_v2h, b_v2h, cond, w_cond_v);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgen, CPU, m) { m.impl("gated_pixelcnn_vertical_step", &vertical_step_cpu); }

#ifdef FASTGEN_WITH_CUDA
TORCH_LIBRARY_IMPL(fastgen, CUDA, m) { m.impl("gated_pixelcnn_vertical_step", &vertical_step_aten); }
#endif

}  // namespace fastgen::cpu
