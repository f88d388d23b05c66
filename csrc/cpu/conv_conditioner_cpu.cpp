// conv_conditioner (Glow's coupling network: conv kxk -> ReLU -> conv 1x1 -> ReLU -> conv kxk,
// "same" padding, optional dropout after the ReLUs) and its backward, as one op each on the CPU.
//
// Why: a Glow coupling's conditioner runs on tiny images (4x4 and 2x2 at 8x8 input), where
// oneDNN spends ~1.5 ms per conditioner forward+backward at batch 64 (three convolutions, three
// backward convolutions, each with its own reorders), about 60% of a whole Glow training step.
// Here every product is one GEMM over all N*H*W positions in channels-last form, and the two
// kxk convolutions never build the big im2col matrix of the hidden layer:
//   conv1   A1 = im2col(x) (P, C_in*k1*k1, small: C_in is half the flow's channels)
//           h1 = relu(A1 W1^T + b1)                                      (P, H1)
//   conv2   h2 = relu(h1 W2^T + b2)                                      (P, H2)
//   conv3   Z = h2 W3z, W3z (H2, k3*k3*C_out) with column tap*C_out + o  (P, k3*k3*C_out)
//           y[n, o, q] = b3[o] + sum_tap Z[q + s_tap, tap*C_out + o]    (shifted sum, in bounds)
// and backward the adjoints: G[p, tap*C_out + o] = gy[n, o, p - s_tap] (shifted gather), then
// dW3z = h2^T G, dh2 = (G W3z^T) * [h2 > 0], dW2 = dh2^T h1, dh1 = (dh2 W2) * [h1 > 0],
// dW1 = dh1^T A1, dx = col2im(dh1 W1) written as a gather (no atomics).
// P = N*H*W rows of every matrix are (n, h, w) in that order (conditioner_layout.h moves the data
// between that layout and NCHW). The GEMMs go to BLAS through ATen, each thread running the whole
// chain on its own block of samples (see kParts). float32 and float64 only (the Python wrapper
// computes float16/bfloat16 in float32).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/sum.h>
#include <torch/library.h>

#include "../conv_checks.h"
#include "conditioner_layout.h"
#include "conv_common.h"
#include "dropout_mask.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>
#include <tuple>

