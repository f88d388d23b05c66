// CPU kernels of masked_conv2d (PixelCNN masked convolution, "same" size) and its backward.
//
// Only the taps the mask keeps are touched. They are listed once (TapPlan); for a tile of
// whole output rows the kept taps of every input channel are gathered into a column matrix
//     cols[c * T + t, p] = x[n, c, h(p) + dy_t, w(p) + dx_t]   (zero outside the image)
// with T = number of kept taps (5 of 9 for a 3x3 mask B, 24 of 49 for a 7x7 mask A), and the
// tile is one GEMM  y[n, :, tile] = W_kept (C_out, C_in * T) @ cols  (+ bias). Rows of the
// gather are contiguous row segments of x, copied with memcpy.
//
// Backward, with the same plan:
//   grad_x:      the correlation with the mirrored taps: gather grad_y at p - offset_t and
//                multiply by W_kept rearranged to (C_in, C_out * T) (each tile owns its rows of
//                grad_x); or, when C_in < C_out, multiply grad_y by W_kept^T first and add
//                the C_in * T rows of the product into grad_x at their offsets (less data).
//   grad_weight: grad_y_tile (C_out, P) @ cols^T summed over tiles into a fixed number of
//                partials (deterministic, independent of the thread count), then scattered
//                into the kept taps; masked taps stay exactly zero.
//   grad_bias:   grad_y summed over (N, H, W).
// With color_channels > 1 the centre tap is kept for the channel pairs the colour mask allows:
// its weight (and its gradient) is multiplied by that 0/1 channel mask.
// float16/bfloat16 are computed in float32 (inputs upcast once, outputs rounded once).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <tuple>
#include <vector>

#include "../conv_checks.h"
#include "conv_common.h"
#include "masked_conv2d_nhwc.h"
#include "masked_conv_problem.h"
#include "tap_gather.h"

