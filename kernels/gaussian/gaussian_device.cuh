// Device building blocks shared by gaussian_kernels.cu and normal_log_prob_kernels.cu: dtype
// conversions, 4-element (one Philox block) loads and stores, and a deterministic row sum.
//
// Work unit: a thread always handles one Philox block, the elements 4b..4b+3 of the flat
// index, because normal4 yields 4 normals per call; a block lying wholly inside the range is one
// vector load when the pointers are aligned (blocks are 4-aligned in the flat index, whatever
// the row length). Row sums split each row into chunks of up to 16 elements per thread; a group
// of g threads (a power of two, 1..256, chosen from the row length) sums one (row, chunk)
// segment in a fixed order, so short rows pack many rows into one CUDA block and long rows
// spread over many blocks, whose partials a second kernel adds up, again in a fixed order.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "fastgen/cuda_dtype_dispatch.cuh"
#include "fastgen/gaussian_math.h"
#include "gaussian_kernels.h"

namespace fastgen {
namespace cuda {
namespace {

constexpr int kThreads = 256;          // threads per CUDA block, every kernel
constexpr int kItemsPerThread = 16;    // elements a thread sums per chunk (4 Philox blocks)
constexpr int64_t kMaxGrid = 1 << 16;  // grid-stride loops cover anything beyond

template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };
template <typename T> using acc_t = typename AccOf<T>::type;

// Explicit intrinsics: torch compiles .cu files with __CUDA_NO_HALF_CONVERSIONS__ and friends.
__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ void convert(float x, float& out) { out = x; }
__device__ __forceinline__ void convert(double x, double& out) { out = x; }
__device__ __forceinline__ void convert(float x, __half& out) { out = __float2half_rn(x); }
__device__ __forceinline__ void convert(float x, __nv_bfloat16& out) {
  out = __float2bfloat16_rn(x);
}

template <typename T>
struct alignas(4 * sizeof(T)) Pack4 {
  T v[4];
};

// Elements base..base+3 of p (base % 4 == 0); those outside [lo, hi) read as 0. `vec` says p
// is aligned for Pack4, so a block wholly inside the range is one vector load.
template <typename T, typename A>
__device__ __forceinline__ void load4(const T* p, int64_t base, int64_t lo, int64_t hi, bool vec,
                                      A out[4]) {
  if (vec && base >= lo && base + 4 <= hi) {
    const Pack4<T> pack = *reinterpret_cast<const Pack4<T>*>(p + base);
#pragma unroll
    for (int k = 0; k < 4; ++k) out[k] = to_acc(pack.v[k]);
  } else {
#pragma unroll
    for (int k = 0; k < 4; ++k)
      out[k] = (base + k >= lo && base + k < hi) ? to_acc(p[base + k]) : A(0);
  }
}

// Stores the elements of base..base+3 that lie in [lo, hi).
template <typename T, typename A>
__device__ __forceinline__ void store4(T* p, int64_t base, int64_t lo, int64_t hi, bool vec,
                                       const A in[4]) {
  if (vec && base >= lo && base + 4 <= hi) {
    Pack4<T> pack;
#pragma unroll
    for (int k = 0; k < 4; ++k) convert(in[k], pack.v[k]);
    *reinterpret_cast<Pack4<T>*>(p + base) = pack;
  } else {
#pragma unroll
    for (int k = 0; k < 4; ++k)
      if (base + k >= lo && base + k < hi) convert(in[k], p[base + k]);
  }
}

// Sum of v over aligned groups of g threads (g a power of two <= kThreads), always in the same
// order, so the result is deterministic. Every thread of the block must call it with the same
// g; the group's first thread holds the sum.
template <typename A>
__device__ __forceinline__ A group_sum(A v, int g) {
  __shared__ A warp_sums[kThreads / 32];
  for (int offset = (g < 32 ? g : 32) / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  if (g <= 32) return v;
  const int warp = threadIdx.x / 32;
  if (threadIdx.x % 32 == 0) warp_sums[warp] = v;
  __syncthreads();
  if (threadIdx.x % g == 0) {
    v = A(0);
    for (int w = 0; w < g / 32; ++w) v += warp_sums[warp + w];
  }
  __syncthreads();  // warp_sums is reused by the caller's next iteration
  return v;
}

// Arguments of a row sum; x, z, eps, logvar and seed are for the Op to use.
template <typename T>
struct ReduceArgs {
  const T* x;         // the summed input: mu (KL) or z (log-prob)
  const T* logvar;    // KL only
  const T* eps;       // KL writing z: nullptr draws the noise from seed
  const int64_t* seed;
  T* z;               // KL only, nullable: also write z = mu + std * eps
  T* out;             // (rows,), written by row_reduce_kernel when chunks == 1
  acc_t<T>* partial;  // (rows, chunks) workspace when chunks > 1
  int64_t rows, cols, chunk_len, chunks;
  int group;
  bool vec;
  acc_t<T> scale, shift;  // out = scale * sum + shift
};

// Op::block(args, seed, base, lo, hi) returns the sum over the Philox block at `base`, clipped
// to [lo, hi), in acc_t<T>. seed is *args.seed when the Op must draw noise (z && !eps), else 0.
template <typename T, typename Op>
__global__ void __launch_bounds__(kThreads) row_reduce_kernel(const ReduceArgs<T> a) {
  using A = acc_t<T>;
  const int g = a.group;
  const int lane = threadIdx.x % g;
  const int64_t per_block = kThreads / g;
  const int64_t segments = a.rows * a.chunks;
  const uint64_t seed =
      a.z != nullptr && a.eps == nullptr ? static_cast<uint64_t>(*a.seed) : uint64_t(0);
  // The loop bound depends on blockIdx only, so every thread reaches group_sum together.
  for (int64_t first = blockIdx.x * per_block; first < segments;
       first += static_cast<int64_t>(gridDim.x) * per_block) {
    const int64_t seg = first + threadIdx.x / g;
    A sum = A(0);
    if (seg < segments) {
      const int64_t row = seg / a.chunks;
      const int64_t row_start = row * a.cols;
      const int64_t lo = row_start + (seg - row * a.chunks) * a.chunk_len;
      const int64_t hi = min(lo + a.chunk_len, row_start + a.cols);
      // The Philox blocks overlapping [lo, hi), consecutive lanes on consecutive blocks.
      for (int64_t base = (lo & ~int64_t(3)) + 4 * lane; base < hi; base += 4 * g)
        sum += Op::block(a, seed, base, lo, hi);
    }
    sum = group_sum(sum, g);
    if (lane == 0 && seg < segments) {
      if (a.chunks == 1) convert(a.scale * sum + a.shift, a.out[seg]);
      else a.partial[seg] = sum;
    }
  }
}

// One CUDA block per row adds that row's chunk partials in a fixed order.
template <typename T, typename A = acc_t<T>>
__global__ void __launch_bounds__(kThreads)
    finalize_kernel(const A* partial, T* out, int64_t rows, int64_t chunks, A scale, A shift) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    A sum = A(0);
    for (int64_t c = threadIdx.x; c < chunks; c += kThreads) sum += partial[row * chunks + c];
    sum = group_sum(sum, kThreads);
    if (threadIdx.x == 0) convert(scale * sum + shift, out[row]);
  }
}

// Grid-stride loop over the Philox blocks of n elements: block b is elements 4b..4b+3.
#define FASTGEN_FOR_EACH_BLOCK(b, n)                                              \
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;     \
       b < ((n) + 3) / 4; b += static_cast<int64_t>(gridDim.x) * kThreads)

