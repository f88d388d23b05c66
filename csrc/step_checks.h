// Argument checks of the sampling step ops (wavenet_layer_step, gated_pixelcnn_vertical_step,
// gated_pixelcnn_horizontal_step), shared by the CPU and CUDA entry points. The Python
// wrappers check the same with friendlier messages; these keep a direct torch.ops call from
// reading out of bounds.
#pragma once
#include <ATen/MemoryOverlap.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>
#include <string>

#include "conv_checks.h"

namespace fastgen {

// `t` has rank `rank` and exactly `shape`, and x's dtype and device.
inline void check_step_shape(const at::Tensor& t, const char* name, at::IntArrayRef shape, const at::Tensor& x) {
  check_like_x(t, name, x);
  TORCH_CHECK(t.sizes() == shape, "fastgen: ", name, " must have shape ", shape, ", got ", t.sizes());
}

inline void check_step_state(const at::Tensor& state, at::IntArrayRef shape, const at::Tensor& x) {
  check_step_shape(state, "state", shape, x);
  TORCH_CHECK(state.is_contiguous(), "fastgen: state must be contiguous (it is updated in place)");
}

// `t` (if given) is read while state is updated in place: they must not share memory, or the
// result would depend on the order the kernel reads and writes.
inline void check_apart_from_state(const std::optional<at::Tensor>& t, const char* name, const at::Tensor& state) {
  if (!t.has_value() || t->numel() == 0 || state.numel() == 0 || !t->is_alias_of(state)) return;
  TORCH_CHECK(at::get_overlap_status(*t, state) == at::MemOverlapStatus::No, "fastgen: ", name,
              " must not share memory with state (state is updated in place while ", name, " is read)");
}

inline void check_step_cond(const std::optional<at::Tensor>& cond, const std::optional<at::Tensor>& w_cond,
                            const char* w_name, int64_t n, int64_t c_out, const at::Tensor& x) {
  TORCH_CHECK(cond.has_value() == w_cond.has_value(), "fastgen: cond and ", w_name,
              " must be given together or both be None");
  if (!cond.has_value()) return;
  TORCH_CHECK(cond->dim() == 2 && cond->size(0) == n, "fastgen: cond must have shape (", n, ", C_cond), got ",
              cond->sizes());
  check_like_x(*cond, "cond", x);
  check_step_shape(*w_cond, w_name, {c_out, cond->size(1)}, x);
}

// x (N, C_res); state (N, dilation * (K - 1), C_res) contiguous; position a 0-dim int64 tensor
// (on the CPU for the CPU kernel); w_dilated (C_gate, C_res, K); w_res (C_res, C_gate / 2);
// w_skip (C_skip, C_gate / 2); biases (C_out,) or None; cond (N, C_cond) with w_cond (C_gate, C_cond).
inline void check_wavenet_layer_step_inputs(const at::Tensor& x, const at::Tensor& state, const at::Tensor& position,
                                            const at::Tensor& w_dilated, const std::optional<at::Tensor>& b_dilated,
                                            const at::Tensor& w_res, const std::optional<at::Tensor>& b_res,
                                            const at::Tensor& w_skip, const std::optional<at::Tensor>& b_skip,
                                            int64_t dilation, const std::optional<at::Tensor>& cond,
                                            const std::optional<at::Tensor>& w_cond) {
  check_conv_tensor(x, "x", "(N, C_res)", 2);
  TORCH_CHECK(w_dilated.dim() == 3, "fastgen: w_dilated must be (C_gate, C_res, K), got ", w_dilated.sizes());
  check_like_x(w_dilated, "w_dilated", x);
  const int64_t n = x.size(0), c_res = x.size(1), c_gate = w_dilated.size(0), k = w_dilated.size(2);
  TORCH_CHECK(w_dilated.size(1) == c_res && c_gate > 0 && c_gate % 2 == 0 && k >= 1,
              "fastgen: w_dilated must be (C_gate even, C_res, K >= 1), got ", w_dilated.sizes());
  check_dilation(dilation, k - 1, "(K - 1)");
  check_step_state(state, {n, dilation * (k - 1), c_res}, x);
  TORCH_CHECK(position.dim() == 0 && position.scalar_type() == at::kLong,
              "fastgen: position must be a 0-dim int64 tensor, got ", position.scalar_type(), " ", position.sizes());
  check_wavenet_bias(b_dilated, "b_dilated", c_gate, x);
  check_step_shape(w_res, "w_res", {c_res, c_gate / 2}, x);
  check_wavenet_bias(b_res, "b_res", c_res, x);
  TORCH_CHECK(w_skip.dim() == 2 && w_skip.size(1) == c_gate / 2, "fastgen: w_skip must be (C_skip, ", c_gate / 2,
              "), got ", w_skip.sizes());
  check_like_x(w_skip, "w_skip", x);
  check_wavenet_bias(b_skip, "b_skip", w_skip.size(0), x);
  check_step_cond(cond, w_cond, "w_cond", n, c_gate, x);
  check_apart_from_state(x, "x", state);
  check_apart_from_state(cond, "cond", state);
}

// new_row (N, C_in, W); state (N, C_in, n / 2 + 1, W) contiguous; w_v (2C, C_in, n / 2 + 1, n)
// with n odd; w_v2h (2C, 2C); biases (2C,) or None; cond (N, D) with w_cond_v (2C, D).
inline void check_pixelcnn_vertical_step_inputs(const at::Tensor& state, const at::Tensor& new_row,
                                                const at::Tensor& w_v, const std::optional<at::Tensor>& b_v,
                                                const at::Tensor& w_v2h, const std::optional<at::Tensor>& b_v2h,
                                                const std::optional<at::Tensor>& cond,
                                                const std::optional<at::Tensor>& w_cond_v) {
  check_conv_tensor(new_row, "new_row", "(N, C_in, W)", 3);
  TORCH_CHECK(w_v.dim() == 4, "fastgen: w_v must be (2C, C_in, n / 2 + 1, n), got ", w_v.sizes());
  check_like_x(w_v, "w_v", new_row);
  const int64_t n = new_row.size(0), c_in = new_row.size(1), width = new_row.size(2);
  const int64_t two_c = w_v.size(0), taps = w_v.size(3);
  TORCH_CHECK(two_c > 0 && two_c % 2 == 0 && taps % 2 == 1 && w_v.size(1) == c_in && w_v.size(2) == taps / 2 + 1,
              "fastgen: w_v must be (2C even, C_in, n / 2 + 1, n odd), got ", w_v.sizes());
  check_step_state(state, {n, c_in, taps / 2 + 1, width}, new_row);
  check_wavenet_bias(b_v, "b_v", two_c, new_row);
  check_step_shape(w_v2h, "w_v2h", {two_c, two_c}, new_row);
  check_wavenet_bias(b_v2h, "b_v2h", two_c, new_row);
  check_step_cond(cond, w_cond_v, "w_cond_v", n, two_c, new_row);
  check_apart_from_state(new_row, "new_row", state);
  check_apart_from_state(cond, "cond", state);
}

// new_input (N, C_in); state (N, C_in, k + 1) contiguous; link (N, 2C); w_h (2C, C_in, 1, k + 1);
// w_res (C, C); biases or None; mask_type "A" or "B" (C_in == C); cond (N, D) with w_cond_h (2C, D).
inline void check_pixelcnn_horizontal_step_inputs(const at::Tensor& state, const at::Tensor& new_input,
                                                  const at::Tensor& link, const at::Tensor& w_h,
                                                  const std::optional<at::Tensor>& b_h, const at::Tensor& w_res,
                                                  const std::optional<at::Tensor>& b_res, const std::string& mask_type,
                                                  const std::optional<at::Tensor>& cond,
                                                  const std::optional<at::Tensor>& w_cond_h) {
  check_conv_tensor(new_input, "new_input", "(N, C_in)", 2);
  TORCH_CHECK(mask_type == "A" || mask_type == "B", "fastgen: mask_type must be \"A\" or \"B\", got \"",
              mask_type, "\"");
  TORCH_CHECK(w_h.dim() == 4, "fastgen: w_h must be (2C, C_in, 1, k + 1), got ", w_h.sizes());
  check_like_x(w_h, "w_h", new_input);
  const int64_t n = new_input.size(0), c_in = new_input.size(1), two_c = w_h.size(0), taps = w_h.size(3);
  TORCH_CHECK(two_c > 0 && two_c % 2 == 0 && w_h.size(1) == c_in && w_h.size(2) == 1 && taps >= 1,
              "fastgen: w_h must be (2C even, C_in, 1, k + 1), got ", w_h.sizes());
  check_step_state(state, {n, c_in, taps}, new_input);
  check_step_shape(link, "link", {n, two_c}, new_input);
  check_wavenet_bias(b_h, "b_h", two_c, new_input);
  check_step_shape(w_res, "w_res", {two_c / 2, two_c / 2}, new_input);
  check_wavenet_bias(b_res, "b_res", two_c / 2, new_input);
  TORCH_CHECK(mask_type == "A" || c_in == two_c / 2, "fastgen: mask_type \"B\" needs C_in == C, got C_in ", c_in,
              " and C ", two_c / 2);
  check_step_cond(cond, w_cond_h, "w_cond_h", n, two_c, new_input);
  check_apart_from_state(new_input, "new_input", state);
  check_apart_from_state(link, "link", state);
  check_apart_from_state(cond, "cond", state);
}

}  // namespace fastgen
