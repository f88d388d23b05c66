// The persistent WaveNet decoder: one CUDA block per sample runs every step of the generation
// (all layers, the head and the draw) in one launch, with the running vectors and as many of
// the weights as fit (whole layers in order, then the head) in shared memory; the rest are read
// from global memory, where L2 keeps them. On sm_90+ a second kernel spreads each sample over a
// thread-block cluster (wavenet_decoder_cluster.h). The programs themselves are the headers,
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

#include "fastgen/cuda_dtype_dispatch.cuh"
#include "wavenet_decoder_cluster.h"
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

// The cluster calls of wavenet_decoder_cluster.h, in PTX (sm_90+; elsewhere they trap, and the
// launcher never starts the cluster kernel there).
struct CudaClusterBlock : CudaBlock {
  __device__ __forceinline__ int cluster_rank() const {
    unsigned rank = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
#else
    __trap();
#endif
    return static_cast<int>(rank);
  }
  __device__ __forceinline__ int cluster_size() const {
    unsigned size = 1;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mov.u32 %0, %%cluster_nctarank;" : "=r"(size));
#else
    __trap();
#endif
    return static_cast<int>(size);
  }
  // Release/acquire at cluster scope: shared-memory writes into other blocks and global writes
  // before it are visible to every thread of the cluster after it.
  __device__ __forceinline__ void cluster_sync() const {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
#else
    __trap();
#endif
  }
  template <typename T>
  __device__ __forceinline__ T* map_shared(T* local, int rank) const {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    uint64_t remote = 0;
    asm volatile("mapa.u64 %0, %1, %2;" : "=l"(remote) : "l"(reinterpret_cast<uint64_t>(local)), "r"(rank));
    return reinterpret_cast<T*>(remote);
#else
    (void)rank;
    __trap();
    return local;
#endif
  }
};

// At most 512 threads a block leaves 128 registers a thread; both programs spill at 64.
constexpr int kMaxThreads = 512;

template <typename S> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

template <typename S>
__global__ void __launch_bounds__(kMaxThreads) wavenet_decoder_kernel(decoder::Args<S> args) {
  extern __shared__ __align__(16) unsigned char smem[];
  CudaBlock block;
  decoder::decode_sample<S, typename AccOf<S>::type>(args, static_cast<int64_t>(blockIdx.x), block, smem);
}

// A cluster block owns 1/Q of the rows, so fewer threads suffice; 255 registers a thread keep the
// cluster program (more live indices) from spilling.
constexpr int kMaxClusterThreads = 256;

template <typename S>
__global__ void __launch_bounds__(kMaxClusterThreads) wavenet_decoder_cluster_kernel(decoder::Args<S> args,
                                                                       decoder::ClusterPlan plan) {
  extern __shared__ __align__(16) unsigned char smem[];
  CudaClusterBlock block;
  decoder::decode_sample_cluster<S, typename AccOf<S>::type>(
      args, plan, static_cast<int64_t>(blockIdx.x) / plan.cluster, block, smem);
}

template <typename S>
decoder::Args<S> args_of(const DecoderBuffers& b, const decoder::Shape& shape, int64_t batch, int64_t steps,
                         int64_t start, int64_t resident_elems) {
  return decoder::Args<S>{reinterpret_cast<S* const*>(b.rings), b.dilations, static_cast<const S*>(b.first_input),
                          static_cast<const S*>(b.uniforms), static_cast<const S*>(b.embedding),
                          static_cast<const S*>(b.weights), static_cast<const S*>(b.cond), b.codes,
                          batch, steps, start, resident_elems, shape};
}

template <typename S>
cudaError_t launch_cluster(const DecoderBuffers& b, const decoder::Shape& shape, int64_t batch, int64_t steps,
                           int64_t start, const decoder::ClusterPlan& plan, int threads, cudaStream_t stream) {
  int device = 0, major = 0;
  cudaError_t status = cudaGetDevice(&device);
  if (status == cudaSuccess) status = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  if (status != cudaSuccess) return status;
  if (major < 9) return cudaErrorNotSupported;  // thread-block clusters start with sm_90
  const size_t smem = decoder::cluster_smem_bytes(shape, plan.cluster, sizeof(typename AccOf<S>::type), sizeof(S),
                                                  plan.resident_layers, plan.head_resident);
  auto kernel = wavenet_decoder_cluster_kernel<S>;
  status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (status == cudaSuccess && plan.cluster > 8)
    status = cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  if (status != cudaSuccess) return status;
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned int>(batch * plan.cluster));
  config.blockDim = dim3(static_cast<unsigned int>(threads));
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeClusterDimension;
  attribute[0].val.clusterDim.x = static_cast<unsigned int>(plan.cluster);
  attribute[0].val.clusterDim.y = 1;
  attribute[0].val.clusterDim.z = 1;
  config.attrs = attribute;
  config.numAttrs = 1;
  int clusters = 0;  // whether one cluster of this size and shared memory fits on the GPU at all
  status = cudaOccupancyMaxActiveClusters(&clusters, kernel, &config);
  if (status != cudaSuccess) return status;
  if (clusters < 1) return cudaErrorInvalidConfiguration;
  status = cudaLaunchKernelEx(&config, kernel, args_of<S>(b, shape, batch, steps, start, 0), plan);
  if (status != cudaSuccess) return status;
  return cudaGetLastError();
}