namespace fastgen::cpu {
namespace {

using at::Tensor;

void check_weight(const Tensor& w, const char* name, const Tensor& x, int64_t in_channels, bool square_odd,
                  const char* layout) {
  TORCH_CHECK(w.dim() == 4, "fastgen: ", name, " must be 4-D ", layout, ", got shape ", w.sizes());
  check_like_x(w, name, x);
  TORCH_CHECK(w.size(0) >= 1 && w.size(1) == in_channels, "fastgen: ", name, " must have shape ", layout,
              " with ", in_channels, " input channels (dim 1), got ", w.sizes());
  if (square_odd) {
    TORCH_CHECK(w.size(2) == w.size(3) && w.size(2) % 2 == 1, "fastgen: ", name,
                " must have a square, odd kernel (k, k), got ", w.sizes());
  } else {
    TORCH_CHECK(w.size(2) == 1 && w.size(3) == 1, "fastgen: ", name, " must be a 1x1 kernel, got ", w.sizes());
  }
}

void check_inputs(const Tensor& x, const Tensor& w1, const Tensor& w2, const Tensor& w3) {
  TORCH_CHECK(x.dim() == 4, "fastgen: x must be 4-D (N, C_in, H, W), got shape ", x.sizes());
  TORCH_CHECK(x.device().is_cpu(), "fastgen: x must be a cpu tensor here, got ", x.device());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "fastgen: conv_conditioner's CPU kernel takes float32 or float64 x, got ", x.scalar_type());
  check_weight(w1, "w1", x, x.size(1), true, "(H1, C_in, k1, k1)");
  check_weight(w2, "w2", x, w1.size(0), false, "(H2, H1, 1, 1)");
  check_weight(w3, "w3", x, w2.size(0), true, "(C_out, H2, k3, k3)");
}

// The samples are cut into kParts fixed blocks, one per thread, and each block runs the whole
// forward (or backward) on its own rows: BLAS does not thread products this small (a
// 1024 x 64 x 64 product takes as long on two threads as on one), one parallel region per op
// costs one wake-up instead of one per step, and the shifted sums never cross a sample. The
// weight gradients are summed per block, then the blocks in order: fixed blocks make every
// result independent of the thread count.
constexpr int64_t kParts = 2;
// Within a block, whole samples are processed a tile of about kTileRows positions at a time, so
// the tile's temporaries (im2col, the tap products, the gradients) stay in L2.
constexpr int64_t kTileRows = 512;

int64_t samples_per_tile(int64_t plane) { return std::max<int64_t>(1, kTileRows / std::max<int64_t>(plane, 1)); }

// How many blocks `samples` samples are cut into (one when there are fewer than kParts).
int64_t sample_blocks(int64_t samples) { return std::min<int64_t>(kParts, std::max<int64_t>(samples, 1)); }

// fn(part, first_sample, end_sample) for each of the sample_blocks(samples) blocks, in parallel.
template <typename Fn>
void for_each_sample_block(int64_t samples, const Fn& fn) {
  const int64_t parts = sample_blocks(samples);
  const int64_t chunk = (samples + parts - 1) / parts;
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    BelowAutograd below_in_worker;  // a worker thread's dispatch state is the default one
    for (int64_t part = begin; part < end; ++part)
      fn(part, std::min(samples, part * chunk), std::min(samples, (part + 1) * chunk));
  });
}

// t = relu(t + bias) * keep over the rows of a (rows, cols) block; bias and keep (the tile's
// dropout mask, 0 or 1/(1-p), laid out as t) may be null.
template <typename T>
void bias_relu(T* t, const T* bias, const T* keep, int64_t rows, int64_t cols) {
  for (int64_t i = 0; i < rows; ++i, t += cols) {
    if (bias) {
      for (int64_t j = 0; j < cols; ++j) t[j] = std::max(t[j] + bias[j], T(0));
    } else {
      for (int64_t j = 0; j < cols; ++j) t[j] = std::max(t[j], T(0));
    }
    if (keep) {
      for (int64_t j = 0; j < cols; ++j) t[j] *= keep[j];
      keep += cols;
    }
  }
}

// The backward of bias_relu from its output, in place: grad = [activation > 0] * keep * grad (a
// kept unit has keep > 0, so activation > 0 is the ReLU's own test); the column sums of the
// result (this tile's bias gradient) are added to col_sum.
template <typename T>
void relu_backward(T* grad, const T* activation, const T* keep, int64_t rows, int64_t cols, T* col_sum) {
  for (int64_t i = 0; i < rows; ++i, grad += cols, activation += cols) {
    if (keep) {
      for (int64_t j = 0; j < cols; ++j) grad[j] *= keep[j];
      keep += cols;
    }
    for (int64_t j = 0; j < cols; ++j) {
      grad[j] = activation[j] > T(0) ? grad[j] : T(0);
      col_sum[j] += grad[j];
    }
  }
}

// The dropout of one call: p in [0, 1), and when p > 0 the seed of its masks (a 0-dim int64
// tensor on x's device). Mask 1 is elements [0, P*H1) of the stream, mask 2 the next P*H2.
struct Dropout {
  bool on = false;
  uint64_t seed = 0;
  uint32_t threshold = 0;
  double kept = 1.0;
  int64_t mask2_offset = 0;

