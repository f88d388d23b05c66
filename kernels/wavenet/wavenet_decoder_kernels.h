// Host launcher of the persistent WaveNet decoder (wavenet_decoder.cu): a whole categorical
// WaveNet generating T steps for N samples in one launch, one CUDA block per sample. Torch-free
// (raw pointers, cudaStream_t) so nvcc compiles it on machines whose torch has no CUDA; the
// torch glue is csrc/cuda/wavenet_decoder_cuda.cpp.
#pragma once
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "fastgen/cuda_dtype.h"
#include "wavenet_decoder_layout.h"

namespace fastgen {
namespace cuda {

// Device pointers, every tensor dense and of the model's dtype unless said otherwise.
struct DecoderBuffers {
  void* const* rings;         // device array of `layers` pointers, ring l: (N, dilation_l * (K - 1), R)
  const int64_t* dilations;   // device, per layer
  const void* first_input;    // (N, R)
  const void* uniforms;       // (N, T)
  const void* embedding;      // (levels, R)
  const void* weights;        // packed as in wavenet_decoder_layout.h
  const void* cond;           // (N, T, C_cond), or nullptr when shape.cond == 0
  int64_t* codes;             // (N, T) int64, written
};

// Shared memory one block needs with the first `resident_elems` packed weights on chip.
size_t wavenet_decoder_smem_bytes(DType dtype, const decoder::Shape& shape, int64_t resident_elems);

// Enqueues the generation of `steps` codes per sample from position `start` on `stream`; the
// rings are read and updated in place. `threads`: a multiple of 32 in [32, 512]. Returns
// cudaErrorInvalidValue for bad sizes (nothing launched), else cudaGetLastError().
cudaError_t launch_wavenet_decoder(DType dtype, const DecoderBuffers& buffers, const decoder::Shape& shape,
                                   int64_t batch, int64_t steps, int64_t start, int64_t resident_elems,
                                   int threads, cudaStream_t stream);

// Shared memory of one block of the cluster decoder under `plan`.
size_t wavenet_decoder_cluster_smem_bytes(DType dtype, const decoder::Shape& shape,
                                          const decoder::ClusterPlan& plan);

// The same generation with `plan.cluster` blocks (1..16) per sample, a thread-block cluster each,
// `threads` at most 256
// (wavenet_decoder_cluster.h). Returns cudaErrorNotSupported below sm_90 and
// cudaErrorInvalidConfiguration when one cluster of this size and shared memory cannot be
// resident on the GPU (nothing launched in either case).
cudaError_t launch_wavenet_decoder_cluster(DType dtype, const DecoderBuffers& buffers,
                                           const decoder::Shape& shape, int64_t batch, int64_t steps, int64_t start,
                                           const decoder::ClusterPlan& plan, int threads, cudaStream_t stream);

}  // namespace cuda
}  // namespace fastgen