template <typename S>
cudaError_t launch(const DecoderBuffers& b, const decoder::Shape& shape, int64_t batch, int64_t steps, int64_t start,
                   int64_t resident_elems, int threads, cudaStream_t stream) {
  const size_t smem = decoder::smem_bytes(shape, sizeof(typename AccOf<S>::type), sizeof(S), resident_elems);
  auto kernel = wavenet_decoder_kernel<S>;
  cudaError_t status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem));
  if (status != cudaSuccess) return status;
  kernel<<<static_cast<unsigned int>(batch), threads, smem, stream>>>(
      args_of<S>(b, shape, batch, steps, start, resident_elems));
  return cudaGetLastError();
}

size_t acc_bytes(DType dtype) { return dtype == DType::kFloat64 ? 8 : 4; }
size_t scalar_bytes(DType dtype) {
  return dtype == DType::kFloat64 ? 8 : dtype == DType::kFloat32 ? 4 : 2;
}

}  // namespace

size_t wavenet_decoder_smem_bytes(DType dtype, const decoder::Shape& shape, int64_t resident_elems) {
  return decoder::smem_bytes(shape, acc_bytes(dtype), scalar_bytes(dtype), resident_elems);
}

size_t wavenet_decoder_cluster_smem_bytes(DType dtype, const decoder::Shape& shape,
                                          const decoder::ClusterPlan& plan) {
  return decoder::cluster_smem_bytes(shape, plan.cluster, acc_bytes(dtype), scalar_bytes(dtype),
                                     plan.resident_layers, plan.head_resident);
}

namespace {
bool valid(const DecoderBuffers& buffers, const decoder::Shape& shape, int64_t batch, int64_t steps, int64_t start,
           int threads) {
  return shape.layers >= 1 && shape.kernel_size >= 1 && shape.residual >= 1 && shape.gate >= 1 &&
         shape.skip >= 1 && shape.hidden >= 1 && shape.levels >= 1 && shape.cond >= 0 &&
         (shape.cond == 0 || buffers.cond != nullptr) && batch >= 0 && batch <= 0x7fffffff && steps >= 0 &&
         start >= 0 && threads >= 32 && threads <= kMaxThreads && threads % 32 == 0;
}
}  // namespace

cudaError_t launch_wavenet_decoder_cluster(DType dtype, const DecoderBuffers& buffers,
                                           const decoder::Shape& shape, int64_t batch, int64_t steps, int64_t start,
                                           const decoder::ClusterPlan& plan, int threads, cudaStream_t stream) {
  if (!valid(buffers, shape, batch, steps, start, threads) || threads > kMaxClusterThreads || plan.cluster < 1 ||
      plan.cluster > 16 || batch * plan.cluster > 0x7fffffff || plan.resident_layers < 0 ||
      plan.resident_layers > shape.layers || (plan.head_resident && plan.resident_layers != shape.layers))
    return cudaErrorInvalidValue;
  if (batch == 0 || steps == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto scalar) {
    return launch_cluster<decltype(scalar)>(buffers, shape, batch, steps, start, plan, threads, stream);
  });
}

cudaError_t launch_wavenet_decoder(DType dtype, const DecoderBuffers& buffers, const decoder::Shape& shape,
                                   int64_t batch, int64_t steps, int64_t start, int64_t resident_elems,
                                   int threads, cudaStream_t stream) {
  if (!valid(buffers, shape, batch, steps, start, threads) || resident_elems < 0 ||
      resident_elems > decoder::weight_elems(shape))
    return cudaErrorInvalidValue;
  if (batch == 0 || steps == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto scalar) {
    return launch<decltype(scalar)>(buffers, shape, batch, steps, start, resident_elems, threads, stream);
  });
}

}  // namespace cuda
}  // namespace fastgen