  // The mask of hidden layer `layer` (1 or 2, `cols` units) for rows [row0, row0 + rows) into
  // buf, or null when there is no dropout.
  template <typename T>
  const T* rows(int layer, int64_t row0, int64_t rows, int64_t cols, std::vector<T>& buf,
                std::vector<uint32_t>& bits) const {
    if (!on) return nullptr;
    buf.resize(rows * cols);
    const int64_t begin = (layer == 2 ? mask2_offset : 0) + row0 * cols;
    dropout_keep<T>(seed, begin, rows * cols, threshold, static_cast<T>(kept), buf.data(), bits);
    return buf.data();
  }
};

Dropout dropout_of(double p, const std::optional<Tensor>& seed, const Tensor& x, int64_t positions, int64_t H1) {
  TORCH_CHECK(std::isfinite(p) && p >= 0.0 && p < 1.0, "fastgen: dropout must be in [0, 1), got ", p);
  Dropout d;
  if (p == 0.0) return d;
  TORCH_CHECK(seed.has_value() && seed->dim() == 0 && seed->scalar_type() == at::kLong &&
                  seed->device() == x.device(),
              "fastgen: seed must be a 0-dim int64 tensor on x's device when dropout > 0");
  d.on = true;
  d.seed = static_cast<uint64_t>(seed->item<int64_t>());
  d.threshold = dropout_threshold(p);
  d.kept = 1.0 / (1.0 - p);
  d.mask2_offset = positions * H1;
  return d;
}

// out = a @ b into a preallocated (a.rows, b.cols) view.
void mm_into(Tensor out, const Tensor& a, const Tensor& b) { at::mm_out(out, a, b); }

// A contiguous copy (or view) of an optional bias, undefined when there is none.
Tensor contiguous_or_undefined(const std::optional<Tensor>& t) { return t ? t->contiguous() : Tensor(); }

// The data of a tensor that may be undefined (a missing bias), or null.
template <typename T>
const T* data_or_null(const Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}

// (y, h1, h2): the output (N, C_out, H, W) and the two hidden activations after their ReLUs
// (and dropout masks), (N*H*W, H1) and (N*H*W, H2), which the backward takes.
std::tuple<Tensor, Tensor, Tensor> conv_conditioner(const Tensor& x, const Tensor& w1,
                                                    const std::optional<Tensor>& b1, const Tensor& w2,
                                                    const std::optional<Tensor>& b2, const Tensor& w3,
                                                    const std::optional<Tensor>& b3, double dropout,
                                                    const std::optional<Tensor>& seed) {
  check_inputs(x, w1, w2, w3);
  // The products below write into slices of preallocated outputs (mm_out), which autograd
  // refuses for weights that require grad; this op's autograd is registered separately.
  BelowAutograd below;
  check_wavenet_bias(b1, "b1", w1.size(0), x);
  check_wavenet_bias(b2, "b2", w2.size(0), x);
  check_wavenet_bias(b3, "b3", w3.size(0), x);
  const ConditionerDims d = dims_of(x, w1, w3);
  const int64_t plane = d.H * d.W, H1 = w1.size(0), H2 = w2.size(0);
  const Dropout drop = dropout_of(dropout, seed, x, d.positions(), H1);
  const Tensor w1t = w1.reshape({H1, -1}).t(), w2t = w2.reshape({H2, H1}).t(), w3z = tap_major(w3).contiguous();
  Tensor y = at::empty({d.N, d.C_out, d.H, d.W}, x.options());
  Tensor h1 = at::empty({d.positions(), H1}, x.options()), h2 = at::empty({d.positions(), H2}, x.options());
  const Tensor kb1 = contiguous_or_undefined(b1), kb2 = contiguous_or_undefined(b2),
               kb3 = contiguous_or_undefined(b3);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv_conditioner", [&] {
    using T = scalar_t;
    for_each_sample_block(d.N, [&](int64_t, int64_t n0, int64_t n1) {
      const int64_t tile = samples_per_tile(plane);
      Tensor A1 = at::empty({std::min(n1 - n0, tile) * plane, d.C_in * d.k1 * d.k1}, x.options());
      Tensor Z = at::empty({A1.size(0), w3z.size(1)}, x.options());
      std::vector<T> acc(d.C_out), keep;
      std::vector<uint32_t> bits;
      for (int64_t t0 = n0; t0 < n1; t0 += tile) {
        const int64_t t1 = std::min(n1, t0 + tile), rows = (t1 - t0) * plane;
        const Tensor A1t = A1.narrow(0, 0, rows), Zt = Z.narrow(0, 0, rows);
        im2col<T>(x, d, t0, t1, A1t.mutable_data_ptr<T>());
        Tensor h1t = h1.narrow(0, t0 * plane, rows), h2t = h2.narrow(0, t0 * plane, rows);
        mm_into(h1t, A1t, w1t);
        bias_relu<T>(h1t.mutable_data_ptr<T>(), data_or_null<T>(kb1),
                     drop.rows<T>(1, t0 * plane, rows, H1, keep, bits), rows, H1);
        mm_into(h2t, h1t, w2t);
        bias_relu<T>(h2t.mutable_data_ptr<T>(), data_or_null<T>(kb2),
                     drop.rows<T>(2, t0 * plane, rows, H2, keep, bits), rows, H2);
        mm_into(Zt, h2t, w3z);
        shifted_sum<T>(Zt.const_data_ptr<T>(), data_or_null<T>(kb3), d, t0, t1, acc.data(),
                       y.mutable_data_ptr<T>());
      }
    });
  });
  return {y, h1, h2};
}

