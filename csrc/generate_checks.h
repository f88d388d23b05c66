// Argument checks of the whole-model sampling ops (wavenet_generate, pixelcnn_generate_row).
// They take a model as lists of per-layer tensors; each is checked against the shapes the
// kernels index with, and named with its list index (b_res[3]), so that a direct
// torch.ops.fastgen call never reads past a mis-shaped weight. The Python wrappers
// (fastgen/ops/_generate_checks.py) check the same first.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/core/List.h>
#include <c10/util/Exception.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "conv_checks.h"
#include "step_checks.h"

namespace fastgen {

inline std::string nth(const char* name, int64_t index) {
  return std::string(name) + "[" + std::to_string(index) + "]";
}

// `t` must have `like`'s dtype and device and exactly `shape`.
inline void check_model_tensor(const at::Tensor& t, const std::string& name, at::IntArrayRef shape,
                               const at::Tensor& like, const char* like_name) {
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), "fastgen: ", name, " must have the dtype of ", like_name, " (",
              like.scalar_type(), "), got ", t.scalar_type());
  TORCH_CHECK(t.device() == like.device(), "fastgen: ", name, " must be on the device of ", like_name, " (",
              like.device(), "), got ", t.device());
  TORCH_CHECK(t.sizes() == shape, "fastgen: ", name, " must have shape ", shape, ", got ", t.sizes());
}

inline void check_model_bias(const std::optional<at::Tensor>& bias, const std::string& name, int64_t size,
                             const at::Tensor& like, const char* like_name) {
  if (bias.has_value()) check_model_tensor(*bias, name, {size}, like, like_name);
}

inline void check_list_lengths(size_t layers, const std::vector<std::pair<const char*, size_t>>& lists) {
  for (const auto& [name, size] : lists) {
    TORCH_CHECK(size == layers, "fastgen: ", name, " must have one entry per layer (", layers, "), got ", size);
  }
}

