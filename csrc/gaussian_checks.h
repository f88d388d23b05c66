// Argument checks shared by the CPU and CUDA entry points of the Gaussian op family.
//
// The Python wrappers in fastgen.ops check first and give the friendliest messages; these
// checks guard direct calls of torch.ops.fastgen.* so bad input never reaches a kernel.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>

namespace fastgen {

inline void check_float_tensor(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_floating_point(), "fastgen: ", name,
              " must be a floating-point tensor (float32, float16, bfloat16 or float64), got ",
              t.scalar_type());
  TORCH_CHECK(t.dim() >= 1, "fastgen: ", name, " must have at least one dimension (the batch), got a 0-dim tensor");
}

inline void check_like(const at::Tensor& t, const at::Tensor& ref, const char* name,
                       const char* ref_name) {
  TORCH_CHECK(t.sizes() == ref.sizes(), "fastgen: ", name, " must have the shape of ", ref_name,
              " ", ref.sizes(), ", got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "fastgen: ", name, " must have the dtype of ",
              ref_name, " (", ref.scalar_type(), "), got ", t.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), "fastgen: ", name, " must be on the device of ",
              ref_name, " (", ref.device(), "), got ", t.device());
}

inline void check_seed(const at::Tensor& seed, const at::Tensor& mu) {
  TORCH_CHECK(seed.scalar_type() == at::kLong && seed.dim() == 0,
              "fastgen: seed must be a 0-dim int64 tensor, got ", seed.scalar_type(), " with shape ",
              seed.sizes());
  TORCH_CHECK(seed.device() == mu.device(), "fastgen: seed must be on the device of mu (",
              mu.device(), "), got ", seed.device());
}

// mu and logvar always; with want_z exactly one of eps (explicit noise) and seed (drawn noise).
inline void check_gaussian_inputs(const at::Tensor& mu, const at::Tensor& logvar,
                                  const std::optional<at::Tensor>& eps,
                                  const std::optional<at::Tensor>& seed, bool want_z,
                                  const char* device_type) {
  check_float_tensor(mu, "mu");
  check_like(logvar, mu, "logvar", "mu");
  TORCH_CHECK(mu.device().type() == c10::Device(device_type).type(), "fastgen: mu must be a ",
              device_type, " tensor here, got ", mu.device());
  if (!want_z) return;
  TORCH_CHECK(eps.has_value() != seed.has_value(),
              "fastgen: pass exactly one of eps (explicit noise) and seed (noise drawn in the kernel)");
  if (eps.has_value()) check_like(*eps, mu, "eps", "mu");
  if (seed.has_value()) check_seed(*seed, mu);
}

}  // namespace fastgen