// (grad_x, grad_w1, grad_b1, grad_w2, grad_b2, grad_w3, grad_b3).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> conv_conditioner_backward(
    const Tensor& grad_y, const Tensor& x, const Tensor& h1, const Tensor& h2, const Tensor& w1, const Tensor& w2,
    const Tensor& w3, double dropout, const std::optional<Tensor>& seed) {
  check_inputs(x, w1, w2, w3);
  BelowAutograd below;  // as in the forward
  const ConditionerDims d = dims_of(x, w1, w3);
  TORCH_CHECK(grad_y.sizes() == at::IntArrayRef({d.N, d.C_out, d.H, d.W}) && grad_y.scalar_type() == x.scalar_type(),
              "fastgen: grad_y must be (N, C_out, H, W) = (", d.N, ", ", d.C_out, ", ", d.H, ", ", d.W,
              ") of x's dtype, got ", grad_y.sizes(), " ", grad_y.scalar_type());
  TORCH_CHECK(h1.sizes() == at::IntArrayRef({d.positions(), w1.size(0)}) &&
                  h2.sizes() == at::IntArrayRef({d.positions(), w2.size(0)}) && h1.is_contiguous() &&
                  h2.is_contiguous() && h1.scalar_type() == x.scalar_type() && h2.scalar_type() == x.scalar_type(),
              "fastgen: h1 and h2 must be the contiguous hidden activations conv_conditioner returned, (N*H*W, H1) "
              "and (N*H*W, H2), got ", h1.sizes(), " and ", h2.sizes());
  const int64_t plane = d.H * d.W, H1 = w1.size(0), H2 = w2.size(0), taps3 = d.k3 * d.k3 * d.C_out;
  const int64_t cols1 = d.C_in * d.k1 * d.k1;
  const Dropout drop = dropout_of(dropout, seed, x, d.positions(), H1);
  const Tensor gy = grad_y.contiguous();
  const Tensor w1m = w1.reshape({H1, cols1}), w2m = w2.reshape({H2, H1}), w3z = tap_major(w3).contiguous();
  const int64_t parts = sample_blocks(d.N);
  // Per block: the weight gradients (as the products give them) and the bias gradients.
  Tensor gw3z = at::empty({parts, H2, taps3}, x.options()), gw2 = at::empty({parts, H2, H1}, x.options());
  Tensor gw1 = at::empty({parts, H1, cols1}, x.options());
  Tensor gb1 = at::empty({parts, H1}, x.options()), gb2 = at::empty({parts, H2}, x.options());
  Tensor gx = at::empty({d.N, d.C_in, d.H, d.W}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv_conditioner_backward", [&] {
    using T = scalar_t;
    for_each_sample_block(d.N, [&](int64_t part, int64_t n0, int64_t n1) {
      Tensor gw3p = gw3z.select(0, part), gw2p = gw2.select(0, part), gw1p = gw1.select(0, part);
      for (Tensor* t : {&gw3p, &gw2p, &gw1p}) t->zero_();
      T* gb1p = gb1.select(0, part).mutable_data_ptr<T>();
      T* gb2p = gb2.select(0, part).mutable_data_ptr<T>();
      std::fill(gb1p, gb1p + H1, T(0));
      std::fill(gb2p, gb2p + H2, T(0));
      const int64_t tile = samples_per_tile(plane), tile_rows = std::min(n1 - n0, tile) * plane;
      Tensor G = at::empty({tile_rows, taps3}, x.options()), A1 = at::empty({tile_rows, cols1}, x.options());
      Tensor dh2 = at::empty({tile_rows, H2}, x.options()), dh1 = at::empty({tile_rows, H1}, x.options());
      Tensor dA1 = at::empty({tile_rows, cols1}, x.options());
      std::vector<T> keep;
      std::vector<uint32_t> bits;
      for (int64_t t0 = n0; t0 < n1; t0 += tile) {
        const int64_t t1 = std::min(n1, t0 + tile), rows = (t1 - t0) * plane;
        const Tensor h1t = h1.narrow(0, t0 * plane, rows), h2t = h2.narrow(0, t0 * plane, rows);
        Tensor Gt = G.narrow(0, 0, rows), A1t = A1.narrow(0, 0, rows), dA1t = dA1.narrow(0, 0, rows);
        Tensor dh2t = dh2.narrow(0, 0, rows), dh1t = dh1.narrow(0, 0, rows);
        shifted_gather<T>(gy.const_data_ptr<T>(), d, t0, t1, Gt.mutable_data_ptr<T>());
        gw3p.addmm_(h2t.t(), Gt);
        mm_into(dh2t, Gt, w3z.t());
        relu_backward<T>(dh2t.mutable_data_ptr<T>(), h2t.const_data_ptr<T>(),
                         drop.rows<T>(2, t0 * plane, rows, H2, keep, bits), rows, H2, gb2p);
        gw2p.addmm_(dh2t.t(), h1t);
        mm_into(dh1t, dh2t, w2m);
        relu_backward<T>(dh1t.mutable_data_ptr<T>(), h1t.const_data_ptr<T>(),
                         drop.rows<T>(1, t0 * plane, rows, H1, keep, bits), rows, H1, gb1p);
        im2col<T>(x, d, t0, t1, A1t.mutable_data_ptr<T>());
        gw1p.addmm_(dh1t.t(), A1t);
        mm_into(dA1t, dh1t, w1m);
        col2im<T>(dA1t.const_data_ptr<T>(), d, t0, t1, gx.mutable_data_ptr<T>());
      }
    });
  });
  // The blocks' partial sums, in block order; dW3z (H2, k3*k3*C_out) back to w3's layout.
  const auto total = [](const Tensor& t) { return t.size(0) == 1 ? t.select(0, 0) : t.sum(0); };
  const Tensor grad_w3 =
      total(gw3z).view({w3.size(1), w3.size(2) * w3.size(3), d.C_out}).permute({2, 0, 1}).contiguous().view(
          w3.sizes());
  return {gx, total(gw1).view(w1.sizes()), total(gb1), total(gw2).view(w2.sizes()), total(gb2), grad_w3,
          gy.sum({0, 2, 3})};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgen, CPU, m) {
  m.impl("conv_conditioner", &conv_conditioner);
  m.impl("conv_conditioner_backward", &conv_conditioner_backward);
}

}  // namespace fastgen::cpu