// See fastgen.ops.wavenet_generate: states[l] (N, d_l (K - 1), R) contiguous, first_input (N, R),
// uniforms (N, T), embedding (levels, R), w_dilated[l] (C_gate, R, K), w_res[l] (R, C_gate / 2),
// w_skip[l] (S, C_gate / 2), w_cond[l] (C_gate, C_cond) with cond (N, C_cond, T), w_hidden (H, S),
// w_out (levels, H), biases (C_out,) or None; start + T below 2**62.
inline void check_wavenet_generate_inputs(
    at::TensorList states, const at::Tensor& first_input, const at::Tensor& uniforms, const at::Tensor& embedding,
    at::TensorList w_dilated, const c10::List<std::optional<at::Tensor>>& b_dilated, at::TensorList w_res,
    const c10::List<std::optional<at::Tensor>>& b_res, at::TensorList w_skip,
    const c10::List<std::optional<at::Tensor>>& b_skip, const c10::List<std::optional<at::Tensor>>& w_cond,
    at::IntArrayRef dilations, const at::Tensor& w_hidden, const std::optional<at::Tensor>& b_hidden,
    const at::Tensor& w_out, const std::optional<at::Tensor>& b_out, const std::optional<at::Tensor>& cond,
    int64_t start, const char* device_type) {
  const auto layers = static_cast<int64_t>(states.size());
  TORCH_CHECK(layers >= 1, "fastgen: states must have one ring buffer per layer (at least one)");
  check_list_lengths(states.size(), {{"w_dilated", w_dilated.size()}, {"b_dilated", b_dilated.size()},
                              {"w_res", w_res.size()}, {"b_res", b_res.size()}, {"w_skip", w_skip.size()},
                              {"b_skip", b_skip.size()}, {"w_cond", w_cond.size()},
                              {"dilations", dilations.size()}});
  check_conv_tensor(first_input, "first_input", "(N, R)", 2);
  TORCH_CHECK(first_input.device().type() == c10::Device(device_type).type(), "fastgen: first_input must be a ",
              device_type, " tensor here, got ", first_input.device());
  const int64_t n = first_input.size(0), r = first_input.size(1);
  check_conv_tensor(uniforms, "uniforms", "(N, T)", 2);
  const int64_t steps = uniforms.size(1);
  check_model_tensor(uniforms, "uniforms", {n, steps}, first_input, "first_input");
  TORCH_CHECK(start >= 0 && start < kMaxReach - steps, "fastgen: start must be >= 0 with start + T below 2**62, got ",
              "start ", start, " and T = ", steps);
  TORCH_CHECK(w_dilated[0].dim() == 3, "fastgen: w_dilated[0] must be (C_gate, R, K), got ", w_dilated[0].sizes());
  const int64_t c_gate = w_dilated[0].size(0), k = w_dilated[0].size(2);
  TORCH_CHECK(c_gate > 0 && c_gate % 2 == 0 && k >= 1, "fastgen: w_dilated[0] must be (C_gate even, R, K >= 1), got ",
              w_dilated[0].sizes());
  TORCH_CHECK(w_skip[0].dim() == 2, "fastgen: w_skip[0] must be (C_skip, C_gate / 2), got ", w_skip[0].sizes());
  TORCH_CHECK(w_hidden.dim() == 2, "fastgen: w_hidden must be (H, C_skip), got ", w_hidden.sizes());
  TORCH_CHECK(w_out.dim() == 2 && w_out.size(0) >= 1, "fastgen: w_out must be (levels >= 1, H), got ", w_out.sizes());
  const int64_t skip = w_skip[0].size(0), levels = w_out.size(0), hidden = w_hidden.size(0);
  int64_t c_cond = 0;
  if (cond.has_value()) {
    TORCH_CHECK(cond->dim() == 3, "fastgen: cond must be (N, C_cond, T), got ", cond->sizes());
    c_cond = cond->size(1);
    check_model_tensor(*cond, "cond", {n, c_cond, steps}, first_input, "first_input");
  }
  for (int64_t l = 0; l < layers; ++l) {
    check_model_tensor(w_dilated[l], nth("w_dilated", l), {c_gate, r, k}, first_input, "first_input");
    check_dilation(dilations[l], k - 1, "(K - 1)", nth("dilations", l).c_str());
    check_model_tensor(states[l], nth("states", l), {n, dilations[l] * (k - 1), r}, first_input, "first_input");
    TORCH_CHECK(states[l].is_contiguous(), "fastgen: states[", l, "] must be contiguous (it is updated in place)");
    check_apart_from_state(first_input, "first_input", states[l]);
    check_apart_from_state(cond, "cond", states[l]);
    check_model_bias(b_dilated.get(l), nth("b_dilated", l), c_gate, first_input, "first_input");
    check_model_tensor(w_res[l], nth("w_res", l), {r, c_gate / 2}, first_input, "first_input");
    check_model_bias(b_res.get(l), nth("b_res", l), r, first_input, "first_input");
    check_model_tensor(w_skip[l], nth("w_skip", l), {skip, c_gate / 2}, first_input, "first_input");
    check_model_bias(b_skip.get(l), nth("b_skip", l), skip, first_input, "first_input");
    const std::optional<at::Tensor> projection = w_cond.get(l);
    TORCH_CHECK(projection.has_value() == cond.has_value(), "fastgen: w_cond[", l,
                "] must be given exactly when cond is");
    if (projection.has_value()) {
      check_model_tensor(*projection, nth("w_cond", l), {c_gate, c_cond}, first_input, "first_input");
    }
  }
  check_model_tensor(w_hidden, "w_hidden", {hidden, skip}, first_input, "first_input");
  check_model_bias(b_hidden, "b_hidden", hidden, first_input, "first_input");
  check_model_tensor(w_out, "w_out", {levels, hidden}, first_input, "first_input");
  check_model_bias(b_out, "b_out", levels, first_input, "first_input");
  check_model_tensor(embedding, "embedding", {levels, r}, first_input, "first_input");
}

