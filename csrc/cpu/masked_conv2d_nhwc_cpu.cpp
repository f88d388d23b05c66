// Channels-last CPU kernels of masked_conv2d (see masked_conv2d_nhwc.h; the NCHW kernels and
// the scheme are in masked_conv2d_cpu.cpp). Pixels are the rows of every matrix here:
//   forward:     y_tile (P, C_out)   = cols (P, T * C_in) @ W_tc (T * C_in, C_out)
//   grad_x:      gather form  gx_tile (P, C_in) = cols(grad_y, mirrored) (P, T * C_out) @ W_to (T * C_out, C_in),
//                scatter form (C_in < C_out) Z (P, T * C_in) = gy_tile @ W_tc^T, added at the taps' offsets
//   grad_weight: (C_out, T * C_in) += gy_tile^T @ cols, summed in a fixed number of partials
// where T is the number of kept taps and each product of a group uses that group's channels.
#include "masked_conv2d_nhwc.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>

#include <algorithm>

namespace fastgen::cpu {
namespace {

using at::Tensor;

// (N, C, H, W) channels-last as its (N, H, W, C) contiguous view.
Tensor pixels(const Tensor& t) { return t.permute({0, 2, 3, 1}); }

// Pixels of the rows of `tile` of image n, channels [c0, c0 + C): a (P, C) matrix view.
Tensor tile_pixels(const Tensor& t_pixels, int64_t n, int64_t c0, int64_t C, const Problem& pb, int64_t tile) {
  return t_pixels.select(0, n).slice(0, pb.row0(tile), pb.row1(tile)).flatten(0, 1).slice(1, c0, c0 + C);
}

// The (P, T * C) columns of channels [c0, c0 + C) of image n of `src` (channels-last) for one tile.
Tensor tile_columns(const Tensor& src, int64_t n, int64_t c0, int64_t C, const Problem& pb, int64_t sign,
                    int64_t tile) {
  const int64_t h0 = pb.row0(tile), h1 = pb.row1(tile), C_all = src.size(1);
  Tensor cols = at::empty({(h1 - h0) * pb.W, pb.T() * C}, src.options());
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "masked_conv2d_gather_channels_last", [&] {
    const scalar_t* image = src.const_data_ptr<scalar_t>() + n * pb.H * pb.W * C_all + c0;
    gather_taps_channels_last<scalar_t>(image, C_all, C, pb.H, pb.W, pb.taps, sign, h0, h1,
                                        cols.mutable_data_ptr<scalar_t>());
  });
  return cols;
}

// The kept weight (groups, Cg_out, Cg_in * T), tap index fastest, as (groups, T * Cg_in, Cg_out):
// the right-hand matrix of the forward products.
Tensor taps_by_input(const Tensor& w_kept, const Problem& pb) {
  return w_kept.reshape({pb.groups, pb.Cg_out, pb.Cg_in, pb.T()})
      .permute({0, 3, 2, 1})
      .reshape({pb.groups, pb.T() * pb.Cg_in, pb.Cg_out})
      .contiguous();
}

}  // namespace

