// Argument checks shared by the CPU (and any future CUDA) entry points of the convolution family.
//
// The Python wrappers in fastgen.ops check first and give the friendliest messages; these
// checks guard direct calls of torch.ops.fastgen.* so bad input never reaches a kernel.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <c10/util/string_view.h>

#include <algorithm>
#include <array>
#include <optional>

namespace fastgen {

inline void check_conv_tensor(const at::Tensor& t, const char* name, const char* layout, int64_t rank = 3) {
  TORCH_CHECK(t.is_floating_point(), "fastgen: ", name,
              " must be a floating-point tensor (float32, float16, bfloat16 or float64), got ",
              t.scalar_type());
  TORCH_CHECK(t.dim() == rank, "fastgen: ", name, " must have ", rank, " dimensions ", layout,
              ", got shape ", t.sizes());
}

// weight and bias (if any) must match x's dtype and device; bias must be (C_out,).
inline void check_conv_params(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                              const char* device_type) {
  TORCH_CHECK(x.device().type() == c10::Device(device_type).type(), "fastgen: x must be a ",
              device_type, " tensor here, got ", x.device());
  TORCH_CHECK(weight.scalar_type() == x.scalar_type(), "fastgen: weight must have the dtype of x (",
              x.scalar_type(), "), got ", weight.scalar_type());
  TORCH_CHECK(weight.device() == x.device(), "fastgen: weight must be on the device of x (",
              x.device(), "), got ", weight.device());
  if (bias.has_value()) {
    const at::Tensor& b = *bias;
    TORCH_CHECK(b.scalar_type() == x.scalar_type(), "fastgen: bias must have the dtype of x (",
                x.scalar_type(), "), got ", b.scalar_type());
    TORCH_CHECK(b.device() == x.device(), "fastgen: bias must be on the device of x (", x.device(),
                "), got ", b.device());
    TORCH_CHECK(b.dim() == 1 && b.size(0) == weight.size(0), "fastgen: bias must have shape (C_out,) = (",
                weight.size(0), ",), got ", b.sizes());
  }
}

// grad_y must have the shape of the output, `expected`, and live on x's device.
inline void check_conv_grad(const at::Tensor& grad_y, const at::Tensor& x, at::IntArrayRef expected) {
  TORCH_CHECK(grad_y.sizes() == expected, "fastgen: grad_y must have shape ", expected,
              " (the output's), got ", grad_y.sizes());
  TORCH_CHECK(grad_y.device() == x.device(), "fastgen: grad_y must be on the device of x (",
              x.device(), "), got ", grad_y.device());
  TORCH_CHECK(grad_y.is_floating_point(), "fastgen: grad_y must be a floating-point tensor, got ",
              grad_y.scalar_type());
}

// Tap offsets (and positions) stay below this, far from int64 overflow.
constexpr int64_t kMaxReach = int64_t{1} << 62;

// dilation >= 1, and the farthest tap offset, reach * dilation, below kMaxReach (reach is K - 1
// for a causal kernel, the half-width for a masked one): the kernels compute tap offsets as
// products and sums of it, and a wrapped product would read the wrong taps.
inline void check_dilation(int64_t dilation, int64_t reach, const char* reach_name, const char* name = "dilation") {
  TORCH_CHECK(dilation >= 1, "fastgen: ", name, " must be >= 1, got ", dilation);
  TORCH_CHECK(reach <= 0 || dilation <= (kMaxReach - 1) / reach, "fastgen: ", name, " must keep ", reach_name, " * ",
              name, " below 2**62, got ", dilation, " with ", reach_name, " = ", reach);
}

// x (N, C_in, T), weight (C_out, C_in, K >= 1), bias (C_out,) or None, dilation >= 1.
inline void check_causal_conv1d_inputs(const at::Tensor& x, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias, int64_t dilation,
                                       const char* device_type) {
  check_conv_tensor(x, "x", "(N, C_in, T)");
  check_conv_tensor(weight, "weight", "(C_out, C_in, K)");
  check_conv_params(x, weight, bias, device_type);
  TORCH_CHECK(weight.size(1) == x.size(1), "fastgen: weight must have C_in = x.size(1) = ",
              x.size(1), " input channels (dim 1), got shape ", weight.sizes());
  TORCH_CHECK(weight.size(2) >= 1, "fastgen: weight must have a kernel size K >= 1 (dim 2), got shape ",
              weight.sizes());
  check_dilation(dilation, weight.size(2) - 1, "(K - 1)");
}

inline void check_causal_conv1d_grad(const at::Tensor& grad_y, const at::Tensor& x,
                                     const at::Tensor& weight) {
  check_conv_grad(grad_y, x, {x.size(0), weight.size(0), x.size(2)});
}

// x (N, C_in, H, W), weight (C_out, C_in / groups, KH, KW) with odd KH and KW, mask_type "A" or
// "B", dilation, groups, color_channels >= 1 (color_channels > 1 needs groups == 1 and divides
// C_in and C_out), bias (C_out,) or None.
inline void check_masked_conv2d_inputs(const at::Tensor& x, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias, c10::string_view mask_type,
                                       int64_t dilation, int64_t groups, int64_t color_channels,
                                       const char* device_type) {
  check_conv_tensor(x, "x", "(N, C_in, H, W)", 4);
  check_conv_tensor(weight, "weight", "(C_out, C_in / groups, KH, KW)", 4);
  check_conv_params(x, weight, bias, device_type);
  TORCH_CHECK(mask_type == "A" || mask_type == "B", "fastgen: mask_type must be \"A\" or \"B\", got \"",
              std::string(mask_type), "\"");
  check_dilation(dilation, std::max(weight.size(2), weight.size(3)) / 2, "max(KH, KW) // 2");
  TORCH_CHECK(groups >= 1, "fastgen: groups must be >= 1, got ", groups);
  TORCH_CHECK(color_channels >= 1, "fastgen: color_channels must be >= 1, got ", color_channels);
  const int64_t c_in = x.size(1), c_out = weight.size(0);
  TORCH_CHECK(weight.size(2) % 2 == 1 && weight.size(3) % 2 == 1,
              "fastgen: weight must have odd kernel sizes KH and KW, got shape ", weight.sizes());
  TORCH_CHECK(c_in % groups == 0 && c_out % groups == 0, "fastgen: groups = ", groups,
              " must divide C_in = ", c_in, " and C_out = ", c_out);
  TORCH_CHECK(weight.size(1) * groups == c_in, "fastgen: weight must have C_in / groups = ", c_in / groups,
              " input channels (dim 1), got shape ", weight.sizes());
  if (color_channels > 1) {
    TORCH_CHECK(groups == 1, "fastgen: color_channels = ", color_channels, " needs groups = 1, got ", groups);
    TORCH_CHECK(c_in % color_channels == 0 && c_out % color_channels == 0, "fastgen: color_channels = ",
                color_channels, " must divide C_in = ", c_in, " and C_out = ", c_out);
  }
}

// `t` must have the dtype and device of x (the wavenet_layer parameters and cond).
inline void check_like_x(const at::Tensor& t, const char* name, const at::Tensor& x) {
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), "fastgen: ", name, " must have the dtype of x (",
              x.scalar_type(), "), got ", t.scalar_type());
  TORCH_CHECK(t.device() == x.device(), "fastgen: ", name, " must be on the device of x (", x.device(),
              "), got ", t.device());
}

