// CPU kernels of gated_pixelcnn_layer (one Gated PixelCNN layer, van den Oord et al. 2016) and
// its backward.
//
// With k = n / 2 the two stacks are convolutions over lists of taps (tap_gather.h):
//   vertical    (k + 1) x n taps, offsets dy in [-k, 0], dx in [-k, k]
//   horizontal  dy = 0, dx in [-k, 0] (mask B) or [-k, -1] (mask A: the current pixel is dropped)
// and, per image n and pixel p (gate(z) = tanh(z_a) * sigmoid(z_b), the halves of 2C channels):
//   V     = W_v @ cols_v + b_v + w_cond_v @ cond[n]                                  (2C, pixels)
//   Hp    = W_h @ cols_h + b_h + w_v2h @ shift_down(V) + b_v2h + w_cond_h @ cond[n]
//   v_out = gate(V),   h_out = w_res @ gate(Hp) + b_res (+ h for mask B)
// shift_down feeds row i - 1 of V to row i of Hp, and a zero row (not the bias) to row 0.
//
// Forward: work items are (n, tile of whole rows [h0, h1)); a tile is the whole image when its
// column matrices are not much bigger than L2. An item computes V for its rows straight into
// v_pre (or a scratch tile when nothing is saved), Hp into h_pre likewise, and both outputs,
// so the gates never leave the cache. The link's input row above a tile belongs to the tile
// before: it is computed again (zero above the image).
//
// Backward, pass 1 per tile, with the gates recomputed from the saved pre-activations:
//   dG = w_res^T @ g_h,  dH = gate'(Hp) * dG       rows [h0, h1 + 1): the row below feeds dV
//   grad_h = (g_h for mask B) + W_h^T @ mirrored horizontal gather of dH   (same row: in the tile)
//   dV = gate'(V) * g_v + shift_up(w_v2h^T @ dH)
// and the tile's share of the weight gradients (g_h G^T, dH cols_h^T, dH shift_down(V)^T,
// dV cols_v^T) and of the per-image pixel sums of dV and dH (bias and conditioning gradients).
// grad_v = W_v^T @ mirrored vertical gather of dV reads the rows below the tile. With one tile
// per image they are done when the tile is, so grad_v follows in the same item from the cached
// dV (as W_v^T @ dV scattered to the taps' offsets when C_in < 2C: a smaller column matrix);
// with several, dV goes to a full-size buffer and a second parallel pass computes grad_v.
// Weight gradients are deterministic: pass 1 runs a fixed number of groups of consecutive tiles
// (kWeightGroups, independent of the thread count), each summing into its own partials.
//
// float16/bfloat16 are computed in float32 (inputs upcast once, outputs rounded once); float64
// in float64.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <tuple>

#include "../conv_checks.h"
#include "conv_common.h"
#include "cpu_clones.h"
#include "fastgen/fast_math.h"
#include "tap_gather.h"
#include "tile_rows.h"

