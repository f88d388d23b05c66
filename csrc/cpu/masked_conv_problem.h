// What the CPU masked_conv2d kernels (NCHW and channels-last) share about one call: the kept
// taps of the mask, the colour mask of the centre tap, the tiling in rows, and the weight laid
// out over the kept taps only.
#pragma once
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <c10/util/string_view.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "conv_common.h"
#include "tap_gather.h"

namespace fastgen::cpu {

// The kept taps of a KH x KW kernel in raster order (TapPlan, gather_taps: tap_gather.h).
inline TapPlan plan_taps(int64_t KH, int64_t KW, bool mask_b, int64_t dilation, int64_t color_channels) {
  const int64_t cy = KH / 2, cx = KW / 2;
  TapPlan plan;
  for (int64_t ky = 0; ky <= cy; ++ky) {
    for (int64_t kx = 0; kx < KW; ++kx) {
      if (ky == cy && kx > cx) break;  // the rest of the centre row comes after the centre
      const bool before = ky < cy || kx < cx;
      const bool centre = ky == cy && kx == cx;
      if (!before && !(centre && (mask_b || color_channels > 1))) continue;
      if (centre) {
        plan.centre = plan.size();
        plan.colour = color_channels > 1;
      }
      plan.index.push_back(ky * KW + kx);
      plan.dy.push_back((ky - cy) * dilation);
      plan.dx.push_back((kx - cx) * dilation);
    }
  }
  return plan;
}

// (C_out, C_in) 0/1 mask of the centre tap under RGB masking: output block o / (C_out / c) sees
// input blocks before it (mask A) or up to it (mask B).
inline at::Tensor colour_mask(int64_t C_out, int64_t C_in, int64_t color_channels, bool mask_b, const at::TensorOptions& opts) {
  const at::Tensor out_block = at::arange(C_out, opts.dtype(at::kLong)).div(C_out / color_channels, "floor");
  const at::Tensor in_block = at::arange(C_in, opts.dtype(at::kLong)).div(C_in / color_channels, "floor");
  const at::Tensor allowed = mask_b ? in_block.unsqueeze(0).le(out_block.unsqueeze(1))
                                : in_block.unsqueeze(0).lt(out_block.unsqueeze(1));
  return allowed.to(opts.dtype());
}

// Everything the three kernels share about one call.
struct Problem {
  int64_t N, C_in, C_out, H, W, groups, Cg_in, Cg_out;
  TapPlan taps;
  std::optional<at::Tensor> centre_mask;  // (C_out, C_in) when taps.colour
  int64_t rows_per_tile, tiles;

  // `forward_only`: tiles sized for the forward's column matrix (C_in * T rows) alone; the
  // backward also gathers grad_y (C_out * T rows), so with few input channels (a first layer)
  // the forward's tiles are much larger, and fewer.
  Problem(const at::Tensor& x, const at::Tensor& weight, c10::string_view mask_type, int64_t dilation, int64_t groups_,
          int64_t color_channels, at::ScalarType acc, bool forward_only = false)
      : N(x.size(0)), C_in(x.size(1)), C_out(weight.size(0)), H(x.size(2)), W(x.size(3)), groups(groups_),
        Cg_in(C_in / groups_), Cg_out(C_out / groups_),
        taps(plan_taps(weight.size(2), weight.size(3), mask_type == "B", dilation, color_channels)) {
    if (taps.colour) {
      centre_mask = colour_mask(C_out, C_in, color_channels, mask_type == "B", x.options().dtype(acc));
    }
    const int64_t per_row = std::max<int64_t>(1, (forward_only ? Cg_in : std::max(Cg_in, Cg_out)) * taps.size() * W);
    rows_per_tile = std::clamp<int64_t>(kColsElements / per_row, 1, std::max<int64_t>(H, 1));
    tiles = ceil_div(H, rows_per_tile);
  }

  int64_t T() const { return taps.size(); }
  int64_t row0(int64_t tile) const { return tile * rows_per_tile; }
  int64_t row1(int64_t tile) const { return std::min(H, (tile + 1) * rows_per_tile); }

  // (C_out, C_in / groups, KH, KW) in acc -> (groups, C_out / groups, C_in / groups * T), the
  // kept taps only (colour mask applied to the centre).
  at::Tensor kept_weight(const at::Tensor& w) const {
    const at::Tensor index = at::tensor(taps.index, w.options().dtype(at::kLong));
    at::Tensor kept = w.reshape({C_out, Cg_in, w.size(2) * w.size(3)}).index_select(2, index);
    if (taps.colour) kept.select(2, taps.centre).mul_(*centre_mask);
    return kept.reshape({groups, Cg_out, Cg_in * T()}).contiguous();
  }

  // fn(n, tile, g) for every image n, tile of rows and group g; images and tiles run in
  // parallel (each owns its rows of the output), groups in order.
  template <typename Fn>
  void for_each_tile(Fn&& fn) const {
    at::parallel_for(0, N * tiles, 1, [&](int64_t begin, int64_t end) {
      BelowAutograd below_in_worker;
      for (int64_t item = begin; item < end; ++item) {
        for (int64_t g = 0; g < groups; ++g) fn(item / tiles, item % tiles, g);
      }
    });
  }

  // A weight-sized sum over every (image, tile, group): fn(partial, n, tile, g) adds an item's
  // share into `partial` (zeros of `shape` at first). Items are summed in a fixed number of
  // partials over fixed item ranges, so the result does not depend on the thread count.
  template <typename Fn>
  at::Tensor sum_over_tiles(at::IntArrayRef shape, const at::TensorOptions& options, Fn&& fn) const {
    const int64_t items = N * tiles;
    const int64_t parts = std::max<int64_t>(1, std::min(items, kWeightGroups));
    std::vector<int64_t> sizes{parts};
    sizes.insert(sizes.end(), shape.begin(), shape.end());
    at::Tensor partials = at::zeros(sizes, options);
    at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
      BelowAutograd below_in_worker;
      for (int64_t part = begin; part < end; ++part) {
        for (int64_t item = part * items / parts; item < (part + 1) * items / parts; ++item) {
          for (int64_t g = 0; g < groups; ++g) fn(partials.select(0, part), item / tiles, item % tiles, g);
        }
      }
    });
    return partials.sum(0);
  }

  // The gradient of the kept taps (C_out, C_in / groups, T) spread into the full kernel
  // (C_out, C_in / groups, KH, KW): masked taps exactly zero, colour mask applied to the centre.
  at::Tensor full_weight_grad(at::Tensor kept, int64_t KH, int64_t KW) const {
    if (taps.colour) kept.select(2, taps.centre).mul_(*centre_mask);
    at::Tensor gw = at::zeros({C_out, Cg_in, KH * KW}, kept.options());
    if (T() > 0) gw.index_copy_(2, at::tensor(taps.index, kept.options().dtype(at::kLong)), kept);
    return gw.reshape({C_out, Cg_in, KH, KW});
  }
};

}  // namespace fastgen::cpu
