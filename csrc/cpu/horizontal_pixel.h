// One pixel of one Gated PixelCNN layer's horizontal stack for a block of samples, shared by
// gated_pixelcnn_horizontal_step and pixelcnn_generate_row (see pixelcnn_step_cpu.cpp), per sample:
//   state (C_in x T, row-major): the row's last T horizontal inputs; shift left, append input
//   h_pre = b_h + link + W_window @ window (+ w_cond @ cond);  z = tanh(h_pre[:C]) * sigmoid(h_pre[C:])
//   out = w_res @ z + b_res (+ input for mask "B")
// The window is state[:, 0:T] (mask "B") or state[:, 1:T] (mask "A"), flattened as (c, t).
#pragma once
#include <stdint.h>

#include <vector>

#include "gate_math.h"
#include "matvec.h"

namespace fastgen::cpu {

// A layer's weights for the pixel step, in the accumulation dtype.
template <typename acc_t>
struct HorizontalWeights {
  const acc_t* w_window;  // (2C, C_in * used), used = T (mask "B") or T - 1 (mask "A")
  const acc_t* b_h;       // (2C) or null
  const acc_t* w_res;     // (C, C)
  const acc_t* b_res;     // (C) or null
  const acc_t* w_cond;    // (2C, D) or null
  int64_t C_in, T, C, D;
  bool mask_b;
};

// Work vectors of one thread, sized for the widest layer and block it steps.
template <typename acc_t>
struct PixelScratch {
  std::vector<acc_t> window, h, z, cond, res;
  void fit(int64_t B, int64_t window_size, int64_t two_c, int64_t D) {
    auto at_least = [](std::vector<acc_t>& v, int64_t size) {
      if (static_cast<int64_t>(v.size()) < size) v.resize(size);
    };
    at_least(window, B * window_size), at_least(h, B * two_c), at_least(z, B * two_c), at_least(res, B * two_c);
    at_least(cond, B * D);
  }
};

// The row cache of one sample at a new pixel: state (C_in x T) shifts left and takes input (C_in)
// last; window (C_in x used, row-major) gets each channel's taps first .. first + used - 1.
template <typename scalar_t, typename acc_t>
inline void shift_into_window(scalar_t* state, int64_t C_in, int64_t T, const scalar_t* input, int64_t first,
                              int64_t used, acc_t* window) {
  for (int64_t c = 0; c < C_in; ++c) {
    scalar_t* row = state + c * T;
    for (int64_t t = 0; t + 1 < T; ++t) row[t] = row[t + 1];
    row[T - 1] = input[c];
    for (int64_t t = 0; t < used; ++t) window[c * used + t] = static_cast<acc_t>(row[first + t]);
  }
}

// One pixel for the B samples of a block, each layer product one dot_block over the block (a
// weight row read once for the B samples; each sample's sums in the same fixed order whatever B
// is): state (B, C_in, T), input (B, C_in), sample b's link at link + b * link_n with channels
// link_o apart, cond (B, D) (null when D == 0), out (B, C). out may be input (a layer after the
// first stepping in place): each input element is read before the same element of out is written.
template <typename scalar_t, typename acc_t>
void horizontal_pixels(const HorizontalWeights<acc_t>& w, int64_t B, scalar_t* state, const scalar_t* input,
                       const scalar_t* link, int64_t link_n, int64_t link_o, const scalar_t* cond,
                       PixelScratch<acc_t>& s, scalar_t* out) {
  const int64_t first = w.mask_b ? 0 : 1, used = w.T - first, K = w.C_in * used, two_c = 2 * w.C;
  s.fit(B, K, two_c, w.D);
  for (int64_t b = 0; b < B; ++b) {
    shift_into_window(state + b * w.C_in * w.T, w.C_in, w.T, input + b * w.C_in, first, used, s.window.data() + b * K);
    for (int64_t o = 0; o < two_c; ++o) s.h[b * two_c + o] = static_cast<acc_t>(link[b * link_n + o * link_o]);
    if (w.w_cond != nullptr)
      for (int64_t d = 0; d < w.D; ++d) s.cond[b * w.D + d] = static_cast<acc_t>(cond[b * w.D + d]);
  }
  dot_block(w.w_window, s.window.data(), K, B, two_c, K, w.b_h, true, s.h.data(), two_c);
  if (w.w_cond != nullptr)
    dot_block(w.w_cond, s.cond.data(), w.D, B, two_c, w.D, static_cast<const acc_t*>(nullptr), true, s.h.data(),
              two_c);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < w.C; ++j)
      s.z[b * w.C + j] = tanh_acc(s.h[b * two_c + j]) * sigmoid_acc(s.h[b * two_c + w.C + j]);
  dot_block(w.w_res, s.z.data(), w.C, B, w.C, w.C, w.b_res, false, s.res.data(), w.C);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < w.C; ++c) {
      const acc_t skip = w.mask_b ? static_cast<acc_t>(input[b * w.C_in + c]) : acc_t(0);
      out[b * w.C + c] = static_cast<scalar_t>(s.res[b * w.C + c] + skip);
    }
}

}  // namespace fastgen::cpu