namespace fastgen::cpu {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

// ---------------------------------------------------------------------------------------------
// Gate math. float32 avoids libm so the loops vectorize (see fast_math.h) and shares one
// division between tanh and sigmoid (the divisions are the slow part); float64 uses libm.

// The gate loops are compute-bound (two exponentials and a division per pair): they also get an
// AVX-512 version (about 1.4x faster than AVX2 there), picked when the library loads.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(FASTGEN_NO_CLONES)
#define FASTGEN_GATE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FASTGEN_GATE_CLONES
#endif

// e^x with x clamped to [-80, 80]: beyond that tanh and sigmoid are 0 or +-1 to float precision,
// so the gates need no overflow handling and 2^n is one exponent field (fast_expf's polynomial;
// NaN stays NaN). Products of two such values stay finite and normal.
FASTGEN_HD float exp_gate(float x) {
  const float xc = x > -80.0f ? (x < 80.0f ? x : 80.0f) : -80.0f;  // NaN -> -80, restored below
  float r;
  const float n = exp_split(xc, r);
  const float p = exp_reduced(r);
  const float scale = bits_to_float(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
  return x != x ? x : p * scale;
}

// tanh(x) = num / den: an odd polynomial (Cephes' tanhf, den = 1) for |x| < 0.625, where the
// exponential form would cancel, sign(x) (1 - e^{-2|x|}) / (1 + e^{-2|x|}) elsewhere. A few ulp
// from libm.
FASTGEN_HD void tanh_fraction(float x, float& num, float& den) {
  const float ax = x < 0.0f ? -x : x;
  const float t = exp_gate(-2.0f * ax);
  const bool small = ax < 0.625f;
  num = small ? tanh_near_zero(x) : (x < 0.0f ? t - 1.0f : 1.0f - t);
  den = small ? 1.0f : 1.0f + t;
}

// tanh(x_a) * sigmoid(x_b) = num / (den * (1 + e^{-x_b})).
FASTGEN_HD float gate_value(float xa, float xb) {
  float num, den;
  tanh_fraction(xa, num, den);
  return num / (den * (1.0f + exp_gate(-xb)));
}
inline double gate_value(double xa, double xb) { return std::tanh(xa) / (1.0 + std::exp(-xb)); }

// a = tanh(x_a) and s = sigmoid(x_b) from one reciprocal.
FASTGEN_HD void tanh_sigmoid(float xa, float xb, float& a, float& s) {
  float num, den;
  tanh_fraction(xa, num, den);
  const float e = 1.0f + exp_gate(-xb);
  const float r = 1.0f / (den * e);
  a = num * e * r;
  s = den * r;
}
inline void tanh_sigmoid(double xa, double xb, double& a, double& s) {
  a = std::tanh(xa);
  s = 1.0 / (1.0 + std::exp(-xb));
}

// pre += bias (per row; the GEMMs that produce pre leave it out, so this pass adds it while pre
// is in cache), then out = tanh(pre_a) * sigmoid(pre_b): pre rows [0, half) are pre_a, rows
// [half, 2 half) pre_b. bias may be null.
template <typename acc_t>
FASTGEN_GATE_CLONES void bias_and_gate(acc_t* __restrict pre, int64_t ld_pre, const acc_t* __restrict bias,
                                       acc_t* __restrict out, int64_t ld_out, int64_t half, int64_t len) {
  for (int64_t c = 0; c < half; ++c) {
    acc_t* __restrict pa = pre + c * ld_pre;
    acc_t* __restrict pb = pre + (c + half) * ld_pre;
    const acc_t ba = bias != nullptr ? bias[c] : acc_t(0), bb = bias != nullptr ? bias[c + half] : acc_t(0);
    acc_t* __restrict oc = out + c * ld_out;
#pragma omp simd
    for (int64_t t = 0; t < len; ++t) {
      const acc_t a = pa[t] + ba, b = pb[t] + bb;
      pa[t] = a;
      pb[t] = b;
      oc[t] = gate_value(a, b);
    }
  }
}

// From pre and g = dL/d gate(pre): d = dL/d pre = [g * s * (1 - a^2), g * a * s * (1 - s)] with
// a = tanh(pre_a), s = sigmoid(pre_b); with kWantGate also the gate a * s itself.
template <typename acc_t, bool kWantGate>
FASTGEN_GATE_CLONES void gate_backward(const acc_t* __restrict pre, int64_t ld_pre, const acc_t* __restrict g,
                                       int64_t ld_g, acc_t* __restrict gate, int64_t ld_gate, acc_t* __restrict d,
                                       int64_t ld_d, int64_t half, int64_t len) {
  for (int64_t c = 0; c < half; ++c) {
    const acc_t* __restrict pa = pre + c * ld_pre;
    const acc_t* __restrict pb = pre + (c + half) * ld_pre;
    const acc_t* __restrict gc = g + c * ld_g;
    acc_t* __restrict da = d + c * ld_d;
    acc_t* __restrict db = d + (c + half) * ld_d;
    acc_t* __restrict zc = kWantGate ? gate + c * ld_gate : nullptr;
#pragma omp simd
    for (int64_t t = 0; t < len; ++t) {
      acc_t a, s;
      tanh_sigmoid(pa[t], pb[t], a, s);
      const acc_t gs = gc[t] * s;
      if constexpr (kWantGate) zc[t] = a * s;
      da[t] = gs * (acc_t(1) - a * a);
      db[t] = gs * a * (acc_t(1) - s);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Matrix helpers. Every per-image tensor is used as a (channels, H * W) matrix; a tile of whole
// rows is a column range of it.

// Pixels [p0, p1) (flat index h * W + w) of image n of a contiguous (N, C, H, W) tensor, as a
// (C, p1 - p0) view with row stride H * W.
Tensor pixels(const Tensor& t, int64_t n, int64_t p0, int64_t p1) {
  return t.select(0, n).flatten(1).slice(1, p0, p1);
}

// A contiguous (rows, cols) matrix at the start of the flat scratch buffer `buf`.
Tensor matrix(const Tensor& buf, int64_t rows, int64_t cols) {
  return buf.narrow(0, 0, rows * cols).view({rows, cols});
}

// The fused passes (forward, backward pass 1) take tiles up to twice the L2-sized column matrix:
// every tile edge costs a recomputed row, and in the backward one tile per image also saves the
// second pass over dV (see backward_tiles), which outweighs the GEMM streaming some columns
// from L3.
constexpr int64_t kFusedColsElements = 2 * kColsElements;

// Tiles of whole image rows: as many rows as keep `per_row` elements of column matrix per row
// under `budget`, split evenly (14 + 14 rather than 24 + 4).
struct RowTiles {
  int64_t H, rows, tiles;

  RowTiles(int64_t H_, int64_t per_row, int64_t budget = kColsElements) : H(H_) {
    const int64_t most = std::clamp<int64_t>(budget / std::max<int64_t>(per_row, 1), 1, std::max<int64_t>(H, 1));
    tiles = ceil_div(H, most);
    rows = tiles > 0 ? ceil_div(H, tiles) : 1;
  }

  int64_t h0(int64_t tile) const { return tile * rows; }
  int64_t h1(int64_t tile) const { return std::min(H, (tile + 1) * rows); }
};

// Everything both directions share: sizes, tap lists and the inputs in the accumulation dtype.
struct Layer {
  int64_t N, C_in, C, C2, H, W;  // C gate channels, C2 = 2C pre-activation channels
  bool mask_b;
  TapPlan taps_v, taps_h;
  Tensor v, h;           // (N, C_in, H, W), contiguous
  Tensor w_v;            // (2C, C_in * T_v): the column-matrix layout c * T_v + t
  Tensor w_h;            // (2C, C_in * T_h): the kept taps only
  Tensor w_v2h, w_res;   // (2C, 2C), (C, C)

  Layer(const Tensor& v_in, const Tensor& h_in, const Tensor& w_v_in, const Tensor& w_h_in, const Tensor& w_v2h_in,
        const Tensor& w_res_in, c10::string_view mask_type, at::ScalarType acc)
      : N(v_in.size(0)), C_in(v_in.size(1)), C(w_v_in.size(0) / 2), C2(w_v_in.size(0)), H(v_in.size(2)),
        W(v_in.size(3)), mask_b(mask_type == "B") {
    const int64_t n = w_v_in.size(3), k = n / 2, T_h = mask_b ? k + 1 : k;
    taps_v = window_taps(k + 1, n, -k, -k);
    taps_h = window_taps(1, T_h, 0, -k);
    v = v_in.to(acc).contiguous();
    h = h_in.to(acc).contiguous();
    w_v = w_v_in.to(acc).reshape({C2, C_in * taps_v.size()}).contiguous();
    w_h = w_h_in.to(acc).narrow(3, 0, T_h).reshape({C2, C_in * T_h}).contiguous();
    w_v2h = w_v2h_in.to(acc).contiguous();
    w_res = w_res_in.to(acc).contiguous();
  }

  int64_t T_v() const { return taps_v.size(); }
  int64_t T_h() const { return taps_h.size(); }
  bool has_h_taps() const { return T_h() > 0 && C_in > 0; }
};

// The column matrix (C * T, (h1 - h0) * W) of the taps of image n of `src` (N, C, H, W) for the
// rows [h0, h1), in `buf`. sign = -1: the mirrored gather of a gradient.
template <typename acc_t>
Tensor gather(const Tensor& src, int64_t n, const TapPlan& taps, int64_t sign, int64_t h0, int64_t h1,
              const Tensor& buf) {
  const int64_t C = src.size(1), H = src.size(2), W = src.size(3);
  const Tensor cols = matrix(buf, C * taps.size(), (h1 - h0) * W);
  gather_taps<acc_t>(ptr<acc_t>(src) + n * C * H * W, C, H, W, taps, sign, h0, h1, ptr<acc_t>(cols));
  return cols;
}

// Per-image pre-activation bias (N, 2C): the sum of the given biases and w_cond @ cond[n];
// nullopt when there is none of them.
OptTensor image_bias(const OptTensor& b1, const OptTensor& b2, const OptTensor& cond, const OptTensor& w_cond,
                     int64_t N, int64_t C2, at::ScalarType acc, const at::TensorOptions& opts) {
  if (!b1.has_value() && !b2.has_value() && !cond.has_value()) return std::nullopt;
  Tensor out = at::zeros({N, C2}, opts);
  for (const OptTensor* b : {&b1, &b2}) {
    if (b->has_value()) out.add_((*b)->to(acc).unsqueeze(0));
  }
  if (cond.has_value()) out.addmm_(cond->to(acc), w_cond->to(acc).t());
  return out;
}

template <typename acc_t>
const acc_t* row_or_null(const OptTensor& t, int64_t n) {
  return t.has_value() ? ptr<acc_t>(*t) + n * t->size(1) : nullptr;
}

// ---------------------------------------------------------------------------------------------
// Forward

struct ForwardOut {
  Tensor v_out, h_out;   // (N, C, H, W) in acc
  Tensor v_pre, h_pre;   // (N, 2C, H, W) in acc, undefined when not saved
};

// Thread-local buffers of one forward worker, sized for the largest tile. v and hp hold the
// pre-activations when they are not saved (else they go straight into v_pre and h_pre).
struct ForwardScratch {
  Tensor cols, v_above, v, hp, gate;

  ForwardScratch(const Layer& L, const RowTiles& tiles, bool saved) {
    const int64_t P = tiles.rows * L.W;
    const at::TensorOptions opts = L.v.options();
    cols = at::empty({L.C_in * std::max(L.T_v(), L.T_h()) * P}, opts);
    v_above = at::empty({L.C2 * L.W}, opts);
    if (!saved) {
      v = at::empty({L.C2 * P}, opts);
      hp = at::empty({L.C2 * P}, opts);
    }
    gate = at::empty({L.C * P}, opts);
  }
};

// V (2C, (h1 - h0) * W) of the rows [h0, h1) of image n without its bias: the vertical taps.
template <typename acc_t>
void vertical_rows(const Layer& L, int64_t n, int64_t h0, int64_t h1, Tensor& V, const Tensor& cols) {
  if (L.C_in == 0) {
    V.zero_();
    return;
  }
  at::mm_out(V, L.w_v, gather<acc_t>(L.v, n, L.taps_v, +1, h0, h1, cols));
}

template <typename acc_t>
void forward_tile(const Layer& L, const OptTensor& bias_v, const OptTensor& bias_h, const OptTensor& b_res,
                  int64_t n, int64_t h0, int64_t h1, const ForwardScratch& s, const ForwardOut& out) {
  const int64_t W = L.W, P = (h1 - h0) * W;
  Tensor V = out.v_pre.defined() ? pixels(out.v_pre, n, h0 * W, h1 * W) : matrix(s.v, L.C2, P);
  vertical_rows<acc_t>(L, n, h0, h1, V, s.cols);
  const Tensor v_out = pixels(out.v_out, n, h0 * W, h1 * W);
  bias_and_gate<acc_t>(ptr<acc_t>(V), V.stride(0), row_or_null<acc_t>(bias_v, n), ptr<acc_t>(v_out),
                       v_out.stride(0), L.C, P);

  Tensor hp = out.h_pre.defined() ? pixels(out.h_pre, n, h0 * W, h1 * W) : matrix(s.hp, L.C2, P);
  if (L.has_h_taps()) {
    at::mm_out(hp, L.w_h, gather<acc_t>(L.h, n, L.taps_h, +1, h0, h1, s.cols));
  } else {
    hp.zero_();
  }
  // The link: row i of Hp reads V of row i - 1. The tile's first row reads the row above the
  // tile, computed again here (it belongs to the previous tile), or nothing at the image top.
  if (P > W) hp.narrow(1, W, P - W).addmm_(L.w_v2h, V.narrow(1, 0, P - W));
  if (h0 > 0) {
    Tensor v_above = matrix(s.v_above, L.C2, W);
    vertical_rows<acc_t>(L, n, h0 - 1, h0, v_above, s.cols);
    if (bias_v.has_value()) v_above.add_(bias_v->select(0, n).unsqueeze(1));
    hp.narrow(1, 0, W).addmm_(L.w_v2h, v_above);
  }
  const Tensor gate = matrix(s.gate, L.C, P);
  bias_and_gate<acc_t>(ptr<acc_t>(hp), hp.stride(0), row_or_null<acc_t>(bias_h, n), ptr<acc_t>(gate),
                       gate.stride(0), L.C, P);

  const Tensor h_out = pixels(out.h_out, n, h0 * W, h1 * W);
  const Tensor residual = pixels(L.h, n, h0 * W, h1 * W);
  fill_rows<acc_t>(h_out, L.mask_b ? &residual : nullptr, b_res.has_value() ? ptr<acc_t>(*b_res) : nullptr);
  h_out.addmm_(L.w_res, gate);
}

std::tuple<Tensor, Tensor, Tensor, Tensor> gated_pixelcnn_layer(
    const Tensor& v, const Tensor& h, const Tensor& w_v, const OptTensor& b_v, const Tensor& w_h,
    const OptTensor& b_h, const Tensor& w_v2h, const OptTensor& b_v2h, const Tensor& w_res, const OptTensor& b_res,
    c10::string_view mask_type, const OptTensor& cond, const OptTensor& w_cond_v, const OptTensor& w_cond_h,
    bool save_pre_activation) {
  check_gated_pixelcnn_layer_inputs(v, h, w_v, b_v, w_h, b_h, w_v2h, b_v2h, w_res, b_res, mask_type, cond,
                                    w_cond_v, w_cond_h, "cpu");
  const at::ScalarType dtype = v.scalar_type(), acc = acc_type(dtype);
  BelowAutograd below;
  const Layer L(v, h, w_v, w_h, w_v2h, w_res, mask_type, acc);
  const at::TensorOptions opts = L.v.options();
  ForwardOut out{at::empty({L.N, L.C, L.H, L.W}, opts), at::empty({L.N, L.C, L.H, L.W}, opts), Tensor(),
                 Tensor()};
  if (save_pre_activation) {
    out.v_pre = at::empty({L.N, L.C2, L.H, L.W}, opts);
    out.h_pre = at::empty({L.N, L.C2, L.H, L.W}, opts);
  }
  if (out.v_out.numel() > 0) {
    const OptTensor bias_v = image_bias(b_v, std::nullopt, cond, w_cond_v, L.N, L.C2, acc, opts);
    const OptTensor bias_h = image_bias(b_h, b_v2h, cond, w_cond_h, L.N, L.C2, acc, opts);
    const OptTensor b_res_acc = b_res.has_value() ? OptTensor(b_res->to(acc).contiguous()) : std::nullopt;
    const RowTiles tiles(L.H, std::max(L.C_in * L.T_v(), L.C2) * L.W, kFusedColsElements);
    AT_DISPATCH_FLOATING_TYPES(acc, "gated_pixelcnn_layer", [&] {
      at::parallel_for(0, L.N * tiles.tiles, 1, [&](int64_t begin, int64_t end) {
        BelowAutograd below_in_worker;
        const ForwardScratch scratch(L, tiles, save_pre_activation);
        for (int64_t item = begin; item < end; ++item) {
          const int64_t n = item / tiles.tiles, tile = item % tiles.tiles;
          forward_tile<scalar_t>(L, bias_v, bias_h, b_res_acc, n, tiles.h0(tile), tiles.h1(tile), scratch, out);
        }
      });
    });
  }
  // Not saved: empty tensors, each its own (outputs must not alias).
  return {out.v_out.to(dtype), out.h_out.to(dtype), save_pre_activation ? out.v_pre : at::empty({0}, opts),
          save_pre_activation ? out.h_pre : at::empty({0}, opts)};
}

// ---------------------------------------------------------------------------------------------
// Backward

// The backward's inputs in the accumulation dtype, contiguous.
struct Saved {
  Tensor g_v, g_h;         // (N, C, H, W)
  Tensor v_pre, h_pre;     // (N, 2C, H, W)
  Tensor w_h_t, w_v_t;     // (C_in, 2C * T_h), (C_in, 2C * T_v): the mirrored gathers' layout
};

// One partial per group of tiles for every weight gradient (summed over the groups at the end).
struct Partials {
  Tensor w_v, w_h, w_v2h, w_res;  // (G, 2C, C_in * T_v), (G, 2C, C_in * T_h), (G, 2C, 2C), (G, C, C)
};

// Tiles of the mirrored vertical gather of dV (2C * T_v rows per pixel) for grad_v.
RowTiles grad_v_tiles(const Layer& L) { return RowTiles(L.H, L.C2 * L.T_v() * L.W); }

// Tiles of Z = W_v^T @ dV (C_in * T_v rows per pixel), the scatter form of grad_v.
RowTiles scatter_v_tiles(const Layer& L) { return RowTiles(L.H, L.C_in * L.T_v() * L.W); }

// Thread-local buffers of one pass-1 worker, sized for the largest tile (plus its row below);
// with one tile per image also the image's dV and the columns of its grad_v tiles.
struct BackwardScratch {
  Tensor cols, dg, gate, dh, dv;

  BackwardScratch(const Layer& L, const RowTiles& tiles, bool whole_images) {
    const int64_t P = tiles.rows * L.W, Pe = (tiles.rows + 1) * L.W;
    const at::TensorOptions opts = L.v.options();
    int64_t cols_size = std::max({L.C_in * L.T_v(), L.C_in * L.T_h(), L.C2 * L.T_h()}) * P;
    if (whole_images) {  // grad_v_image's columns
      cols_size = std::max({cols_size, L.C2 * L.T_v() * grad_v_tiles(L).rows * L.W,
                            L.C_in * L.T_v() * scatter_v_tiles(L).rows * L.W});
      dv = at::empty({L.C2 * L.H * L.W}, opts);
    }
    cols = at::empty({cols_size}, opts);
    dg = at::empty({L.C * Pe}, opts);
    gate = at::empty({L.C * Pe}, opts);
    dh = at::empty({L.C2 * Pe}, opts);
  }
};

// Pass 1 for image n, rows [h0, h1): grad_h and dV of the rows (dV into `dv_image`, the image's
// (2C, H * W) matrix), their weight-gradient shares into `part` (one group's slices) and the
// pixel sums of dV and dH into sum_dv, sum_dh (2C,).
template <typename acc_t>
void backward_tile(const Layer& L, const Saved& S, const Partials& part, int64_t n, int64_t h0, int64_t h1,
                   const BackwardScratch& s, const Tensor& dv_image, const Tensor& grad_h, acc_t* sum_dv,
                   acc_t* sum_dh) {
  const int64_t W = L.W, P = (h1 - h0) * W;
  const int64_t e1 = std::min(h1 + 1, L.H), Pe = (e1 - h0) * W;  // with the row below, if any
  Tensor dg = matrix(s.dg, L.C, Pe);
  const Tensor gate = matrix(s.gate, L.C, Pe), dh = matrix(s.dh, L.C2, Pe);
  at::mm_out(dg, L.w_res.t(), pixels(S.g_h, n, h0 * W, e1 * W));
  const Tensor hp = pixels(S.h_pre, n, h0 * W, e1 * W);
  gate_backward<acc_t, true>(ptr<acc_t>(hp), hp.stride(0), ptr<acc_t>(dg), dg.stride(0), ptr<acc_t>(gate),
                             gate.stride(0), ptr<acc_t>(dh), dh.stride(0), L.C, Pe);
  const Tensor g_h = pixels(S.g_h, n, h0 * W, h1 * W), dh_rows = dh.narrow(1, 0, P);
  part.w_res.addmm_(g_h, gate.narrow(1, 0, P).t());

  // Horizontal stack: its weight gradient, and grad_h (taps stay in the row, so in the tile).
  const Tensor gh_tile = pixels(grad_h, n, h0 * W, h1 * W);
  fill_rows<acc_t>(gh_tile, L.mask_b ? &g_h : nullptr, nullptr);
  if (L.has_h_taps()) {
    part.w_h.addmm_(dh_rows, gather<acc_t>(L.h, n, L.taps_h, +1, h0, h1, s.cols).t());
    const Tensor cols = matrix(s.cols, L.C2 * L.T_h(), P);
    gather_taps<acc_t>(ptr<acc_t>(dh), L.C2, e1 - h0, W, L.taps_h, -1, 0, h1 - h0, ptr<acc_t>(cols), Pe);
    gh_tile.addmm_(S.w_h_t, cols);
  }

  // Link: row i of dH with row i - 1 of V (row 0 read the zero row: no gradient).
  const int64_t l0 = std::max<int64_t>(h0, 1);
  if (l0 < h1) {
    const Tensor v_above = pixels(S.v_pre, n, (l0 - 1) * W, (h1 - 1) * W);
    part.w_v2h.addmm_(dh.narrow(1, (l0 - h0) * W, (h1 - l0) * W), v_above.t());
  }

  // dV = gate'(V) * g_v + shift_up(w_v2h^T @ dH): dV row i gets the link of dH row i + 1.
  const Tensor dv = dv_image.narrow(1, h0 * W, P), vp = pixels(S.v_pre, n, h0 * W, h1 * W);
  const Tensor g_v = pixels(S.g_v, n, h0 * W, h1 * W);
  gate_backward<acc_t, false>(ptr<acc_t>(vp), vp.stride(0), ptr<acc_t>(g_v), g_v.stride(0), nullptr, 0,
                              ptr<acc_t>(dv), dv.stride(0), L.C, P);
  if (Pe > W) dv_image.narrow(1, h0 * W, Pe - W).addmm_(L.w_v2h.t(), dh.narrow(1, W, Pe - W));
  if (L.C_in > 0) part.w_v.addmm_(dv, gather<acc_t>(L.v, n, L.taps_v, +1, h0, h1, s.cols).t());

  add_row_sums<acc_t>(sum_dv, ptr<acc_t>(dv), dv.stride(0), L.C2, P);
  add_row_sums<acc_t>(sum_dh, ptr<acc_t>(dh), dh.stride(0), L.C2, P);
}

// grad_v of image n, rows [h0, h1) = W_v^T @ the mirrored vertical gather of dV, read from the
// image's (2C, H * W) matrix dv_image (the rows below the tile included).
template <typename acc_t>
void grad_v_rows(const Layer& L, const Saved& S, const Tensor& dv_image, int64_t n, int64_t h0, int64_t h1,
                 const Tensor& grad_v, const Tensor& buf) {
  const Tensor cols = matrix(buf, L.C2 * L.T_v(), (h1 - h0) * L.W);
  gather_taps<acc_t>(ptr<acc_t>(dv_image), L.C2, L.H, L.W, L.taps_v, -1, h0, h1, ptr<acc_t>(cols),
                     dv_image.stride(0));
  Tensor gv_tile = pixels(grad_v, n, h0 * L.W, h1 * L.W);
  at::mm_out(gv_tile, S.w_v_t, cols);
}

// grad_v of image n from its complete dV (dv_image, (2C, H * W)). With C_in < 2C the scatter form
// is cheaper: Z = W_v^T @ dV has C_in * T_v rows where the mirrored gather has 2C * T_v, and each
// tap's rows of Z are added into grad_v at the tap's offset (the item owns the whole image, so
// the overlapping adds are safe). Otherwise the mirrored gather, tile by tile.
template <typename acc_t>
void grad_v_image(const Layer& L, const Saved& S, const Tensor& dv_image, int64_t n, const Tensor& grad_v,
                  const Tensor& buf) {
  if (L.C_in >= L.C2) {
    const RowTiles tiles = grad_v_tiles(L);
    for (int64_t t = 0; t < tiles.tiles; ++t) {
      grad_v_rows<acc_t>(L, S, dv_image, n, tiles.h0(t), tiles.h1(t), grad_v, buf);
    }
    return;
  }
  const Tensor gv_image = grad_v.select(0, n);
  gv_image.zero_();
  const RowTiles tiles = scatter_v_tiles(L);
  for (int64_t t = 0; t < tiles.tiles; ++t) {
    const int64_t h0 = tiles.h0(t), h1 = tiles.h1(t);
    Tensor Z = matrix(buf, L.C_in * L.T_v(), (h1 - h0) * L.W);
    at::mm_out(Z, L.w_v.t(), dv_image.narrow(1, h0 * L.W, (h1 - h0) * L.W));
    scatter_add_taps<acc_t>(ptr<acc_t>(Z), L.C_in, L.H, L.W, L.taps_v, h0, h1, ptr<acc_t>(gv_image));
  }
}

// Pass 1 over every tile, in fixed groups of consecutive tiles. With one tile per image its dV
// is complete when the tile is done, so grad_v follows at once from the cached dV (no pass 2);
// otherwise dV goes to dv_full for pass 2.
template <typename acc_t>
void backward_tiles(const Layer& L, const Saved& S, const Partials& part, const RowTiles& tiles,
                    const Tensor& dv_full, const Tensor& grad_v, const Tensor& grad_h, const Tensor& sum_dv,
                    const Tensor& sum_dh) {
  const int64_t items = L.N * tiles.tiles, groups = part.w_res.size(0);
  const bool whole_images = tiles.tiles == 1;
  at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
    BelowAutograd below_in_worker;
    const BackwardScratch scratch(L, tiles, whole_images);
    for (int64_t group = begin; group < end; ++group) {
      const Partials mine{part.w_v[group], part.w_h[group], part.w_v2h[group], part.w_res[group]};
      for (int64_t item = group * items / groups; item < (group + 1) * items / groups; ++item) {
        const int64_t n = item / tiles.tiles, tile = item % tiles.tiles;
        const Tensor dv_image = whole_images ? matrix(scratch.dv, L.C2, L.H * L.W) : dv_full.select(0, n).flatten(1);
        backward_tile<acc_t>(L, S, mine, n, tiles.h0(tile), tiles.h1(tile), scratch, dv_image, grad_h,
                             ptr<acc_t>(sum_dv) + item * L.C2, ptr<acc_t>(sum_dh) + item * L.C2);
        if (whole_images && L.C_in > 0) grad_v_image<acc_t>(L, S, dv_image, n, grad_v, scratch.cols);
      }
    }
  });
}

// Pass 2 (several tiles per image): grad_v per tile from the full dV buffer.
template <typename acc_t>
void grad_v_pass(const Layer& L, const Saved& S, const Tensor& dv_full, const Tensor& grad_v) {
  const RowTiles tiles = grad_v_tiles(L);
  at::parallel_for(0, L.N * tiles.tiles, 1, [&](int64_t begin, int64_t end) {
    BelowAutograd below_in_worker;
    const Tensor buf = at::empty({L.C2 * L.T_v() * tiles.rows * L.W}, L.v.options());
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / tiles.tiles, tile = item % tiles.tiles;
      grad_v_rows<acc_t>(L, S, dv_full.select(0, n).flatten(1), n, tiles.h0(tile), tiles.h1(tile), grad_v, buf);
    }
  });
}

// (2C, C_in * T) kept-tap weight -> (C_in, 2C * T), the layout of a mirrored gather's columns.
Tensor mirrored(const Tensor& w, int64_t C2, int64_t C_in, int64_t T) {
  return w.reshape({C2, C_in, T}).permute({1, 0, 2}).reshape({C_in, C2 * T}).contiguous();
}

using BackwardResult = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                                  Tensor, Tensor, Tensor>;

BackwardResult gated_pixelcnn_layer_backward(const Tensor& grad_v_out, const Tensor& grad_h_out, const Tensor& v,
                                             const Tensor& h, const Tensor& v_pre, const Tensor& h_pre,
                                             const Tensor& w_v, const Tensor& w_h, const Tensor& w_v2h,
                                             const Tensor& w_res, c10::string_view mask_type, const OptTensor& cond,
                                             const OptTensor& w_cond_v, const OptTensor& w_cond_h) {
  check_gated_pixelcnn_layer_inputs(v, h, w_v, std::nullopt, w_h, std::nullopt, w_v2h, std::nullopt, w_res,
                                    std::nullopt, mask_type, cond, w_cond_v, w_cond_h, "cpu");
  const at::ScalarType dtype = v.scalar_type(), acc = acc_type(dtype);
  check_gated_pixelcnn_layer_grads(grad_v_out, grad_h_out, v_pre, h_pre, v, w_v, acc);
  BelowAutograd below;
  const Layer L(v, h, w_v, w_h, w_v2h, w_res, mask_type, acc);
  const at::TensorOptions opts = L.v.options();
  const RowTiles tiles(L.H, std::max({L.C_in * L.T_v(), L.C2 * L.T_h(), L.C2}) * L.W, kFusedColsElements);
  const int64_t items = L.N * tiles.tiles, groups = std::max<int64_t>(1, std::min(items, kWeightGroups));
  const Partials part{at::zeros({groups, L.C2, L.C_in * L.T_v()}, opts),
                      at::zeros({groups, L.C2, L.C_in * L.T_h()}, opts), at::zeros({groups, L.C2, L.C2}, opts),
                      at::zeros({groups, L.C, L.C}, opts)};
  // Both are written in full by the passes below.
  Tensor grad_v = at::empty({L.N, L.C_in, L.H, L.W}, opts), grad_h = at::empty({L.N, L.C_in, L.H, L.W}, opts);
  const Tensor sum_dv = at::zeros({items, L.C2}, opts), sum_dh = at::zeros({items, L.C2}, opts);
  const Tensor g_h = grad_h_out.to(acc).contiguous();
  if (L.N * L.H * L.W > 0) {
    const Saved S{grad_v_out.to(acc).contiguous(), g_h, v_pre.contiguous(), h_pre.contiguous(),
                  mirrored(L.w_h, L.C2, L.C_in, L.T_h()), mirrored(L.w_v, L.C2, L.C_in, L.T_v())};
    // dV of every image, for pass 2; not needed with one tile per image.
    const bool two_passes = tiles.tiles > 1;
    const Tensor dv_full = two_passes ? at::empty({L.N, L.C2, L.H, L.W}, opts) : Tensor();
    AT_DISPATCH_FLOATING_TYPES(acc, "gated_pixelcnn_layer_backward", [&] {
      backward_tiles<scalar_t>(L, S, part, tiles, dv_full, grad_v, grad_h, sum_dv, sum_dh);
      if (two_passes && L.C_in > 0) grad_v_pass<scalar_t>(L, S, dv_full, grad_v);
    });
  }

  // Per-image pixel sums (N, 2C), added over the tiles in a fixed order.
  const Tensor sdv = sum_dv.view({L.N, tiles.tiles, L.C2}).sum(1);
  const Tensor sdh = sum_dh.view({L.N, tiles.tiles, L.C2}).sum(1);
  const int64_t n_taps = w_v.size(3), k = n_taps / 2;
  const Tensor grad_w_v = part.w_v.sum(0).reshape({L.C2, L.C_in, k + 1, n_taps});
  // Mask A: the horizontal current-pixel tap is ignored and its gradient stays exactly zero.
  Tensor grad_w_h = at::zeros({L.C2, L.C_in, 1, k + 1}, opts);
  grad_w_h.narrow(3, 0, L.T_h()).copy_(part.w_h.sum(0).reshape({L.C2, L.C_in, 1, L.T_h()}));
  Tensor grad_cond = at::empty({0}, v.options()), grad_w_cond_v = at::empty({0}, v.options()),
         grad_w_cond_h = at::empty({0}, v.options());
  if (cond.has_value()) {
    const Tensor cond_acc = cond->to(acc);
    grad_cond = at::mm(sdv, w_cond_v->to(acc)).addmm_(sdh, w_cond_h->to(acc)).to(dtype);
    grad_w_cond_v = at::mm(sdv.t(), cond_acc).to(dtype);
    grad_w_cond_h = at::mm(sdh.t(), cond_acc).to(dtype);
  }
  return {grad_v.to(dtype),
          grad_h.to(dtype),
          grad_w_v.to(dtype),
          sdv.sum(0).to(dtype),
          grad_w_h.to(dtype),
          sdh.sum(0).to(dtype),
          part.w_v2h.sum(0).to(dtype),
          sdh.sum(0).to(dtype),  // b_h and b_v2h are added to the same pre-activation
          part.w_res.sum(0).to(dtype),
          g_h.sum(at::IntArrayRef{0, 2, 3}).to(dtype),
          grad_cond,
          grad_w_cond_v,
          grad_w_cond_h};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgen, CPU, m) {
  m.impl("gated_pixelcnn_layer", &gated_pixelcnn_layer);
  m.impl("gated_pixelcnn_layer_backward", &gated_pixelcnn_layer_backward);
}

}  // namespace fastgen::cpu
