// Helpers shared by the CPU sampling step kernels (wavenet_step, pixelcnn_step).
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>

namespace fastgen::cpu {

// A tensor in the accumulation dtype, contiguous (no copy for contiguous float32/float64 ones);
// an undefined tensor for a missing optional.
inline at::Tensor acc_contiguous(const at::Tensor& t, at::ScalarType acc) { return t.to(acc).contiguous(); }
inline at::Tensor acc_contiguous(const std::optional<at::Tensor>& t, at::ScalarType acc) {
  return t.has_value() ? acc_contiguous(*t, acc) : at::Tensor();
}

// A present optional tensor made contiguous (in its dtype), an undefined tensor for a missing one.
inline at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->contiguous() : at::Tensor();
}

// The data of a defined tensor, nullptr for an undefined one (a missing bias or weight).
template <typename T>
const T* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

}  // namespace fastgen::cpu
