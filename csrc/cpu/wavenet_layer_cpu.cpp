// CPU kernels of wavenet_layer (one whole WaveNet residual layer) and its backward.
//
//   h    = b_dilated + sum_k Wd_k @ x[n, :, t - s_k] (+ w_cond @ cond)    s_k = (K-1-k) * dilation
//   z    = tanh(h[:C_half]) * sigmoid(h[C_half:])                        C_half = C_gate / 2
//   res  = x + w_res @ z + b_res,    skip = w_skip @ z + b_skip
//
// Forward: work items are (n, time tile) pairs, handed out to at::parallel_for's threads one at
// a time (robust to a thread being preempted by other processes). An item builds its h
// and z tiles in thread-local buffers (h goes straight into the saved-h output when a backward
// will need it) and writes its residual and skip tiles straight into the outputs, so the gate
// activations never make a round trip through memory. The causal taps are GEMMs on strided
// views of x, as in causal_conv1d (no padded copy); every GEMM is single-threaded inside the
// parallel loop.
//
// Backward, per tile (the gates are recomputed from the saved h):
//   gz  = w_res^T @ g_res + w_skip^T @ g_skip
//   dh  = [gz * s * (1 - a^2), gz * a * s * (1 - s)]    a = tanh(h_a), s = sigmoid(h_b)
// While dh is in cache the same step adds the tile's share of every weight and bias gradient
// (g_res z^T, g_skip z^T, dh x_shifted^T, dh cond^T, row sums) and writes grad_cond =
// w_cond^T @ dh. grad_x = g_res + sum_k Wd_k^T @ dh[:, t + s_k] (anti-causal correlation) also
// needs dh up to halo = (K-1) * dilation steps past the tile: when the halo is short the tile
// recomputes gz and dh over it too and finishes grad_x at once, so dh never goes to memory;
// otherwise dh goes to a full-size buffer and grad_x is a second pass over the tiles.
// Weight and bias gradients are reduced deterministically: the tiles are split into a fixed
// number of groups of consecutive tiles (kWeightGroups, independent of the thread count), each
// accumulating its own partials, which are summed in a fixed order afterwards.
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
#include <atomic>
#include <cmath>
#include <optional>
#include <tuple>

#include "../conv_checks.h"
#include "conv_common.h"
#include "cpu_clones.h"
#include "fastgen/fast_math.h"
#include "gate_math.h"
#include "tile_rows.h"