// A bias of a wavenet_layer stage: None, or (c_out,) with x's dtype and device.
inline void check_wavenet_bias(const std::optional<at::Tensor>& bias, const char* name, int64_t c_out,
                               const at::Tensor& x) {
  if (!bias.has_value()) return;
  check_like_x(*bias, name, x);
  TORCH_CHECK(bias->dim() == 1 && bias->size(0) == c_out, "fastgen: ", name, " must have shape (", c_out,
              ",), got ", bias->sizes());
}

// x (N, C_res, T), w_dilated (C_gate, C_res, K >= 1) with C_gate even and nonzero, w_res
// (C_res, C_gate / 2), w_skip (C_skip, C_gate / 2), biases (C_out,) or None, dilation >= 1,
// cond (N, C_cond, T) with w_cond (C_gate, C_cond) or both None; all with x's dtype and device.
inline void check_wavenet_layer_inputs(const at::Tensor& x, const at::Tensor& w_dilated,
                                       const std::optional<at::Tensor>& b_dilated, const at::Tensor& w_res,
                                       const std::optional<at::Tensor>& b_res, const at::Tensor& w_skip,
                                       const std::optional<at::Tensor>& b_skip, int64_t dilation,
                                       const std::optional<at::Tensor>& cond,
                                       const std::optional<at::Tensor>& w_cond, const char* device_type) {
  check_conv_tensor(x, "x", "(N, C_res, T)");
  TORCH_CHECK(x.device().type() == c10::Device(device_type).type(), "fastgen: x must be a ", device_type,
              " tensor here, got ", x.device());
  check_conv_tensor(w_dilated, "w_dilated", "(C_gate, C_res, K)");
  check_like_x(w_dilated, "w_dilated", x);
  const int64_t c_res = x.size(1), c_gate = w_dilated.size(0);
  TORCH_CHECK(w_dilated.size(1) == c_res, "fastgen: w_dilated must have C_res = x.size(1) = ", c_res,
              " input channels (dim 1), got shape ", w_dilated.sizes());
  TORCH_CHECK(c_gate > 0 && c_gate % 2 == 0,
              "fastgen: w_dilated must have an even, nonzero C_gate (dim 0), got shape ", w_dilated.sizes());
  TORCH_CHECK(w_dilated.size(2) >= 1, "fastgen: w_dilated must have a kernel size K >= 1 (dim 2), got shape ",
              w_dilated.sizes());
  check_wavenet_bias(b_dilated, "b_dilated", c_gate, x);
  check_conv_tensor(w_res, "w_res", "(C_res, C_gate / 2)", 2);
  check_like_x(w_res, "w_res", x);
  TORCH_CHECK(w_res.size(0) == c_res && w_res.size(1) == c_gate / 2, "fastgen: w_res must have shape (C_res, ",
              "C_gate / 2) = (", c_res, ", ", c_gate / 2, "), got ", w_res.sizes());
  check_wavenet_bias(b_res, "b_res", c_res, x);
  check_conv_tensor(w_skip, "w_skip", "(C_skip, C_gate / 2)", 2);
  check_like_x(w_skip, "w_skip", x);
  TORCH_CHECK(w_skip.size(1) == c_gate / 2, "fastgen: w_skip must have C_gate / 2 = ", c_gate / 2,
              " input channels (dim 1), got shape ", w_skip.sizes());
  check_wavenet_bias(b_skip, "b_skip", w_skip.size(0), x);
  check_dilation(dilation, w_dilated.size(2) - 1, "(K - 1)");
  TORCH_CHECK(cond.has_value() == w_cond.has_value(),
              "fastgen: cond and w_cond must be given together or both be None");
  if (cond.has_value()) {
    check_conv_tensor(*cond, "cond", "(N, C_cond, T)");
    check_like_x(*cond, "cond", x);
    TORCH_CHECK(cond->size(0) == x.size(0) && cond->size(2) == x.size(2),
                "fastgen: cond must have the batch and length of x, (", x.size(0), ", C_cond, ", x.size(2),
                "), got shape ", cond->sizes());
    check_conv_tensor(*w_cond, "w_cond", "(C_gate, C_cond)", 2);
    check_like_x(*w_cond, "w_cond", x);
    TORCH_CHECK(w_cond->size(0) == c_gate && w_cond->size(1) == cond->size(1),
                "fastgen: w_cond must have shape (C_gate, C_cond) = (", c_gate, ", ", cond->size(1), "), got ",
                w_cond->sizes());
  }
}

