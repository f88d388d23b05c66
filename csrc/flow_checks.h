// Argument checks shared by the entry points of the normalizing-flow family (affine_coupling,
// additive_coupling, actnorm, invertible_conv1x1 and their backwards).
//
// The Python wrappers in fastgen.ops.flows check first and give the friendliest messages; these
// checks guard direct calls of torch.ops.fastgen.* so bad input never reaches a kernel.
#pragma once
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include <cmath>
#include <optional>
#include <string>

namespace fastgen {

// How affine_coupling turns the raw conditioner output r into the log-scale s (see ops.cpp).
enum class ScaleMap { kTanhClamp, kSigmoid, kExp };

inline void check_flow_tensor(const at::Tensor& t, const char* name, int64_t min_dim, const char* layout) {
  TORCH_CHECK(t.is_floating_point(), "fastgen: ", name,
              " must be a floating-point tensor (float32, float16, bfloat16 or float64), got ", t.scalar_type());
  TORCH_CHECK(t.dim() >= min_dim, "fastgen: ", name, " must have at least ", min_dim, " dimension(s) ", layout,
              ", got shape ", t.sizes());
}

// `t` must have the shape, dtype and device of x (shift, log_scale of a coupling).
inline void check_like_flow_input(const at::Tensor& t, const char* name, const at::Tensor& x) {
  TORCH_CHECK(t.sizes() == x.sizes(), "fastgen: ", name, " must have the shape of x ", x.sizes(), ", got ",
              t.sizes());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), "fastgen: ", name, " must have the dtype of x (",
              x.scalar_type(), "), got ", t.scalar_type());
  TORCH_CHECK(t.device() == x.device(), "fastgen: ", name, " must be on the device of x (", x.device(), "), got ",
              t.device());
}

inline void check_flow_device(const at::Tensor& x, const char* device_type) {
  TORCH_CHECK(x.device().type() == c10::Device(device_type).type(), "fastgen: x must be a ", device_type,
              " tensor here, got ", x.device());
}

// scale one of "tanh_clamp", "sigmoid", "exp"; clamp finite and > 0 (checked for every map, as
// the Python wrapper does).
inline ScaleMap check_scale_map(c10::string_view scale, double clamp) {
  // Above 1e4 the float32 soft clamp overflows (fastgen.ops.flows.MAX_CLAMP).
  TORCH_CHECK(std::isfinite(clamp) && clamp > 0 && clamp <= 1e4,
              "fastgen: clamp must be a finite number > 0 and <= 1e+04, got ", clamp);
  if (scale == "tanh_clamp") return ScaleMap::kTanhClamp;
  if (scale == "sigmoid") return ScaleMap::kSigmoid;
  TORCH_CHECK(scale == "exp", "fastgen: scale must be one of \"tanh_clamp\", \"sigmoid\", \"exp\", got \"",
              std::string(scale), "\"");
  return ScaleMap::kExp;
}

// x (N, ...) with shift and log_scale of its shape, dtype and device.
inline ScaleMap check_affine_coupling_inputs(const at::Tensor& x, const at::Tensor& shift,
                                             const at::Tensor& log_scale, c10::string_view scale, double clamp,
                                             const char* device_type) {
  check_flow_tensor(x, "x", 1, "(N, ...)");
  check_flow_device(x, device_type);
  check_like_flow_input(shift, "shift", x);
  check_like_flow_input(log_scale, "log_scale", x);
  return check_scale_map(scale, clamp);
}

inline void check_additive_coupling_inputs(const at::Tensor& x, const at::Tensor& shift, const char* device_type) {
  check_flow_tensor(x, "x", 1, "(N, ...)");
  check_flow_device(x, device_type);
  check_like_flow_input(shift, "shift", x);
}

// grad_y: a floating-point tensor of the output's (= x's) shape on x's device.
inline void check_flow_grad_y(const at::Tensor& grad_y, const at::Tensor& x) {
  TORCH_CHECK(grad_y.is_floating_point(), "fastgen: grad_y must be a floating-point tensor, got ",
              grad_y.scalar_type());
  TORCH_CHECK(grad_y.sizes() == x.sizes(), "fastgen: grad_y must have shape ", x.sizes(), " (the output's), got ",
              grad_y.sizes());
  TORCH_CHECK(grad_y.device() == x.device(), "fastgen: grad_y must be on the device of x (", x.device(), "), got ",
              grad_y.device());
}