// See fastgen.ops.pixelcnn_generate_row: uniforms (N, C_img, W) float32 or float64, levels >= 2,
// w_h[l] (2C, C_in, 1, k + 1) (C_in = C_img at layer 0, C after; mask "B" needs C_in == C),
// links[l] (N, 2C, W), w_res[l] (C, C), w_cond_h[l] (2C, D) with cond (N, D), w_hidden (H, C),
// w_out (C_img * levels, H), biases (C_out,) or None.
inline void check_pixelcnn_generate_row_inputs(
    at::TensorList links, const at::Tensor& uniforms, at::TensorList w_h,
    const c10::List<std::optional<at::Tensor>>& b_h, at::TensorList w_res,
    const c10::List<std::optional<at::Tensor>>& b_res, const std::vector<std::string>& mask_types,
    const std::optional<at::Tensor>& cond, const c10::List<std::optional<at::Tensor>>& w_cond_h,
    const at::Tensor& w_hidden, const std::optional<at::Tensor>& b_hidden, const at::Tensor& w_out,
    const std::optional<at::Tensor>& b_out, int64_t levels, const char* device_type) {
  const auto layers = static_cast<int64_t>(w_h.size());
  TORCH_CHECK(layers >= 1, "fastgen: w_h must have one entry per layer (at least one)");
  check_list_lengths(w_h.size(), {{"links", links.size()}, {"b_h", b_h.size()}, {"w_res", w_res.size()},
                              {"b_res", b_res.size()}, {"mask_types", mask_types.size()},
                              {"w_cond_h", w_cond_h.size()}});
  check_conv_tensor(uniforms, "uniforms", "(N, C_img, W)", 3);
  TORCH_CHECK(uniforms.device().type() == c10::Device(device_type).type(), "fastgen: uniforms must be a ",
              device_type, " tensor here, got ", uniforms.device());
  TORCH_CHECK(levels >= 2, "fastgen: levels must be >= 2, got ", levels);
  const int64_t n = uniforms.size(0), channels = uniforms.size(1), width = uniforms.size(2);
  TORCH_CHECK(w_h[0].dim() == 4, "fastgen: w_h[0] must be (2C, C_img, 1, k + 1), got ", w_h[0].sizes());
  const int64_t two_c = w_h[0].size(0), c = two_c / 2;
  TORCH_CHECK(two_c > 0 && two_c % 2 == 0, "fastgen: w_h[0] must have an even, nonzero 2C (dim 0), got ",
              w_h[0].sizes());
  int64_t d = 0;
  if (cond.has_value()) {
    TORCH_CHECK(cond->dim() == 2, "fastgen: cond must be (N, D), got ", cond->sizes());
    d = cond->size(1);
    check_model_tensor(*cond, "cond", {n, d}, uniforms, "uniforms");
  }
  int64_t c_in = channels;
  for (int64_t l = 0; l < layers; ++l) {
    const std::string& mask = mask_types[l];
    TORCH_CHECK(mask == "A" || mask == "B", "fastgen: mask_types[", l, "] must be \"A\" or \"B\", got \"", mask, "\"");
    TORCH_CHECK(mask == "A" || c_in == c, "fastgen: mask_types[", l, "] \"B\" needs C_in == C = ", c, ", got C_in ",
                c_in);
    TORCH_CHECK(w_h[l].dim() == 4 && w_h[l].size(3) >= 1, "fastgen: w_h[", l, "] must be (2C, C_in, 1, k + 1), got ",
                w_h[l].sizes());
    check_model_tensor(w_h[l], nth("w_h", l), {two_c, c_in, 1, w_h[l].size(3)}, uniforms, "uniforms");
    check_model_tensor(links[l], nth("links", l), {n, two_c, width}, uniforms, "uniforms");
    check_model_bias(b_h.get(l), nth("b_h", l), two_c, uniforms, "uniforms");
    check_model_tensor(w_res[l], nth("w_res", l), {c, c}, uniforms, "uniforms");
    check_model_bias(b_res.get(l), nth("b_res", l), c, uniforms, "uniforms");
    const std::optional<at::Tensor> projection = w_cond_h.get(l);
    TORCH_CHECK(projection.has_value() == cond.has_value(), "fastgen: w_cond_h[", l,
                "] must be given exactly when cond is");
    if (projection.has_value()) check_model_tensor(*projection, nth("w_cond_h", l), {two_c, d}, uniforms, "uniforms");
    c_in = c;
  }
  TORCH_CHECK(w_hidden.dim() == 2, "fastgen: w_hidden must be (H, C), got ", w_hidden.sizes());
  const int64_t hidden = w_hidden.size(0);
  check_model_tensor(w_hidden, "w_hidden", {hidden, c}, uniforms, "uniforms");
  check_model_bias(b_hidden, "b_hidden", hidden, uniforms, "uniforms");
  check_model_tensor(w_out, "w_out", {channels * levels, hidden}, uniforms, "uniforms");
  check_model_bias(b_out, "b_out", channels * levels, uniforms, "uniforms");
}

}  // namespace fastgen