// grad_residual (N, C_res, T), grad_skip (N, C_skip, T) and the saved gate pre-activation h
// (N, C_gate, T) in the accumulation dtype (float32 for float16/bfloat16).
inline void check_wavenet_layer_grads(const at::Tensor& grad_residual, const at::Tensor& grad_skip,
                                      const at::Tensor& h, const at::Tensor& x, const at::Tensor& w_dilated,
                                      const at::Tensor& w_skip, at::ScalarType acc_dtype) {
  const int64_t n = x.size(0), t = x.size(2);
  TORCH_CHECK(grad_residual.is_floating_point() && grad_residual.sizes() == x.sizes(),
              "fastgen: grad_residual must be a floating-point tensor of the residual's shape ", x.sizes(),
              ", got ", grad_residual.scalar_type(), " ", grad_residual.sizes());
  TORCH_CHECK(grad_residual.device() == x.device(), "fastgen: grad_residual must be on the device of x (",
              x.device(), "), got ", grad_residual.device());
  const std::array<int64_t, 3> skip_shape{n, w_skip.size(0), t};
  TORCH_CHECK(grad_skip.is_floating_point() && grad_skip.sizes() == at::IntArrayRef(skip_shape),
              "fastgen: grad_skip must be a floating-point tensor of the skip output's shape ",
              at::IntArrayRef(skip_shape), ", got ", grad_skip.scalar_type(), " ", grad_skip.sizes());
  TORCH_CHECK(grad_skip.device() == x.device(), "fastgen: grad_skip must be on the device of x (", x.device(),
              "), got ", grad_skip.device());
  TORCH_CHECK(h.numel() > 0 || n * w_dilated.size(0) * t == 0,
              "fastgen: h is empty: the forward ran with save_pre_activation=False, so there is no saved "
              "pre-activation to differentiate through");
  const std::array<int64_t, 3> h_shape{n, w_dilated.size(0), t};
  TORCH_CHECK(h.sizes() == at::IntArrayRef(h_shape), "fastgen: h must have shape (N, C_gate, T) = ",
              at::IntArrayRef(h_shape), ", got ", h.sizes());
  TORCH_CHECK(h.scalar_type() == acc_dtype, "fastgen: h must have the accumulation dtype ", acc_dtype,
              ", got ", h.scalar_type());
  TORCH_CHECK(h.device() == x.device(), "fastgen: h must be on the device of x (", x.device(), "), got ",
              h.device());
}


