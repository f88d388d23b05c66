// CPU kernels of causal_conv1d (dilated causal 1-D convolution, WaveNet) and its backward.
//
// y[n, o, t] = bias[o] + sum_{c,k} w[o, c, k] * x[n, c, t - (K-1-k) * dilation], zero for t < 0.
//
// No padded copy of x is built: tap k shifts the input by s = (K-1-k) * dilation, so it only
// contributes to output times t >= s, and for a time tile [t0, t1) it is one GEMM
//     y[n, :, max(t0, s):t1] += w[:, :, k] @ x[n, :, max(t0, s) - s : t1 - s]
// on strided views (row stride T) of x and y, which BLAS reads in place. Work items are
// (n, time tile) pairs run by at::parallel_for; each GEMM is single-threaded inside it.
// float16/bfloat16 are computed in float32 (inputs upcast once, the output rounded once);
// float64 in float64.
//
// Backward, per tap k with shift s:
//   grad_x[n, :, t]  += w_k^T @ grad_y[n, :, t + s]    for t + s < T  (anti-causal correlation)
//   grad_w[:, :, k]  += sum_{n,t} grad_y[n, :, t] x[n, :, t - s]^T  for t >= s
//   grad_b           =  sum_{n,t} grad_y[n, :, t]
// grad_w is reduced deterministically: a fixed number of groups of (n, time tile) slabs (not
// depending on the thread count) each write a partial, summed in a fixed order afterwards.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <optional>
#include <tuple>

#include "../conv_checks.h"
#include "conv_common.h"

namespace fastgen::cpu {
namespace {

using at::Tensor;

// Output times per work item: long enough that each GEMM streams well, short enough that a
// few batch elements already give every core work.
constexpr int64_t kTimeTile = 512;

Tensor causal_conv1d(const Tensor& x_in, const Tensor& weight_in, const std::optional<Tensor>& bias,
                     int64_t dilation) {
  check_causal_conv1d_inputs(x_in, weight_in, bias, dilation, "cpu");
  const at::ScalarType dtype = x_in.scalar_type();
  const at::ScalarType acc = acc_type(dtype);
  const int64_t N = x_in.size(0), C_in = x_in.size(1), T = x_in.size(2);
  const int64_t C_out = weight_in.size(0), K = weight_in.size(2);
  Tensor y = at::empty({N, C_out, T}, x_in.options().dtype(acc));
  if (y.numel() == 0) return y.to(dtype);
  BelowAutograd below;
  const Tensor x = x_in.to(acc).contiguous();
  const Tensor w = weight_in.to(acc).permute({2, 0, 1}).contiguous();  // (K, C_out, C_in)
  const std::optional<Tensor> b =
      bias.has_value() ? std::optional<Tensor>(bias->to(acc).reshape({C_out, 1})) : std::nullopt;
  const int64_t tiles = ceil_div(T, kTimeTile);
  at::parallel_for(0, N * tiles, 1, [&](int64_t begin, int64_t end) {
    BelowAutograd below_in_worker;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / tiles;
      const int64_t t0 = (item % tiles) * kTimeTile, t1 = std::min(t0 + kTimeTile, T);
      const Tensor y_n = y.select(0, n), x_n = x.select(0, n);
      Tensor y_tile = y_n.slice(1, t0, t1);
      if (b.has_value()) {
        y_tile.copy_(b->expand({C_out, t1 - t0}));
      } else {
        y_tile.zero_();
      }
      if (C_in == 0) continue;
      for (int64_t k = 0; k < K; ++k) {
        const int64_t s = (K - 1 - k) * dilation;
        const int64_t start = std::max(t0, s);
        if (start >= t1) continue;
        Tensor y_part = y_n.slice(1, start, t1);
        y_part.addmm_(w.select(0, k), x_n.slice(1, start - s, t1 - s));
      }
    }
  });
  return acc == dtype ? y : y.to(dtype);
}

Tensor grad_input(const Tensor& gy, const Tensor& w, int64_t dilation, int64_t C_in) {
  // gy (N, C_out, T) and w (K, C_out, C_in) in the accumulation dtype, contiguous.
  const int64_t N = gy.size(0), C_out = gy.size(1), T = gy.size(2), K = w.size(0);
  Tensor gx = at::zeros({N, C_in, T}, gy.options());
  if (gx.numel() == 0 || C_out == 0) return gx;
  const Tensor wt = w.transpose(1, 2).contiguous();  // (K, C_in, C_out)
  const int64_t tiles = ceil_div(T, kTimeTile);
  at::parallel_for(0, N * tiles, 1, [&](int64_t begin, int64_t end) {
    BelowAutograd below_in_worker;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / tiles;
      const int64_t t0 = (item % tiles) * kTimeTile, t1 = std::min(t0 + kTimeTile, T);
      const Tensor gx_n = gx.select(0, n), gy_n = gy.select(0, n);
      for (int64_t k = 0; k < K; ++k) {
        const int64_t s = (K - 1 - k) * dilation;
        const int64_t stop = std::min(t1, T - s);  // output times t + s must exist
        if (stop <= t0) continue;
        Tensor gx_part = gx_n.slice(1, t0, stop);
        gx_part.addmm_(wt.select(0, k), gy_n.slice(1, t0 + s, stop + s));
      }
    }
  });
  return gx;
}

