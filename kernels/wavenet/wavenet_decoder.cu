// The persistent WaveNet decoder: one CUDA block per sample runs every step of the generation
// (all layers, the head and the draw) in one launch, with the running vectors and as many of
// the weights as fit (whole layers in order, then the head) in shared memory; the rest are read
// from global memory, where L2 keeps them. The program itself is wavenet_decoder_body.h,
// shared with the CPU emulation test.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace fastgen {
namespace decoder {
// Explicit intrinsics: torch builds .cu files with __CUDA_NO_HALF_CONVERSIONS__ and friends.
// Declared before the body, whose templates find them by ordinary lookup.
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
}  // namespace decoder
}  // namespace fastgen

#include "wavenet_decoder_body.h"
#include "wavenet_decoder_kernels.h"

namespace fastgen {
namespace cuda {
namespace {

// The Block interface of wavenet_decoder_body.h on the GPU.
struct CudaBlock {
  __device__ __forceinline__ int thread() const { return static_cast<int>(threadIdx.x); }
  __device__ __forceinline__ int threads() const { return static_cast<int>(blockDim.x); }
  __device__ __forceinline__ void sync() const { __syncthreads(); }
  template <typename T>
  __device__ __forceinline__ T shfl_xor(T v, int mask) const { return __shfl_xor_sync(0xffffffffu, v, mask); }
  template <typename T>
  __device__ __forceinline__ T shfl_up(T v, int delta) const { return __shfl_up_sync(0xffffffffu, v, delta); }
  template <typename T>
  __device__ __forceinline__ T shfl_idx(T v, int lane) const { return __shfl_sync(0xffffffffu, v, lane); }
};

template <typename S> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

template <typename S>
__global__ void __launch_bounds__(1024) wavenet_decoder_kernel(decoder::Args<S> args) {
  extern __shared__ __align__(16) unsigned char smem[];
  CudaBlock block;
  decoder::decode_sample<S, typename AccOf<S>::type>(args, static_cast<int64_t>(blockIdx.x), block, smem);
}

template <typename S>
cudaError_t launch(const DecoderBuffers& b, const decoder::Shape& shape, int64_t batch, int64_t steps, int64_t start,
                   int64_t resident_elems, int threads, cudaStream_t stream) {
  const size_t smem = decoder::smem_bytes(shape, sizeof(typename AccOf<S>::type), sizeof(S), resident_elems);
  auto kernel = wavenet_decoder_kernel<S>;
  cudaError_t status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem));
  if (status != cudaSuccess) return status;
  decoder::Args<S> args{reinterpret_cast<S* const*>(b.rings), b.dilations, static_cast<const S*>(b.first_input),
                        static_cast<const S*>(b.uniforms), static_cast<const S*>(b.embedding),
                        static_cast<const S*>(b.weights), static_cast<const S*>(b.cond), b.codes,
                        batch, steps, start, resident_elems, shape};
  kernel<<<static_cast<unsigned int>(batch), threads, smem, stream>>>(args);
  return cudaGetLastError();
}

size_t acc_bytes(DecoderDType dtype) { return dtype == DecoderDType::kFloat64 ? 8 : 4; }
size_t scalar_bytes(DecoderDType dtype) {
  return dtype == DecoderDType::kFloat64 ? 8 : dtype == DecoderDType::kFloat32 ? 4 : 2;
}

}  // namespace

size_t wavenet_decoder_smem_bytes(DecoderDType dtype, const decoder::Shape& shape, int64_t resident_elems) {
  return decoder::smem_bytes(shape, acc_bytes(dtype), scalar_bytes(dtype), resident_elems);
}

cudaError_t launch_wavenet_decoder(DecoderDType dtype, const DecoderBuffers& buffers, const decoder::Shape& shape,
                                   int64_t batch, int64_t steps, int64_t start, int64_t resident_elems,
                                   int threads, cudaStream_t stream) {
  const bool sizes_ok = shape.layers >= 1 && shape.kernel_size >= 1 && shape.residual >= 1 && shape.gate >= 1 &&
                        shape.skip >= 1 && shape.hidden >= 1 && shape.levels >= 1 && shape.cond >= 0 &&
                        (shape.cond == 0 || buffers.cond != nullptr) && batch >= 0 && batch <= 0x7fffffff &&
                        steps >= 0 && start >= 0 && resident_elems >= 0 &&
                        resident_elems <= decoder::weight_elems(shape) && threads >= 32 && threads <= 1024 &&
                        threads % 32 == 0;
  if (!sizes_ok) return cudaErrorInvalidValue;
  if (batch == 0 || steps == 0) return cudaSuccess;
  switch (dtype) {
    case DecoderDType::kFloat32:
      return launch<float>(buffers, shape, batch, steps, start, resident_elems, threads, stream);
    case DecoderDType::kFloat64:
      return launch<double>(buffers, shape, batch, steps, start, resident_elems, threads, stream);
    case DecoderDType::kFloat16:
      return launch<__half>(buffers, shape, batch, steps, start, resident_elems, threads, stream);
    case DecoderDType::kBFloat16:
      return launch<__nv_bfloat16>(buffers, shape, batch, steps, start, resident_elems, threads, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace fastgen
