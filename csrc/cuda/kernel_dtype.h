// The launchers' DType of a tensor (CUDA glue only).
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "fastgen/cuda_dtype.h"

namespace fastgen {

// `name` says what is checked in the error, e.g. "wavenet_decoder_cuda: first_input".
inline cuda::DType kernel_dtype(const at::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat: return cuda::DType::kFloat32;
    case at::kHalf: return cuda::DType::kFloat16;
    case at::kBFloat16: return cuda::DType::kBFloat16;
    case at::kDouble: return cuda::DType::kFloat64;
    default:
      TORCH_CHECK(false, "fastgen: ", name, " must be float32, float16, bfloat16 or float64, got ",
                  t.scalar_type());
  }
}

}  // namespace fastgen