namespace fastgen::cpu {
namespace {

using at::Tensor;

// The columns of channels [c0, c0 + C) of image n of `src` (N, C_all, H, W) for one tile.
Tensor tile_columns(const Tensor& src, int64_t n, int64_t c0, int64_t C, const Problem& pb, int64_t sign,
                    int64_t tile) {
  const int64_t h0 = pb.row0(tile), h1 = pb.row1(tile);
  Tensor cols = at::empty({C * pb.T(), (h1 - h0) * pb.W}, src.options());
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "masked_conv2d_gather", [&] {
    const scalar_t* plane = src.const_data_ptr<scalar_t>() + (n * src.size(1) + c0) * pb.H * pb.W;
    gather_taps<scalar_t>(plane, C, pb.H, pb.W, pb.taps, sign, h0, h1, cols.mutable_data_ptr<scalar_t>());
  });
  return cols;
}

// Rows [h0, h1) of channels [c0, c0 + C) of image n of a contiguous (N, C_all, H, W) tensor, as
// a (C, (h1 - h0) * W) matrix view (row stride H * W).
Tensor tile_view(const Tensor& t, int64_t n, int64_t c0, int64_t C, const Problem& pb, int64_t tile) {
  return t.select(0, n).slice(0, c0, c0 + C).flatten(1).slice(1, pb.row0(tile) * pb.W, pb.row1(tile) * pb.W);
}

Tensor masked_conv2d(const Tensor& x_in, const Tensor& weight_in, const std::optional<Tensor>& bias,
                     c10::string_view mask_type, int64_t dilation, int64_t groups, int64_t color_channels) {
  check_masked_conv2d_inputs(x_in, weight_in, bias, mask_type, dilation, groups, color_channels, "cpu");
  const at::ScalarType dtype = x_in.scalar_type(), acc = acc_type(dtype);
  BelowAutograd below;
  const Problem pb(x_in, weight_in, mask_type, dilation, groups, color_channels, acc, /*forward_only=*/true);
  const Tensor w = pb.kept_weight(weight_in.to(acc));
  if (takes_channels_last(x_in)) {
    const std::optional<Tensor> b = bias.has_value() ? std::optional<Tensor>(bias->to(acc)) : std::nullopt;
    return masked_conv2d_forward_channels_last(x_in.to(acc).contiguous(at::MemoryFormat::ChannelsLast), w, b, pb)
        .to(dtype);
  }
  Tensor y = at::empty({pb.N, pb.C_out, pb.H, pb.W}, x_in.options().dtype(acc));
  if (y.numel() == 0) return y.to(dtype);
  const Tensor x = x_in.to(acc).contiguous();
  const std::optional<Tensor> b =
      bias.has_value() ? std::optional<Tensor>(bias->to(acc).reshape({pb.C_out, 1})) : std::nullopt;
  const bool no_taps = pb.T() == 0 || pb.Cg_in == 0;
  pb.for_each_tile([&](int64_t n, int64_t tile, int64_t g) {
    Tensor y_tile = tile_view(y, n, g * pb.Cg_out, pb.Cg_out, pb, tile);
    if (b.has_value()) {
      y_tile.copy_(b->slice(0, g * pb.Cg_out, (g + 1) * pb.Cg_out).expand_as(y_tile));
    } else {
      y_tile.zero_();
    }
    if (!no_taps) y_tile.addmm_(w.select(0, g), tile_columns(x, n, g * pb.Cg_in, pb.Cg_in, pb, +1, tile));
  });
  return acc == dtype ? y : y.to(dtype);
}

// Input gradient, gather form: per tile, W_kept^T (mirrored) @ the gathered taps of grad_y. Its
// column matrix has C_out * T rows; each tile owns its rows of gx, so tiles run in parallel.
Tensor grad_input_gather(const Tensor& gy, const Tensor& w_kept, const Problem& pb, Tensor& gx) {
  // (groups, Cg_out, Cg_in, T) -> (groups, Cg_in, Cg_out * T), matching the mirrored gather of gy.
  const Tensor wt = w_kept.reshape({pb.groups, pb.Cg_out, pb.Cg_in, pb.T()})
                        .permute({0, 2, 1, 3})
                        .reshape({pb.groups, pb.Cg_in, pb.Cg_out * pb.T()})
                        .contiguous();
  pb.for_each_tile([&](int64_t n, int64_t tile, int64_t g) {
    tile_view(gx, n, g * pb.Cg_in, pb.Cg_in, pb, tile)
        .addmm_(wt.select(0, g), tile_columns(gy, n, g * pb.Cg_out, pb.Cg_out, pb, -1, tile));
  });
  return gx;
}

// Input gradient, scatter form: per tile Z = W_kept^T (C_in * T, C_out) @ grad_y, then each row of
// Z is added into gx at its tap's offset. Z has C_in * T rows, so this is the cheaper form when
// C_in < C_out (a first layer reading 1 or 3 image channels). Tiles of one image write
// overlapping rows, so each image is one work item and its tiles run in order.
Tensor grad_input_scatter(const Tensor& gy, const Tensor& w_kept, const Problem& pb, Tensor& gx) {
  at::parallel_for(0, pb.N, 1, [&](int64_t begin, int64_t end) {
    BelowAutograd below_in_worker;
    for (int64_t n = begin; n < end; ++n) {
      for (int64_t tile = 0; tile < pb.tiles; ++tile) {
        for (int64_t g = 0; g < pb.groups; ++g) {
          const Tensor Z = at::mm(w_kept.select(0, g).t(), tile_view(gy, n, g * pb.Cg_out, pb.Cg_out, pb, tile));
          AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "masked_conv2d_scatter", [&] {
            scalar_t* plane = gx.mutable_data_ptr<scalar_t>() + (n * pb.C_in + g * pb.Cg_in) * pb.H * pb.W;
            scatter_add_taps<scalar_t>(Z.const_data_ptr<scalar_t>(), pb.Cg_in, pb.H, pb.W, pb.taps, pb.row0(tile),
                                   pb.row1(tile), plane);
          });
        }
      }
    }
  });
  return gx;
}