// ------------------------------------------------------------------------------ host side

struct RowPlan {
  int group;
  int64_t chunk_len, chunks;
};

// A function of cols alone (not of the grid or the GPU's size): every run sums in one order.
inline RowPlan plan_rows(int64_t cols) {
  const int64_t threads = (cols + kItemsPerThread - 1) / kItemsPerThread;
  int group = 1;
  while (group < kThreads && group < threads) group *= 2;
  const int64_t chunk_len = static_cast<int64_t>(group) * kItemsPerThread;
  const int64_t chunks = cols > chunk_len ? (cols + chunk_len - 1) / chunk_len : 1;
  return {group, chunk_len, chunks};
}

template <typename T, typename... P>
bool all_aligned(const P*... p) {  // nullptr counts as aligned
  return ((reinterpret_cast<uintptr_t>(p) % sizeof(Pack4<T>) == 0) && ...);
}

inline unsigned grid_for(int64_t threads) {  // threads > 0
  const int64_t blocks = (threads + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < kMaxGrid ? blocks : kMaxGrid);
}

// Fills in the plan, runs the row sums (and the partials' sum when rows are long).
template <typename T, typename Op>
cudaError_t launch_row_reduce(ReduceArgs<T> a, void* workspace, cudaStream_t stream) {
  const RowPlan p = plan_rows(a.cols);
  if (a.rows == 0) return cudaSuccess;
  if (p.chunks > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  a.group = p.group;
  a.chunk_len = p.chunk_len;
  a.chunks = p.chunks;
  a.partial = static_cast<acc_t<T>*>(workspace);
  row_reduce_kernel<T, Op><<<grid_for(a.rows * p.chunks * p.group), kThreads, 0, stream>>>(a);
  if (p.chunks > 1) {
    const unsigned grid = static_cast<unsigned>(a.rows < kMaxGrid ? a.rows : kMaxGrid);
    finalize_kernel<T><<<grid, kThreads, 0, stream>>>(a.partial, a.out, a.rows, p.chunks,
                                                      a.scale, a.shift);
  }
  return cudaGetLastError();
}

}  // namespace
}  // namespace cuda
}  // namespace fastgen
