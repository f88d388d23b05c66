// The element type of a CUDA launcher's tensors, shared by every torch-free launcher header
// (kernels/*/..._kernels.h) and the torch glue that picks it (csrc/cuda/kernel_dtype.h).
#pragma once

namespace fastgen {
namespace cuda {

enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kFloat64 = 3 };

}  // namespace cuda
}  // namespace fastgen