Tensor grad_weight(const Tensor& gy, const Tensor& x, int64_t dilation, int64_t K) {
  // gy (N, C_out, T), x (N, C_in, T) in the accumulation dtype, contiguous -> (K, C_out, C_in).
  const int64_t N = gy.size(0), C_out = gy.size(1), T = gy.size(2), C_in = x.size(1);
  const int64_t tiles = ceil_div(T, kTimeTile);
  const int64_t slabs = N * tiles;
  const int64_t groups = std::max<int64_t>(1, std::min(slabs, kWeightGroups));
  Tensor partials = at::zeros({groups, K, C_out, C_in}, gy.options());
  if (slabs == 0 || C_out == 0 || C_in == 0) return partials.sum(0);
  at::parallel_for(0, groups * K, 1, [&](int64_t begin, int64_t end) {
    BelowAutograd below_in_worker;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t group = item / K, k = item % K;
      const int64_t s = (K - 1 - k) * dilation;
      Tensor acc = partials.select(0, group).select(0, k);
      const int64_t first = group * slabs / groups, last = (group + 1) * slabs / groups;
      for (int64_t slab = first; slab < last; ++slab) {
        const int64_t n = slab / tiles;
        const int64_t t0 = (slab % tiles) * kTimeTile, t1 = std::min(t0 + kTimeTile, T);
        const int64_t start = std::max(t0, s);
        if (start >= t1) continue;
        acc.addmm_(gy.select(0, n).slice(1, start, t1),
                   x.select(0, n).slice(1, start - s, t1 - s).transpose(0, 1));
      }
    }
  });
  return partials.sum(0);
}

std::tuple<Tensor, Tensor, Tensor> causal_conv1d_backward(const Tensor& grad_y_in, const Tensor& x_in,
                                                          const Tensor& weight_in, int64_t dilation,
                                                          std::array<bool, 3> output_mask) {
  check_causal_conv1d_inputs(x_in, weight_in, std::nullopt, dilation, "cpu");
  check_causal_conv1d_grad(grad_y_in, x_in, weight_in);
  const at::ScalarType dtype = x_in.scalar_type();
  const at::ScalarType acc = acc_type(dtype);
  const int64_t C_in = x_in.size(1), K = weight_in.size(2);
  BelowAutograd below;
  const Tensor gy = grad_y_in.to(acc).contiguous();
  Tensor gx, gw, gb;
  if (output_mask[0]) {
    const Tensor w = weight_in.to(acc).permute({2, 0, 1}).contiguous();
    gx = grad_input(gy, w, dilation, C_in).to(dtype);
  } else {
    gx = at::empty({0}, x_in.options());
  }
  if (output_mask[1]) {
    const Tensor x = x_in.to(acc).contiguous();
    gw = grad_weight(gy, x, dilation, K).permute({1, 2, 0}).to(dtype).contiguous();
  } else {
    gw = at::empty({0}, x_in.options());
  }
  if (output_mask[2]) {
    gb = gy.sum(at::IntArrayRef{0, 2}).to(dtype);
  } else {
    gb = at::empty({0}, x_in.options());
  }
  return {gx, gw, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgen, CPU, m) {
  m.impl("causal_conv1d", &causal_conv1d);
  m.impl("causal_conv1d_backward", &causal_conv1d_backward);
}

}  // namespace fastgen::cpu
