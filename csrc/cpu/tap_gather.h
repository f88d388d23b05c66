// Column matrices ("im2col" restricted to a list of taps) for the CPU 2-D convolution kernels
// (masked_conv2d, gated_pixelcnn_layer).
//
// A convolution whose kernel keeps only some taps is described by the list of kept taps, each
// with the (dy, dx) offset of the input pixel it reads. For a tile of whole image rows, the kept
// taps of every channel are gathered into one column matrix
//     cols[c * T + t, p] = src[c, h(p) + sign * dy_t, w(p) + sign * dx_t]   (zero outside)
// so the convolution of the tile is a single GEMM with the weight laid out as (C_out, C * T).
// sign = -1 gives the mirrored gather of the input gradient (the correlation with the flipped
// taps). For one channel and tap, the tile's rows are one shifted block of the source plane,
// copied with a single memcpy.
#pragma once
#include <stdint.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace fastgen::cpu {

// Upper bound on the column matrix of one tile (elements): about 1 MiB of float32, so it stays
// in the core's L2 while the GEMM reads it.
constexpr int64_t kColsElements = 1 << 18;

// The kept taps of a kernel, in the order of the weight's flattened (KH * KW) tap axis.
struct TapPlan {
  std::vector<int64_t> index;   // ky * KW + kx
  std::vector<int64_t> dy, dx;  // offset of the input pixel read, dilation included
  int64_t centre = -1;          // masked_conv2d: position of the centre tap in the lists, -1 when dropped
  bool colour = false;          // masked_conv2d: the centre tap is masked per channel pair

  int64_t size() const { return static_cast<int64_t>(index.size()); }

  void add(int64_t tap_index, int64_t tap_dy, int64_t tap_dx) {
    index.push_back(tap_index);
    dy.push_back(tap_dy);
    dx.push_back(tap_dx);
  }
};

// Every tap of a rows x cols window whose top-left tap reads offset (dy0, dx0), in raster order
// (tap index ky * cols + kx): an unmasked convolution, or a causal one cut to its kept window.
inline TapPlan window_taps(int64_t rows, int64_t cols, int64_t dy0, int64_t dx0) {
  TapPlan plan;
  for (int64_t ky = 0; ky < rows; ++ky) {
    for (int64_t kx = 0; kx < cols; ++kx) plan.add(ky * cols + kx, dy0 + ky, dx0 + kx);
  }
  return plan;
}

// cols[(c * T + t), (h - h0) * W + w] = src[c, h + sign * dy_t, w + sign * dx_t], zero outside
// the image, for the C channels of `src` (planes of H rows of W, `plane_stride` elements apart;
// H * W when the planes are contiguous) and rows [h0, h1).
//
// The rows of a plane are contiguous, so for one (channel, tap) the rows inside the image are a
// single shifted block copy: one memcpy of the whole block, then the |dx| columns per row that
// the shift carried over from the neighbouring row are zeroed (thousands of short row copies
// would cost more than the data they move).
template <typename scalar_t>
void gather_taps(const scalar_t* src, int64_t C, int64_t H, int64_t W, const TapPlan& taps, int64_t sign,
                 int64_t h0, int64_t h1, scalar_t* cols, int64_t plane_stride = -1) {
  const int64_t T = taps.size(), P = (h1 - h0) * W;
  if (plane_stride < 0) plane_stride = H * W;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t dy = sign * taps.dy[t], dx = sign * taps.dx[t];
    // Output rows [r0, r1) read image rows [r0 + dy, r1 + dy); the others are zero.
    const int64_t r0 = std::clamp<int64_t>(-dy, h0, h1), r1 = std::clamp<int64_t>(H - dy, r0, h1);
    const int64_t shift = dx < 0 ? -dx : dx;
    for (int64_t c = 0; c < C; ++c) {
      scalar_t* out = cols + (c * T + t) * P;
      std::fill(out, out + (r0 - h0) * W, scalar_t(0));
      std::fill(out + (r1 - h0) * W, out + P, scalar_t(0));
      if (r1 == r0) continue;
      scalar_t* block = out + (r0 - h0) * W;
      const int64_t len = (r1 - r0) * W;
      if (shift >= W) {  // every read column is outside the image
        std::fill(block, block + len, scalar_t(0));
        continue;
      }
      // block[i] = plane[(r0 + dy) * W + i + dx] for the i that stay inside the plane's rows.
      const scalar_t* from = src + c * plane_stride + (r0 + dy) * W;
      if (dx >= 0) {
        std::memcpy(block, from + dx, sizeof(scalar_t) * (len - dx));
      } else {
        std::memcpy(block - dx, from, sizeof(scalar_t) * (len + dx));
      }
      if (shift == 0) continue;
      // Zero the columns whose source is outside the row: [W - dx, W) or [0, -dx) of every row.
      const int64_t z0 = dx > 0 ? W - dx : 0;
      for (scalar_t* row = block; row < block + len; row += W) std::fill(row + z0, row + z0 + shift, scalar_t(0));
    }
  }
}