// `t` must have the dtype and device of v (the gated_pixelcnn_layer parameters and cond).
inline void check_like_v(const at::Tensor& t, const char* name, const at::Tensor& v) {
  TORCH_CHECK(t.scalar_type() == v.scalar_type(), "fastgen: ", name, " must have the dtype of v (",
              v.scalar_type(), "), got ", t.scalar_type());
  TORCH_CHECK(t.device() == v.device(), "fastgen: ", name, " must be on the device of v (", v.device(),
              "), got ", t.device());
}

// A floating-point matrix `name` of shape (rows, cols) with v's dtype and device.
inline void check_pixelcnn_matrix(const at::Tensor& t, const char* name, int64_t rows, int64_t cols,
                                  const at::Tensor& v) {
  check_conv_tensor(t, name, "(C_out, C_in)", 2);
  check_like_v(t, name, v);
  TORCH_CHECK(t.size(0) == rows && t.size(1) == cols, "fastgen: ", name, " must have shape (", rows, ", ", cols,
              "), got ", t.sizes());
}

// A bias of gated_pixelcnn_layer: None, or (size,) with v's dtype and device.
inline void check_pixelcnn_bias(const std::optional<at::Tensor>& bias, const char* name, int64_t size,
                                const at::Tensor& v) {
  if (!bias.has_value()) return;
  check_like_v(*bias, name, v);
  TORCH_CHECK(bias->dim() == 1 && bias->size(0) == size, "fastgen: ", name, " must have shape (", size,
              ",), got ", bias->sizes());
}

