// CPU kernels of the Gated PixelCNN sampling steps (row caches, the Fast PixelCNN++ scheme).
//
// gated_pixelcnn_horizontal_step, per sample (one pixel of one layer):
//   state (N, C_in, T = k + 1): the row's last T horizontal inputs; shift left, append new_input
//   window = state[:, :, 0:T] (mask "B") or state[:, :, 1:T] (mask "A", whose tap w_h[..., k] is
//   never read)
//   h_pre = b_h + link + W_h @ window (+ w_cond_h @ cond);   z = tanh(h_pre[:C]) * sigmoid(h_pre[C:])
//   h_out = w_res @ z + b_res (+ new_input for mask "B")
// The window is flattened as (c, t), the order of w_h's (C_in, 1, T) row, so each output channel
// is one contiguous dot product (mask "A" uses a compact copy of the kept taps, tiny: mask "A"
// is the first layer, whose C_in is the image's channels).
//
// gated_pixelcnn_vertical_step is in pixelcnn_vertical_step_cpu.cpp.
//
// float16/bfloat16 are computed in float32; float64 in float64.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <vector>

#include "../step_checks.h"
#include "conv_common.h"
#include "horizontal_pixel.h"
#include "step_common.h"

namespace fastgen::cpu {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

template <typename scalar_t>
void horizontal_kernel(const Tensor& state, const Tensor& new_input, const Tensor& link, const Tensor& w_window,
                       const Tensor& b_h, const Tensor& w_res, const Tensor& b_res, bool mask_b, const Tensor& cond,
                       const Tensor& w_cond, const Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = new_input.size(0), C_in = new_input.size(1), T = state.size(2), C = w_res.size(0);
  const int64_t D = cond.defined() ? cond.size(1) : 0;
  const HorizontalWeights<acc_t> w{w_window.data_ptr<acc_t>(), data_or_null<acc_t>(b_h), w_res.data_ptr<acc_t>(),
                                   data_or_null<acc_t>(b_res), data_or_null<acc_t>(w_cond), C_in, T, C, D, mask_b};
  scalar_t* state_p = state.data_ptr<scalar_t>();
  const scalar_t* in_p = new_input.data_ptr<scalar_t>();
  // link is read in place through its strides: the model passes one column of a row's links.
  const scalar_t* link_p = link.data_ptr<scalar_t>();
  const int64_t link_n = link.stride(0), link_o = link.stride(1);
  const scalar_t* cond_p = cond.defined() ? cond.data_ptr<scalar_t>() : nullptr;
  scalar_t* out_p = out.data_ptr<scalar_t>();
  const int64_t work = 2 * C * (w_window.size(1) + D) + C * C;
  const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(work, 1));
  at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
    PixelScratch<acc_t> scratch;
    horizontal_pixels(w, n1 - n0, state_p + n0 * C_in * T, in_p + n0 * C_in, link_p + n0 * link_n, link_n, link_o,
                      cond_p == nullptr ? nullptr : cond_p + n0 * D, scratch, out_p + n0 * C);
  });
}

Tensor gated_pixelcnn_horizontal_step(Tensor state, const Tensor& new_input, const Tensor& link, const Tensor& w_h,
                                      const OptTensor& b_h, const Tensor& w_res, const OptTensor& b_res,
                                      c10::string_view mask_type, const OptTensor& cond, const OptTensor& w_cond_h) {
  const std::string mask(mask_type);
  check_pixelcnn_horizontal_step_inputs(state, new_input, link, w_h, b_h, w_res, b_res, mask, cond, w_cond_h);
  const bool mask_b = mask == "B";
  const at::ScalarType acc = acc_type(new_input.scalar_type());
  const int64_t two_c = w_h.size(0), taps = w_h.size(3);
  // (2C, C_in * taps used): mask "A" drops the last tap (a compact copy, never reading it).
  const int64_t used = mask_b ? taps : taps - 1;
  const Tensor w_used = mask_b ? w_h : w_h.narrow(3, 0, used);
  const Tensor w_window = w_used.to(acc).contiguous().reshape({two_c, w_h.size(1) * used});
  Tensor out = at::empty({new_input.size(0), two_c / 2}, new_input.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, new_input.scalar_type(), "gated_pixelcnn_horizontal_step",
                                  [&] {
                                    horizontal_kernel<scalar_t>(
                                        state, new_input.contiguous(), link, w_window,
                                        acc_contiguous(b_h, acc), acc_contiguous(w_res, acc), acc_contiguous(b_res, acc),
                                        mask_b, cond.has_value() ? cond->contiguous() : Tensor(),
                                        acc_contiguous(w_cond_h, acc), out);
                                  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgen, CPU, m) {
  m.impl("gated_pixelcnn_horizontal_step", &gated_pixelcnn_horizontal_step);
}

}  // namespace fastgen::cpu