// The transpose of gather_taps (sign = +1):
//     dst[c, h + dy_t, w + dx_t] += Z[c * T + t, (h - h0) * W + w]
// for the rows [h0, h1) of Z (C * T, (h1 - h0) * W), clipped to the image (dst: contiguous
// (C, H, W) planes). An input gradient as W^T @ grad_y followed by this scatter needs a column
// matrix of C_in * T rows instead of the C_out * T of the mirrored gather.
template <typename scalar_t>
void scatter_add_taps(const scalar_t* Z, int64_t C, int64_t H, int64_t W, const TapPlan& taps, int64_t h0,
                      int64_t h1, scalar_t* dst) {
  const int64_t T = taps.size(), P = (h1 - h0) * W;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t dy = taps.dy[t], dx = taps.dx[t];
    const int64_t r0 = std::clamp<int64_t>(-dy, h0, h1), r1 = std::clamp<int64_t>(H - dy, r0, h1);
    const int64_t w_lo = std::clamp<int64_t>(-dx, 0, W), w_hi = std::clamp<int64_t>(W - dx, w_lo, W);
    for (int64_t c = 0; c < C; ++c) {
      const scalar_t* z = Z + (c * T + t) * P + (r0 - h0) * W;
      scalar_t* out = dst + c * H * W + (r0 + dy) * W;
      for (int64_t h = r0; h < r1; ++h, z += W, out += W) {
        for (int64_t w = w_lo; w < w_hi; ++w) out[w + dx] += z[w];
      }
    }
  }
}

// Channels-last forms, pixels as rows: for the pixels p = (h - h0) * W + w of rows [h0, h1),
//     cols[p, t * C + c] = src[((h + sign * dy_t) * W + w + sign * dx_t) * pixel_stride + c]
// (zero outside the image), src pointing at the first of C channels of the image's first pixel,
// consecutive pixels pixel_stride elements apart. One tap of one pixel is a contiguous copy of
// its C channels; the convolution of the tile is cols (P, T * C) @ W (T * C, C_out), written
// straight into the channels-last output.
template <typename scalar_t>
void gather_taps_channels_last(const scalar_t* src, int64_t pixel_stride, int64_t C, int64_t H, int64_t W,
                               const TapPlan& taps, int64_t sign, int64_t h0, int64_t h1, scalar_t* cols) {
  const int64_t T = taps.size();
  for (int64_t h = h0; h < h1; ++h) {
    for (int64_t w = 0; w < W; ++w) {
      scalar_t* row = cols + ((h - h0) * W + w) * T * C;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t hs = h + sign * taps.dy[t], ws = w + sign * taps.dx[t];
        if (hs < 0 || hs >= H || ws < 0 || ws >= W) {
          std::fill(row + t * C, row + (t + 1) * C, scalar_t(0));
        } else {
          std::memcpy(row + t * C, src + (hs * W + ws) * pixel_stride, sizeof(scalar_t) * C);
        }
      }
    }
  }
}

// The transpose of gather_taps_channels_last (sign = +1), for an input gradient in the scatter form:
//     dst[((h + dy_t) * W + w + dx_t) * pixel_stride + c] += Z[p, t * C + c]
// for the pixels p of rows [h0, h1), clipped to the image.
template <typename scalar_t>
void scatter_add_taps_channels_last(const scalar_t* Z, int64_t pixel_stride, int64_t C, int64_t H, int64_t W,
                                    const TapPlan& taps, int64_t h0, int64_t h1, scalar_t* dst) {
  const int64_t T = taps.size();
  for (int64_t h = h0; h < h1; ++h) {
    for (int64_t w = 0; w < W; ++w) {
      const scalar_t* row = Z + ((h - h0) * W + w) * T * C;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t hd = h + taps.dy[t], wd = w + taps.dx[t];
        if (hd < 0 || hd >= H || wd < 0 || wd >= W) continue;
        scalar_t* out = dst + (hd * W + wd) * pixel_stride;
        const scalar_t* z = row + t * C;
        for (int64_t c = 0; c < C; ++c) out[c] += z[c];
      }
    }
  }
}

}  // namespace fastgen::cpu