// grad_logdet: None, or a floating-point (N,) tensor on x's device.
inline void check_flow_grad_logdet(const std::optional<at::Tensor>& grad_logdet, const at::Tensor& x) {
  if (!grad_logdet.has_value()) return;
  const at::Tensor& g = *grad_logdet;
  TORCH_CHECK(g.is_floating_point(), "fastgen: grad_logdet must be a floating-point tensor, got ", g.scalar_type());
  TORCH_CHECK(g.dim() == 1 && g.size(0) == x.size(0), "fastgen: grad_logdet must have shape (N,) = (", x.size(0),
              ",), got ", g.sizes());
  TORCH_CHECK(g.device() == x.device(), "fastgen: grad_logdet must be on the device of x (", x.device(), "), got ",
              g.device());
}

// A per-channel parameter of actnorm: (C,) with x's dtype and device.
inline void check_channel_param(const at::Tensor& p, const char* name, const at::Tensor& x) {
  TORCH_CHECK(p.scalar_type() == x.scalar_type(), "fastgen: ", name, " must have the dtype of x (", x.scalar_type(),
              "), got ", p.scalar_type());
  TORCH_CHECK(p.device() == x.device(), "fastgen: ", name, " must be on the device of x (", x.device(), "), got ",
              p.device());
  TORCH_CHECK(p.dim() == 1 && p.size(0) == x.size(1), "fastgen: ", name, " must have shape (C,) = (", x.size(1),
              ",), got ", p.sizes());
}

// x (N, C, *spatial), bias and log_scale (C,).
inline void check_actnorm_inputs(const at::Tensor& x, const at::Tensor& bias, const at::Tensor& log_scale,
                                 const char* device_type) {
  check_flow_tensor(x, "x", 2, "(N, C, *spatial)");
  check_flow_device(x, device_type);
  check_channel_param(bias, "bias", x);
  check_channel_param(log_scale, "log_scale", x);
}

// x (N, C, *spatial), matrix (C, C) with x's dtype and device.
inline void check_conv1x1_inputs(const at::Tensor& x, const at::Tensor& matrix, const char* device_type) {
  check_flow_tensor(x, "x", 2, "(N, C, *spatial)");
  check_flow_device(x, device_type);
  // A float16/bfloat16 x may come with a float32 matrix (a W^-1 solved in float32, float32
  // parameters): the kernels compute in float32 either way.
  const at::ScalarType wide = at::toOpMathType(x.scalar_type());
  TORCH_CHECK(matrix.scalar_type() == x.scalar_type() || matrix.scalar_type() == wide,
              "fastgen: matrix must have the dtype of x (", x.scalar_type(), ")",
              wide != x.scalar_type() ? " or float32" : "", ", got ", matrix.scalar_type());
  TORCH_CHECK(matrix.device() == x.device(), "fastgen: matrix must be on the device of x (", x.device(), "), got ",
              matrix.device());
  TORCH_CHECK(matrix.dim() == 2 && matrix.size(0) == x.size(1) && matrix.size(1) == x.size(1),
              "fastgen: matrix must be square with shape (C, C) = (", x.size(1), ", ", x.size(1), "), got ",
              matrix.sizes());
}

// logabsdet: a floating-point 0-dim tensor on x's device.
inline void check_logabsdet(const at::Tensor& logabsdet, const at::Tensor& x) {
  TORCH_CHECK(logabsdet.is_floating_point() && logabsdet.dim() == 0,
              "fastgen: logabsdet must be a 0-dim floating-point tensor, got ", logabsdet.scalar_type(),
              " with shape ", logabsdet.sizes());
  TORCH_CHECK(logabsdet.device() == x.device(), "fastgen: logabsdet must be on the device of x (", x.device(),
              "), got ", logabsdet.device());
}

}  // namespace fastgen