// v, h (N, C_in, H, W); w_v (2C, C_in, n / 2 + 1, n) with n odd and 2C even, nonzero; w_h
// (2C, C_in, 1, n / 2 + 1); w_v2h (2C, 2C); w_res (C, C); biases (2C,) ((C,) for b_res) or None;
// mask_type "A" or "B" (C_in == C); cond (N, D) with w_cond_v, w_cond_h (2C, D), or all three
// None; everything with v's dtype and device.
inline void check_gated_pixelcnn_layer_inputs(
    const at::Tensor& v, const at::Tensor& h, const at::Tensor& w_v, const std::optional<at::Tensor>& b_v,
    const at::Tensor& w_h, const std::optional<at::Tensor>& b_h, const at::Tensor& w_v2h,
    const std::optional<at::Tensor>& b_v2h, const at::Tensor& w_res, const std::optional<at::Tensor>& b_res,
    c10::string_view mask_type, const std::optional<at::Tensor>& cond, const std::optional<at::Tensor>& w_cond_v,
    const std::optional<at::Tensor>& w_cond_h, const char* device_type) {
  check_conv_tensor(v, "v", "(N, C_in, H, W)", 4);
  TORCH_CHECK(v.device().type() == c10::Device(device_type).type(), "fastgen: v must be a ", device_type,
              " tensor here, got ", v.device());
  check_conv_tensor(h, "h", "(N, C_in, H, W)", 4);
  check_like_v(h, "h", v);
  TORCH_CHECK(h.sizes() == v.sizes(), "fastgen: h must have the shape of v ", v.sizes(), ", got ", h.sizes());
  TORCH_CHECK(mask_type == "A" || mask_type == "B", "fastgen: mask_type must be \"A\" or \"B\", got \"",
              std::string(mask_type), "\"");
  const int64_t c_in = v.size(1);
  check_conv_tensor(w_v, "w_v", "(2C, C_in, n / 2 + 1, n)", 4);
  check_like_v(w_v, "w_v", v);
  const int64_t two_c = w_v.size(0), n = w_v.size(3), c = two_c / 2;
  TORCH_CHECK(two_c > 0 && two_c % 2 == 0, "fastgen: w_v must have an even, nonzero 2C output channels (dim 0), ",
              "got shape ", w_v.sizes());
  TORCH_CHECK(n % 2 == 1 && w_v.size(2) == n / 2 + 1 && w_v.size(1) == c_in,
              "fastgen: w_v must have shape (2C, C_in, n / 2 + 1, n) with odd n and C_in = ", c_in, ", got ",
              w_v.sizes());
  check_conv_tensor(w_h, "w_h", "(2C, C_in, 1, n / 2 + 1)", 4);
  check_like_v(w_h, "w_h", v);
  TORCH_CHECK(w_h.size(0) == two_c && w_h.size(1) == c_in && w_h.size(2) == 1 && w_h.size(3) == n / 2 + 1,
              "fastgen: w_h must have shape (2C, C_in, 1, n / 2 + 1) = (", two_c, ", ", c_in, ", 1, ", n / 2 + 1,
              "), got ", w_h.sizes());
  check_pixelcnn_matrix(w_v2h, "w_v2h", two_c, two_c, v);
  check_pixelcnn_matrix(w_res, "w_res", c, c, v);
  check_pixelcnn_bias(b_v, "b_v", two_c, v);
  check_pixelcnn_bias(b_h, "b_h", two_c, v);
  check_pixelcnn_bias(b_v2h, "b_v2h", two_c, v);
  check_pixelcnn_bias(b_res, "b_res", c, v);
  TORCH_CHECK(mask_type != "B" || c_in == c, "fastgen: mask_type \"B\" adds the horizontal residual, so v and h ",
              "need C_in = C = ", c, " channels, got ", c_in);
  TORCH_CHECK(cond.has_value() == w_cond_v.has_value() && cond.has_value() == w_cond_h.has_value(),
              "fastgen: cond, w_cond_v and w_cond_h must be given together or all be None");
  if (cond.has_value()) {
    check_conv_tensor(*cond, "cond", "(N, D)", 2);
    check_like_v(*cond, "cond", v);
    TORCH_CHECK(cond->size(0) == v.size(0), "fastgen: cond must have the batch size of v, N = ", v.size(0),
                ", got shape ", cond->sizes());
    check_pixelcnn_matrix(*w_cond_v, "w_cond_v", two_c, cond->size(1), v);
    check_pixelcnn_matrix(*w_cond_h, "w_cond_h", two_c, cond->size(1), v);
  }
}