namespace fastgen::cpu {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

// Time steps per work item: long enough that each GEMM streams well and a halo of up to 64
// steps is cheap to recompute, short enough that the item's h and z tiles stay in L2 between
// the GEMMs that produce and consume them and a few batch elements give every core work.
constexpr int64_t kTimeTile = 512;

// z = tanh(h_a) * sigmoid(h_b) for a tile: h rows [0, half) are h_a, rows [half, 2 half) h_b.
template <typename acc_t>
FASTGEN_CPU_CLONES void gate_forward(const acc_t* __restrict h, int64_t ld_h, acc_t* __restrict z,
                                     int64_t ld_z, int64_t half, int64_t len) {
  for (int64_t c = 0; c < half; ++c) {
    const acc_t* __restrict ha = h + c * ld_h;
    const acc_t* __restrict hb = h + (c + half) * ld_h;
    acc_t* __restrict zc = z + c * ld_z;
#pragma omp simd
    for (int64_t t = 0; t < len; ++t) zc[t] = tanh_acc(ha[t]) * sigmoid_acc(hb[t]);
  }
}

// From the saved h and gz = dL/dz: z (needed for the 1x1 weight gradients) and
// dh = [gz * s * (1 - a^2), gz * a * s * (1 - s)].
template <typename acc_t>
FASTGEN_CPU_CLONES void gate_backward(const acc_t* __restrict h, int64_t ld_h, const acc_t* __restrict gz,
                                      int64_t ld_gz, acc_t* __restrict z, int64_t ld_z, acc_t* __restrict dh,
                                      int64_t ld_dh, int64_t half, int64_t len) {
  for (int64_t c = 0; c < half; ++c) {
    const acc_t* __restrict ha = h + c * ld_h;
    const acc_t* __restrict hb = h + (c + half) * ld_h;
    const acc_t* __restrict gzc = gz + c * ld_gz;
    acc_t* __restrict zc = z + c * ld_z;
    acc_t* __restrict dha = dh + c * ld_dh;
    acc_t* __restrict dhb = dh + (c + half) * ld_dh;
#pragma omp simd
    for (int64_t t = 0; t < len; ++t) {
      const acc_t a = tanh_acc(ha[t]), s = sigmoid_acc(hb[t]), g = gzc[t];
      zc[t] = a * s;
      dha[t] = g * s * (acc_t(1) - a * a);
      dhb[t] = g * a * s * (acc_t(1) - s);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Tile helpers. Tiles are 2-D (channels, time) views with unit time stride.

template <typename acc_t>
const acc_t* ptr_or_null(const OptTensor& t) {
  return t.has_value() ? t->const_data_ptr<acc_t>() : nullptr;
}

struct Tile {
  int64_t n, t0, t1;
  int64_t len() const { return t1 - t0; }
};

inline Tile tile_at(int64_t index, int64_t tiles, int64_t T) {
  const int64_t t0 = (index % tiles) * kTimeTile;
  return {index / tiles, t0, std::min(t0 + kTimeTile, T)};
}

// Columns [t0, t1) of batch element n of a (N, C, T) tensor.
inline Tensor tile_of(const Tensor& full, const Tile& tile) {
  return full.select(0, tile.n).slice(1, tile.t0, tile.t1);
}

// Runs body(next) on at::parallel_for's threads; next() hands out the items [0, items) one at a
// time, then -1. Why not parallel_for's fixed split: the cores are often shared with other
// processes, and a preempted thread would hold back its whole fixed share of the work; here
// the other threads take over its remaining items. body sets up its thread-local buffers once.
template <typename Body>
void parallel_items(int64_t items, const Body& body) {
  std::atomic<int64_t> next_item{0};
  const auto next = [&]() -> int64_t {
    const int64_t item = next_item.fetch_add(1, std::memory_order_relaxed);
    return item < items ? item : -1;
  };
  const int64_t workers = std::min<int64_t>(items, at::get_num_threads());
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    BelowAutograd below_in_worker;
    body(next);
  });
}

// ---------------------------------------------------------------------------------------------
// Forward

// The op's inputs in the accumulation dtype, contiguous, weights in GEMM-ready layouts.
struct Layer {
  Tensor x;              // (N, C_res, T)
  Tensor w_dilated;      // (K, C_gate, C_res): tap k is one contiguous matrix
  OptTensor b_dilated;   // (C_gate,)
  Tensor w_res, w_skip;  // (C_res, C_half), (C_skip, C_half)
  OptTensor b_res, b_skip;
  OptTensor cond;        // (N, C_cond, T)
  OptTensor w_cond;      // (C_gate, C_cond)
  int64_t dilation;
};

OptTensor to_acc(const OptTensor& t, at::ScalarType acc) {
  return t.has_value() ? OptTensor(t->to(acc).contiguous()) : std::nullopt;
}

// h_tile = b_dilated + sum_k Wd_k @ x[n, :, t - s_k] + w_cond @ cond[n, :, t]. Tap k only
// reaches times t >= s_k: earlier ones read the causal zero padding, so they are skipped.
template <typename acc_t>
void pre_activation_tile(const Layer& p, const Tile& tile, const Tensor& h) {
  fill_rows<acc_t>(h, nullptr, ptr_or_null<acc_t>(p.b_dilated));
  const Tensor x_n = p.x.select(0, tile.n);
  const int64_t K = p.w_dilated.size(0);
  for (int64_t k = 0; k < K; ++k) {
    const int64_t s = (K - 1 - k) * p.dilation;
    const int64_t start = std::max(tile.t0, s);
    if (start >= tile.t1) continue;
    h.slice(1, start - tile.t0).addmm_(p.w_dilated.select(0, k), x_n.slice(1, start - s, tile.t1 - s));
  }
  if (p.cond.has_value()) h.addmm_(*p.w_cond, tile_of(*p.cond, tile));
}

// One work item: h (into `h`: the h output or a scratch tile), z, then the residual and skip
// tiles straight into the outputs (bias and x written first, the GEMMs accumulate onto them).
template <typename acc_t>
void forward_tile(const Layer& p, const Tile& tile, const Tensor& h, const Tensor& z, const Tensor& residual,
                  const Tensor& skip) {
  pre_activation_tile<acc_t>(p, tile, h);
  gate_forward<acc_t>(ptr<acc_t>(h), h.stride(0), ptr<acc_t>(z), z.stride(0), z.size(0), tile.len());
  const Tensor x_tile = tile_of(p.x, tile);
  fill_rows<acc_t>(residual, &x_tile, ptr_or_null<acc_t>(p.b_res));
  residual.addmm_(p.w_res, z);
  fill_rows<acc_t>(skip, nullptr, ptr_or_null<acc_t>(p.b_skip));
  skip.addmm_(p.w_skip, z);
}

// residual (N, C_res, T), skip (N, C_skip, T) and, when `h_out` is defined, h, all in the
// accumulation dtype.
template <typename acc_t>
void forward_all(const Layer& p, const Tensor& residual, const Tensor& skip, const Tensor& h_out) {
  const int64_t N = p.x.size(0), T = p.x.size(2);
  const int64_t C_gate = p.w_dilated.size(1), C_half = C_gate / 2;
  const int64_t tiles = ceil_div(T, kTimeTile);
  parallel_items(N * tiles, [&](const auto& next) {
    // Thread-local tiles; h_buf is unused when h is written straight into h_out.
    const Tensor h_buf = h_out.defined() ? Tensor() : at::empty({C_gate, kTimeTile}, p.x.options());
    const Tensor z_buf = at::empty({C_half, kTimeTile}, p.x.options());
    for (int64_t item = next(); item >= 0; item = next()) {
      const Tile tile = tile_at(item, tiles, T);
      const Tensor h = h_out.defined() ? tile_of(h_out, tile) : h_buf.slice(1, 0, tile.len());
      forward_tile<acc_t>(p, tile, h, z_buf.slice(1, 0, tile.len()), tile_of(residual, tile), tile_of(skip, tile));
    }
  });
}

std::tuple<Tensor, Tensor, Tensor> wavenet_layer(const Tensor& x, const Tensor& w_dilated,
                                                 const OptTensor& b_dilated, const Tensor& w_res,
                                                 const OptTensor& b_res, const Tensor& w_skip,
                                                 const OptTensor& b_skip, int64_t dilation, const OptTensor& cond,
                                                 const OptTensor& w_cond, bool save_pre_activation) {
  check_wavenet_layer_inputs(x, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, dilation, cond, w_cond,
                             "cpu");
  const at::ScalarType dtype = x.scalar_type(), acc = acc_type(dtype);
  const int64_t N = x.size(0), T = x.size(2);
  BelowAutograd below;
  const Layer p{x.to(acc).contiguous(),
                w_dilated.to(acc).permute({2, 0, 1}).contiguous(),
                to_acc(b_dilated, acc),
                w_res.to(acc).contiguous(),
                w_skip.to(acc).contiguous(),
                to_acc(b_res, acc),
                to_acc(b_skip, acc),
                to_acc(cond, acc),
                to_acc(w_cond, acc),
                dilation};
  const at::TensorOptions opts = p.x.options();
  Tensor residual = at::empty({N, x.size(1), T}, opts);
  Tensor skip = at::empty({N, w_skip.size(0), T}, opts);
  Tensor h = save_pre_activation ? at::empty({N, w_dilated.size(0), T}, opts) : at::empty({0}, opts);
  AT_DISPATCH_FLOATING_TYPES(acc, "wavenet_layer", [&] {
    forward_all<scalar_t>(p, residual, skip, save_pre_activation ? h : Tensor());
  });
  if (acc != dtype) {
    residual = residual.to(dtype);
    skip = skip.to(dtype);
  }
  return {residual, skip, h};
}

// ---------------------------------------------------------------------------------------------
// Backward

// Upstream gradients and saved tensors, in the accumulation dtype, contiguous.
struct Saved {
  Tensor g_res, g_skip;      // (N, C_res, T), (N, C_skip, T)
  Tensor x, h;               // (N, C_res, T), (N, C_gate, T)
  Tensor w_dilated;          // (K, C_gate, C_res)
  Tensor w_dilated_t;        // (K, C_res, C_gate): the taps of grad_x
  Tensor w_res_t, w_skip_t;  // (C_half, C_res), (C_half, C_skip): transposed views
  OptTensor cond, w_cond;
  int64_t dilation;

  int64_t halo() const { return (w_dilated.size(0) - 1) * dilation; }
};

// One partial per group for every reduced gradient (summed over the groups at the end).
struct Partials {
  Tensor w_dilated;  // (G, K, C_gate, C_res)
  Tensor b_dilated;  // (G, C_gate)
  Tensor w_res, b_res, w_skip, b_skip;
  Tensor w_cond;     // (G, C_gate, C_cond), undefined without cond

  Partials group(int64_t g) const {
    return {w_dilated[g], b_dilated[g], w_res[g], b_res[g], w_skip[g], b_skip[g],
            w_cond.defined() ? w_cond[g] : Tensor()};
  }
};

// grad_x of a tile needs dh up to `halo` steps past the tile. When the halo is this short
// (dilation <= 64 for K = 2), each tile recomputes the halo's gates itself (at most 1/8 more gate
// work) and grad_x is done in the same pass, so dh never goes to memory; longer halos keep dh in
// a full-size buffer and compute grad_x in a second pass.
constexpr int64_t kMaxRecomputedHalo = kTimeTile / 8;

// dh and z over `span` (the tile, plus its halo when recomputed) from the saved h and
// gz = w_res^T @ g_res + w_skip^T @ g_skip. gz, z and dh are (channels, span.len()) views.
template <typename acc_t>
void gate_gradient(const Saved& p, const Tile& span, Tensor gz, const Tensor& z, const Tensor& dh) {
  const Tensor h = tile_of(p.h, span);
  at::mm_out(gz, p.w_res_t, tile_of(p.g_res, span));
  gz.addmm_(p.w_skip_t, tile_of(p.g_skip, span));
  gate_backward<acc_t>(ptr<acc_t>(h), h.stride(0), ptr<acc_t>(gz), gz.stride(0), ptr<acc_t>(z), z.stride(0),
                       ptr<acc_t>(dh), dh.stride(0), z.size(0), span.len());
}

// The tile's share of every weight and bias gradient (into one group's partials), and its
// grad_cond = w_cond^T @ dh. z and dh are (channels, tile.len()) views.
template <typename acc_t>
void weight_gradients(const Saved& p, const Tile& tile, const Partials& part, const Tensor& z, const Tensor& dh,
                      const Tensor& grad_cond) {
  const Tensor g_res = tile_of(p.g_res, tile), g_skip = tile_of(p.g_skip, tile);
  const int64_t len = tile.len();
  part.w_res.addmm_(g_res, z.t());
  part.w_skip.addmm_(g_skip, z.t());
  add_row_sums<acc_t>(ptr<acc_t>(part.b_res), ptr<acc_t>(g_res), g_res.stride(0), g_res.size(0), len);
  add_row_sums<acc_t>(ptr<acc_t>(part.b_skip), ptr<acc_t>(g_skip), g_skip.stride(0), g_skip.size(0), len);
  add_row_sums<acc_t>(ptr<acc_t>(part.b_dilated), ptr<acc_t>(dh), dh.stride(0), dh.size(0), len);
  // grad_w_dilated[k] += dh[:, t] x[:, t - s_k]^T over the times t >= s_k of the tile.
  const Tensor x_n = p.x.select(0, tile.n);
  const int64_t K = p.w_dilated.size(0);
  for (int64_t k = 0; k < K; ++k) {
    const int64_t s = (K - 1 - k) * p.dilation;
    const int64_t start = std::max(tile.t0, s);
    if (start >= tile.t1) continue;
    part.w_dilated.select(0, k).addmm_(dh.slice(1, start - tile.t0), x_n.slice(1, start - s, tile.t1 - s).t());
  }
  if (p.cond.has_value()) {
    part.w_cond.addmm_(dh, tile_of(*p.cond, tile).t());
    Tensor grad_cond_tile = tile_of(grad_cond, tile);
    at::mm_out(grad_cond_tile, p.w_cond->t(), dh);
  }
}

// grad_x[:, t] = g_res[:, t] + sum_k Wd_k^T @ dh[:, t + s_k] over the tile, for t + s_k < T.
// dh holds the times from tile.t0 on, at least up to min(t1 + halo, T).
template <typename acc_t>
void grad_x_tile(const Saved& p, const Tile& tile, const Tensor& dh, const Tensor& grad_x) {
  const Tensor gx = tile_of(grad_x, tile), g_res = tile_of(p.g_res, tile);
  fill_rows<acc_t>(gx, &g_res, nullptr);
  const int64_t K = p.w_dilated.size(0), T = p.x.size(2);
  for (int64_t k = 0; k < K; ++k) {
    const int64_t s = (K - 1 - k) * p.dilation;
    const int64_t len = std::min(tile.t1, T - s) - tile.t0;  // dh[t + s] must exist
    if (len <= 0) continue;
    gx.slice(1, 0, len).addmm_(p.w_dilated_t.select(0, k), dh.slice(1, s, s + len));
  }
}

// Pass 1 over every tile, in fixed groups of consecutive tiles (one partial each). With a
// short halo it also computes grad_x; otherwise it leaves dh in `dh_full` for pass 2.
template <typename acc_t>
void backward_tiles(const Saved& p, const Partials& part, const Tensor& dh_full, const Tensor& grad_x,
                    const Tensor& grad_cond) {
  const int64_t N = p.x.size(0), T = p.x.size(2);
  const int64_t C_half = p.w_res_t.size(0), C_gate = 2 * C_half;
  const int64_t tiles = ceil_div(T, kTimeTile), slabs = N * tiles;
  const int64_t groups = part.b_res.size(0);
  const bool recompute_halo = !dh_full.defined();
  const int64_t width = kTimeTile + (recompute_halo ? p.halo() : 0);
  parallel_items(groups, [&](const auto& next) {
    const Tensor gz_buf = at::empty({C_half, width}, p.x.options());
    const Tensor z_buf = at::empty({C_half, width}, p.x.options());
    const Tensor dh_buf = recompute_halo ? at::empty({C_gate, width}, p.x.options()) : Tensor();
    for (int64_t group = next(); group >= 0; group = next()) {
      const Partials mine = part.group(group);
      const int64_t first = group * slabs / groups, last = (group + 1) * slabs / groups;
      for (int64_t slab = first; slab < last; ++slab) {
        const Tile tile = tile_at(slab, tiles, T);
        const Tile span{tile.n, tile.t0, recompute_halo ? std::min(tile.t1 + p.halo(), T) : tile.t1};
        const Tensor dh = recompute_halo ? dh_buf.slice(1, 0, span.len()) : tile_of(dh_full, tile);
        const Tensor z = z_buf.slice(1, 0, span.len());
        gate_gradient<acc_t>(p, span, gz_buf.slice(1, 0, span.len()), z, dh);
        weight_gradients<acc_t>(p, tile, mine, z.slice(1, 0, tile.len()), dh.slice(1, 0, tile.len()), grad_cond);
        if (recompute_halo) grad_x_tile<acc_t>(p, tile, dh, grad_x);
      }
    }
  });
}

// Pass 2 (long halos only): grad_x from the full-size dh.
template <typename acc_t>
void grad_x_from_buffer(const Saved& p, const Tensor& dh_full, const Tensor& grad_x) {
  const int64_t N = p.x.size(0), T = p.x.size(2);
  const int64_t tiles = ceil_div(T, kTimeTile);
  parallel_items(N * tiles, [&](const auto& next) {
    for (int64_t item = next(); item >= 0; item = next()) {
      const Tile tile = tile_at(item, tiles, T);
      grad_x_tile<acc_t>(p, tile, dh_full.select(0, tile.n).slice(1, tile.t0), grad_x);
    }
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> wavenet_layer_backward(
    const Tensor& grad_residual, const Tensor& grad_skip, const Tensor& x, const Tensor& h, const Tensor& w_dilated,
    const Tensor& w_res, const Tensor& w_skip, int64_t dilation, const OptTensor& cond, const OptTensor& w_cond) {
  check_wavenet_layer_inputs(x, w_dilated, std::nullopt, w_res, std::nullopt, w_skip, std::nullopt, dilation,
                             cond, w_cond, "cpu");
  const at::ScalarType dtype = x.scalar_type(), acc = acc_type(dtype);
  check_wavenet_layer_grads(grad_residual, grad_skip, h, x, w_dilated, w_skip, acc);
  BelowAutograd below;
  const Tensor w_dilated_acc = w_dilated.to(acc).permute({2, 0, 1}).contiguous();
  const Saved p{grad_residual.to(acc).contiguous(),
                grad_skip.to(acc).contiguous(),
                x.to(acc).contiguous(),
                h.contiguous(),
                w_dilated_acc,
                w_dilated_acc.transpose(1, 2).contiguous(),
                w_res.to(acc).contiguous().t(),
                w_skip.to(acc).contiguous().t(),
                to_acc(cond, acc),
                to_acc(w_cond, acc),
                dilation};
  const int64_t N = x.size(0), C_res = x.size(1), T = x.size(2), K = w_dilated.size(2);
  const int64_t C_gate = w_dilated.size(0), C_half = C_gate / 2, C_skip = w_skip.size(0);
  const at::TensorOptions opts = p.x.options();
  const int64_t slabs = N * ceil_div(T, kTimeTile);
  const int64_t groups = std::max<int64_t>(1, std::min(slabs, kWeightGroups));
  const Partials part{at::zeros({groups, K, C_gate, C_res}, opts),
                      at::zeros({groups, C_gate}, opts),
                      at::zeros({groups, C_res, C_half}, opts),
                      at::zeros({groups, C_res}, opts),
                      at::zeros({groups, C_skip, C_half}, opts),
                      at::zeros({groups, C_skip}, opts),
                      cond.has_value() ? at::zeros({groups, C_gate, cond->size(1)}, opts) : Tensor()};
  const bool two_pass = p.halo() > kMaxRecomputedHalo;
  const Tensor dh_full = two_pass ? at::empty({N, C_gate, T}, opts) : Tensor();
  Tensor grad_x = at::empty({N, C_res, T}, opts);
  Tensor grad_cond = cond.has_value() ? at::empty({N, cond->size(1), T}, opts) : at::empty({0}, x.options());
  AT_DISPATCH_FLOATING_TYPES(acc, "wavenet_layer_backward", [&] {
    backward_tiles<scalar_t>(p, part, dh_full, grad_x, grad_cond);
    if (two_pass) grad_x_from_buffer<scalar_t>(p, dh_full, grad_x);
  });
  auto reduced = [&](const Tensor& partial) { return partial.sum(0).to(dtype).contiguous(); };
  const Tensor grad_w_dilated = part.w_dilated.sum(0).permute({1, 2, 0}).to(dtype).contiguous();
  Tensor grad_w_cond = cond.has_value() ? reduced(part.w_cond) : at::empty({0}, x.options());
  return {grad_x.to(dtype),       grad_w_dilated,        reduced(part.b_dilated),
          reduced(part.w_res),    reduced(part.b_res),   reduced(part.w_skip),
          reduced(part.b_skip),   grad_cond.to(dtype),   grad_w_cond};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgen, CPU, m) {
  m.impl("wavenet_layer", &wavenet_layer);
  m.impl("wavenet_layer_backward", &wavenet_layer_backward);
}

}  // namespace fastgen::cpu
