// Launchers' dispatch from DType to the storage type (.cu files only: needs the CUDA half types).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "fastgen/cuda_dtype.h"

namespace fastgen {
namespace cuda {

// Calls f(T{}) with T the storage type of dtype (a value of it, only for its type).
template <typename F>
cudaError_t dispatch(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFloat32: return f(float{});
    case DType::kFloat16: return f(__half{});
    case DType::kBFloat16: return f(__nv_bfloat16{});
    case DType::kFloat64: return f(double{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace fastgen