Tensor grad_input(const Tensor& gy, const Tensor& w_kept, const Problem& pb) {
  // gy (N, C_out, H, W) contiguous in acc; w_kept (groups, Cg_out, Cg_in * T).
  Tensor gx = at::zeros({pb.N, pb.C_in, pb.H, pb.W}, gy.options());
  if (gx.numel() == 0 || pb.T() == 0 || pb.Cg_out == 0) return gx;
  return pb.Cg_in < pb.Cg_out ? grad_input_scatter(gy, w_kept, pb, gx) : grad_input_gather(gy, w_kept, pb, gx);
}

Tensor grad_weight(const Tensor& gy, const Tensor& x, const Problem& pb, int64_t KH, int64_t KW) {
  // gy (N, C_out, H, W), x (N, C_in, H, W) contiguous in acc -> (C_out, Cg_in, KH, KW).
  const bool no_work = pb.T() == 0 || pb.Cg_in == 0 || pb.Cg_out == 0;
  const Tensor kept = pb.sum_over_tiles({pb.groups, pb.Cg_out, pb.Cg_in * pb.T()}, gy.options(),
                                        [&](Tensor partial, int64_t n, int64_t tile, int64_t g) {
    if (no_work) return;
    partial.select(0, g).addmm_(tile_view(gy, n, g * pb.Cg_out, pb.Cg_out, pb, tile),
                                tile_columns(x, n, g * pb.Cg_in, pb.Cg_in, pb, +1, tile).t());
  });
  return pb.full_weight_grad(kept.reshape({pb.C_out, pb.Cg_in, pb.T()}), KH, KW);
}

std::tuple<Tensor, Tensor, Tensor> masked_conv2d_backward(const Tensor& grad_y_in, const Tensor& x_in,
                                                          const Tensor& weight_in, c10::string_view mask_type,
                                                          int64_t dilation, int64_t groups, int64_t color_channels,
                                                          std::array<bool, 3> output_mask) {
  check_masked_conv2d_inputs(x_in, weight_in, std::nullopt, mask_type, dilation, groups, color_channels, "cpu");
  check_conv_grad(grad_y_in, x_in, {x_in.size(0), weight_in.size(0), x_in.size(2), x_in.size(3)});
  const at::ScalarType dtype = x_in.scalar_type(), acc = acc_type(dtype);
  BelowAutograd below;
  const Problem pb(x_in, weight_in, mask_type, dilation, groups, color_channels, acc);
  const bool channels_last = takes_channels_last(x_in);
  const auto layout = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const Tensor gy = grad_y_in.to(acc).contiguous(layout);
  // Gradients not asked for are empty tensors, each its own (outputs must not alias).
  Tensor gx = at::empty({0}, x_in.options()), gw = at::empty({0}, x_in.options()),
         gb = at::empty({0}, x_in.options());
  if (output_mask[0]) {
    const Tensor w_kept = pb.kept_weight(weight_in.to(acc));
    gx = (channels_last ? masked_conv2d_grad_input_channels_last(gy, w_kept, pb) : grad_input(gy, w_kept, pb)).to(dtype);
  }
  if (output_mask[1]) {
    const Tensor x = x_in.to(acc).contiguous(layout);
    const int64_t KH = weight_in.size(2), KW = weight_in.size(3);
    gw = (channels_last ? masked_conv2d_grad_weight_channels_last(gy, x, pb, KH, KW) : grad_weight(gy, x, pb, KH, KW))
             .to(dtype);
  }
  if (output_mask[2]) gb = gy.sum(at::IntArrayRef{0, 2, 3}).to(dtype);
  return {gx, gw, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgen, CPU, m) {
  m.impl("masked_conv2d", &masked_conv2d);
  m.impl("masked_conv2d_backward", &masked_conv2d_backward);
}

}  // namespace fastgen::cpu
