// Argument checks shared by the CPU (and any future CUDA) entry points of the convolution family.
//
// The Python wrappers in fastgen.ops check first and give the friendliest messages; these
// checks guard direct calls of torch.ops.fastgen.* so bad input never reaches a kernel.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>

namespace fastgen {

inline void check_conv_tensor(const at::Tensor& t, const char* name, const char* layout) {
  TORCH_CHECK(t.is_floating_point(), "fastgen: ", name,
              " must be a floating-point tensor (float32, float16, bfloat16 or float64), got ",
              t.scalar_type());
  TORCH_CHECK(t.dim() == 3, "fastgen: ", name, " must have 3 dimensions ", layout, ", got shape ",
              t.sizes());
}

// x (N, C_in, T), weight (C_out, C_in, K >= 1), bias (C_out,) or None, dilation >= 1.
inline void check_causal_conv1d_inputs(const at::Tensor& x, const at::Tensor& weight,
                                       const std::optional<at::Tensor>& bias, int64_t dilation,
                                       const char* device_type) {
  check_conv_tensor(x, "x", "(N, C_in, T)");
  check_conv_tensor(weight, "weight", "(C_out, C_in, K)");
  TORCH_CHECK(x.device().type() == c10::Device(device_type).type(), "fastgen: x must be a ",
              device_type, " tensor here, got ", x.device());
  TORCH_CHECK(weight.scalar_type() == x.scalar_type(), "fastgen: weight must have the dtype of x (",
              x.scalar_type(), "), got ", weight.scalar_type());
  TORCH_CHECK(weight.device() == x.device(), "fastgen: weight must be on the device of x (",
              x.device(), "), got ", weight.device());
  TORCH_CHECK(weight.size(1) == x.size(1), "fastgen: weight must have C_in = x.size(1) = ",
              x.size(1), " input channels (dim 1), got shape ", weight.sizes());
  TORCH_CHECK(weight.size(2) >= 1, "fastgen: weight must have a kernel size K >= 1 (dim 2), got shape ",
              weight.sizes());
  TORCH_CHECK(dilation >= 1, "fastgen: dilation must be >= 1, got ", dilation);
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

inline void check_causal_conv1d_grad(const at::Tensor& grad_y, const at::Tensor& x,
                                     const at::Tensor& weight) {
  TORCH_CHECK(grad_y.dim() == 3 && grad_y.size(0) == x.size(0) && grad_y.size(1) == weight.size(0) &&
                  grad_y.size(2) == x.size(2),
              "fastgen: grad_y must have shape (N, C_out, T) = (", x.size(0), ", ", weight.size(0), ", ",
              x.size(2), "), got ", grad_y.sizes());
  TORCH_CHECK(grad_y.device() == x.device(), "fastgen: grad_y must be on the device of x (",
              x.device(), "), got ", grad_y.device());
  TORCH_CHECK(grad_y.is_floating_point(), "fastgen: grad_y must be a floating-point tensor, got ",
              grad_y.scalar_type());
}

}  // namespace fastgen
