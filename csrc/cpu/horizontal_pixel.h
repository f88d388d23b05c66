// One pixel of one Gated PixelCNN layer's horizontal stack for one sample, shared by
// gated_pixelcnn_horizontal_step and pixelcnn_generate_row (see pixelcnn_step_cpu.cpp):
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

// Work vectors of one thread, sized for the widest layer it steps.
template <typename acc_t>
struct PixelScratch {
  std::vector<acc_t> window, h, z, cond, res;
  void fit(int64_t window_size, int64_t two_c, int64_t D) {
    if (static_cast<int64_t>(window.size()) < window_size) window.resize(window_size);
    if (static_cast<int64_t>(h.size()) < two_c) h.resize(two_c), z.resize(two_c), res.resize(two_c);
    if (static_cast<int64_t>(cond.size()) < D) cond.resize(D);
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

// out (C) for one sample: `link` read with stride link_stride, `cond` (D) may be null when D == 0.
// out may be input (a layer after the first stepping in place): each input[c] is read before
// out[c] is written.
template <typename scalar_t, typename acc_t>
void horizontal_pixel(const HorizontalWeights<acc_t>& w, scalar_t* state, const scalar_t* input, const scalar_t* link,
                      int64_t link_stride, const scalar_t* cond, PixelScratch<acc_t>& s, scalar_t* out) {
  const int64_t first = w.mask_b ? 0 : 1, used = w.T - first, two_c = 2 * w.C;
  s.fit(w.C_in * used, two_c, w.D);
  shift_into_window(state, w.C_in, w.T, input, first, used, s.window.data());
  for (int64_t o = 0; o < two_c; ++o) s.h[o] = static_cast<acc_t>(link[o * link_stride]);
  dot_block(w.w_window, s.window.data(), w.C_in * used, 1, two_c, w.C_in * used, w.b_h, true, s.h.data(), two_c);
  if (w.w_cond != nullptr) {
    for (int64_t d = 0; d < w.D; ++d) s.cond[d] = static_cast<acc_t>(cond[d]);
    dot_block(w.w_cond, s.cond.data(), w.D, 1, two_c, w.D, static_cast<const acc_t*>(nullptr), true, s.h.data(),
              two_c);
  }
  for (int64_t j = 0; j < w.C; ++j) s.z[j] = tanh_acc(s.h[j]) * sigmoid_acc(s.h[w.C + j]);
  dot_block(w.w_res, s.z.data(), w.C, 1, w.C, w.C, w.b_res, false, s.res.data(), w.C);
  for (int64_t c = 0; c < w.C; ++c) {
    const acc_t skip = w.mask_b ? static_cast<acc_t>(input[c]) : acc_t(0);
    out[c] = static_cast<scalar_t>(s.res[c] + skip);
  }
}

}  // namespace fastgen::cpu