Tensor masked_conv2d_forward_channels_last(const Tensor& x, const Tensor& w_kept, const std::optional<Tensor>& bias,
                                           const Problem& pb) {
  Tensor y = at::empty({pb.N, pb.C_out, pb.H, pb.W}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (y.numel() == 0) return y;
  const Tensor y_pixels = pixels(y), w = taps_by_input(w_kept, pb);
  const bool no_taps = pb.T() == 0 || pb.Cg_in == 0;
  pb.for_each_tile([&](int64_t n, int64_t tile, int64_t g) {
    Tensor y_tile = tile_pixels(y_pixels, n, g * pb.Cg_out, pb.Cg_out, pb, tile);
    if (bias.has_value()) {
      y_tile.copy_(bias->slice(0, g * pb.Cg_out, (g + 1) * pb.Cg_out).unsqueeze(0).expand_as(y_tile));
    } else {
      y_tile.zero_();
    }
    if (!no_taps) y_tile.addmm_(tile_columns(x, n, g * pb.Cg_in, pb.Cg_in, pb, +1, tile), w.select(0, g));
  });
  return y;
}

Tensor masked_conv2d_grad_input_channels_last(const Tensor& gy, const Tensor& w_kept, const Problem& pb) {
  // (at::zeros has no memory format: empty channels-last, then zeroed)
  Tensor gx = at::empty({pb.N, pb.C_in, pb.H, pb.W}, gy.options().memory_format(at::MemoryFormat::ChannelsLast)).zero_();
  if (gx.numel() == 0 || pb.T() == 0 || pb.Cg_out == 0) return gx;
  const Tensor gx_pixels = pixels(gx), gy_pixels = pixels(gy);
  if (pb.Cg_in < pb.Cg_out) {  // scatter form: C_in * T columns instead of C_out * T
    const Tensor w = taps_by_input(w_kept, pb);
    // Tiles of one image add into overlapping pixels: one image per work item, tiles in order.
    at::parallel_for(0, pb.N, 1, [&](int64_t begin, int64_t end) {
      BelowAutograd below_in_worker;
      for (int64_t n = begin; n < end; ++n) {
        for (int64_t tile = 0; tile < pb.tiles; ++tile) {
          for (int64_t g = 0; g < pb.groups; ++g) {
            const Tensor Z = at::mm(tile_pixels(gy_pixels, n, g * pb.Cg_out, pb.Cg_out, pb, tile), w.select(0, g).t());
            AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "masked_conv2d_scatter_channels_last", [&] {
              scalar_t* image = gx.mutable_data_ptr<scalar_t>() + n * pb.H * pb.W * pb.C_in + g * pb.Cg_in;
              scatter_add_taps_channels_last<scalar_t>(Z.const_data_ptr<scalar_t>(), pb.C_in, pb.Cg_in, pb.H, pb.W,
                                                       pb.taps, pb.row0(tile), pb.row1(tile), image);
            });
          }
        }
      }
    });
    return gx;
  }
  // Gather form: the mirrored taps of grad_y, (groups, T * Cg_out, Cg_in) weight; tiles own their rows.
  const Tensor w = w_kept.reshape({pb.groups, pb.Cg_out, pb.Cg_in, pb.T()})
                       .permute({0, 3, 1, 2})
                       .reshape({pb.groups, pb.T() * pb.Cg_out, pb.Cg_in})
                       .contiguous();
  pb.for_each_tile([&](int64_t n, int64_t tile, int64_t g) {
    tile_pixels(gx_pixels, n, g * pb.Cg_in, pb.Cg_in, pb, tile)
        .addmm_(tile_columns(gy, n, g * pb.Cg_out, pb.Cg_out, pb, -1, tile), w.select(0, g));
  });
  return gx;
}

Tensor masked_conv2d_grad_weight_channels_last(const Tensor& gy, const Tensor& x, const Problem& pb, int64_t KH,
                                               int64_t KW) {
  const bool no_work = pb.T() == 0 || pb.Cg_in == 0 || pb.Cg_out == 0;
  const Tensor gy_pixels = pixels(gy);
  const Tensor kept = pb.sum_over_tiles({pb.groups, pb.Cg_out, pb.T() * pb.Cg_in}, gy.options(),
                                        [&](Tensor partial, int64_t n, int64_t tile, int64_t g) {
    if (no_work) return;
    partial.select(0, g).addmm_(tile_pixels(gy_pixels, n, g * pb.Cg_out, pb.Cg_out, pb, tile).t(),
                                tile_columns(x, n, g * pb.Cg_in, pb.Cg_in, pb, +1, tile));
  });
  // (C_out, T, Cg_in) -> (C_out, Cg_in, T), the layout of the NCHW kernels' kept gradient.
  return pb.full_weight_grad(kept.reshape({pb.C_out, pb.T(), pb.Cg_in}).permute({0, 2, 1}).contiguous(), KH, KW);
}

}  // namespace fastgen::cpu