// An upstream gradient of gated_pixelcnn_layer: a floating-point (N, C, H, W) tensor on v's device.
inline void check_pixelcnn_grad(const at::Tensor& grad, const char* name, at::IntArrayRef shape,
                                const at::Tensor& v) {
  TORCH_CHECK(grad.is_floating_point() && grad.sizes() == shape, "fastgen: ", name,
              " must be a floating-point tensor of the output's shape ", shape, ", got ", grad.scalar_type(), " ",
              grad.sizes());
  TORCH_CHECK(grad.device() == v.device(), "fastgen: ", name, " must be on the device of v (", v.device(),
              "), got ", grad.device());
}

// A saved gate pre-activation of gated_pixelcnn_layer: (N, 2C, H, W) in the accumulation dtype.
inline void check_pixelcnn_pre(const at::Tensor& pre, const char* name, at::IntArrayRef shape,
                               at::ScalarType acc_dtype, const at::Tensor& v) {
  int64_t expected_numel = 1;
  for (const int64_t size : shape) expected_numel *= size;
  TORCH_CHECK(pre.numel() > 0 || expected_numel == 0, "fastgen: ", name,
              " is empty: the forward ran with save_pre_activation=False, so there is no saved "
              "pre-activation to differentiate through");
  TORCH_CHECK(pre.sizes() == shape, "fastgen: ", name, " must have shape (N, 2C, H, W) = ", shape, ", got ",
              pre.sizes());
  TORCH_CHECK(pre.scalar_type() == acc_dtype, "fastgen: ", name, " must have the accumulation dtype ", acc_dtype,
              ", got ", pre.scalar_type());
  TORCH_CHECK(pre.device() == v.device(), "fastgen: ", name, " must be on the device of v (", v.device(),
              "), got ", pre.device());
}

// grad_v_out, grad_h_out (N, C, H, W) and the saved pre-activations v_pre, h_pre (N, 2C, H, W) in
// the accumulation dtype (float32 for float16/bfloat16), all on v's device.
inline void check_gated_pixelcnn_layer_grads(const at::Tensor& grad_v_out, const at::Tensor& grad_h_out,
                                             const at::Tensor& v_pre, const at::Tensor& h_pre, const at::Tensor& v,
                                             const at::Tensor& w_v, at::ScalarType acc_dtype) {
  const int64_t N = v.size(0), two_c = w_v.size(0), H = v.size(2), W = v.size(3);
  const std::array<int64_t, 4> out_shape{N, two_c / 2, H, W}, pre_shape{N, two_c, H, W};
  check_pixelcnn_grad(grad_v_out, "grad_v_out", out_shape, v);
  check_pixelcnn_grad(grad_h_out, "grad_h_out", out_shape, v);
  check_pixelcnn_pre(v_pre, "v_pre", pre_shape, acc_dtype, v);
  check_pixelcnn_pre(h_pre, "h_pre", pre_shape, acc_dtype, v);
}

}  // namespace fastgen
