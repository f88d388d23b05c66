// The persistent WaveNet decoder's torch glue (CUDA builds only): the internal ops
// fastgen::wavenet_decoder_cuda (a block per sample) and fastgen::wavenet_decoder_cluster_cuda (a
// thread-block cluster per sample, sm_90+), called by the CUDA implementation of wavenet_generate
// (fastgen/ops/_wavenet_decoder_cuda.py), which packs the weights and plans the shared memory.
// Here: argument checks, device guard, the ring pointers and dilations on the device, the launch
// on the current stream (kernels/wavenet/).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>
#include <vector>

#include "../../kernels/wavenet/wavenet_decoder_kernels.h"
#include "kernel_dtype.h"

namespace {

namespace fk = fastgen::cuda;
using at::Tensor;

void check_tensor(const Tensor& t, const char* name, const Tensor& like, at::IntArrayRef shape) {
  TORCH_CHECK(t.is_cuda() && t.device() == like.device(), "fastgen: wavenet_decoder_cuda: ", name,
              " must be on ", like.device(), ", got ", t.device());
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), "fastgen: wavenet_decoder_cuda: ", name, " must be ",
              like.scalar_type(), ", got ", t.scalar_type());
  TORCH_CHECK(t.sizes() == shape, "fastgen: wavenet_decoder_cuda: ", name, " must have shape ", shape, ", got ",
              t.sizes());
  TORCH_CHECK(t.is_contiguous(), "fastgen: wavenet_decoder_cuda: ", name, " must be contiguous");
}

// A checked call: the shape, dtype, device buffers (ring pointers and dilations copied to the
// device) and output of either kernel. shape: layers, K, R, G, S, H, levels, C_cond.
struct DecoderCall {
  fastgen::decoder::Shape shape;
  fk::DType dtype;
  int64_t n, steps;
  Tensor rings, dilations, codes;  // kept alive until the launch is enqueued
  fk::DecoderBuffers buffers;
};

DecoderCall prepare(at::TensorList states, const Tensor& first_input, const Tensor& uniforms, const Tensor& embedding,
                    const Tensor& weights, const std::optional<Tensor>& cond, at::IntArrayRef dilations,
                    at::IntArrayRef shape) {
  TORCH_CHECK(shape.size() == 8, "fastgen: wavenet_decoder_cuda: shape must have 8 entries, got ", shape.size());
  const fastgen::decoder::Shape s{shape[0], shape[1], shape[2], shape[3], shape[4], shape[5], shape[6], shape[7]};
  TORCH_CHECK(first_input.is_cuda(), "fastgen: wavenet_decoder_cuda: first_input must be a CUDA tensor");
  const auto dtype = fastgen::kernel_dtype(first_input, "wavenet_decoder_cuda: first_input");
  const int64_t n = first_input.size(0), steps = uniforms.size(1);
  TORCH_CHECK(static_cast<int64_t>(states.size()) == s.layers && static_cast<int64_t>(dilations.size()) == s.layers,
              "fastgen: wavenet_decoder_cuda: states and dilations must have one entry per layer (", s.layers, ")");
  check_tensor(first_input, "first_input", first_input, {n, s.residual});
  check_tensor(uniforms, "uniforms", first_input, {n, steps});
  check_tensor(embedding, "embedding", first_input, {s.levels, s.residual});
  check_tensor(weights, "weights", first_input, {fastgen::decoder::weight_elems(s)});
  TORCH_CHECK(cond.has_value() == (s.cond > 0), "fastgen: wavenet_decoder_cuda: cond must be given exactly when "
              "shape's C_cond > 0");
  if (cond.has_value()) check_tensor(*cond, "cond", first_input, {n, steps, s.cond});
  std::vector<int64_t> ring_addresses;
  for (int64_t l = 0; l < s.layers; ++l) {
    TORCH_CHECK(dilations[l] >= 1, "fastgen: wavenet_decoder_cuda: dilations must be >= 1, got ", dilations[l]);
    check_tensor(states[l], "states[l]", first_input, {n, dilations[l] * (s.kernel_size - 1), s.residual});
    ring_addresses.push_back(reinterpret_cast<int64_t>(states[l].data_ptr()));
  }
  // Small host-to-device copies (pageable, so synchronous: before the launch that reads them).
  Tensor rings = at::tensor(ring_addresses, at::kLong).to(first_input.device());
  Tensor dilation_tensor = at::tensor(dilations.vec(), at::kLong).to(first_input.device());
  Tensor codes = at::empty({n, steps}, first_input.options().dtype(at::kLong));
  const fk::DecoderBuffers buffers{reinterpret_cast<void* const*>(rings.data_ptr<int64_t>()),
                                   dilation_tensor.data_ptr<int64_t>(), first_input.data_ptr(), uniforms.data_ptr(),
                                   embedding.data_ptr(), weights.data_ptr(),
                                   cond.has_value() ? cond->data_ptr() : nullptr, codes.data_ptr<int64_t>()};
  return {s, dtype, n, steps, rings, dilation_tensor, codes, buffers};
}

Tensor wavenet_decoder_cuda(at::TensorList states, const Tensor& first_input, const Tensor& uniforms,
                            const Tensor& embedding, const Tensor& weights, const std::optional<Tensor>& cond,
                            at::IntArrayRef dilations, at::IntArrayRef shape, int64_t start, int64_t resident_elems,
                            int64_t threads) {
  const c10::cuda::CUDAGuard guard(first_input.device());
  const DecoderCall call = prepare(states, first_input, uniforms, embedding, weights, cond, dilations, shape);
  const cudaError_t status =
      fk::launch_wavenet_decoder(call.dtype, call.buffers, call.shape, call.n, call.steps, start, resident_elems,
                                 static_cast<int>(threads), c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(status == cudaSuccess, "fastgen: wavenet_decoder_cuda: launch failed: ", cudaGetErrorString(status),
              " (", fk::wavenet_decoder_smem_bytes(call.dtype, call.shape, resident_elems), " bytes of shared memory, ",
              threads, " threads)");
  return call.codes;
}

Tensor wavenet_decoder_cluster_cuda(at::TensorList states, const Tensor& first_input, const Tensor& uniforms,
                                    const Tensor& embedding, const Tensor& weights,
                                    const std::optional<Tensor>& cond, at::IntArrayRef dilations,
                                    at::IntArrayRef shape, int64_t start, int64_t cluster, int64_t resident_layers,
                                    bool head_resident, int64_t threads) {
  const c10::cuda::CUDAGuard guard(first_input.device());
  const DecoderCall call = prepare(states, first_input, uniforms, embedding, weights, cond, dilations, shape);
  const fastgen::decoder::ClusterPlan plan{cluster, resident_layers, head_resident};
  const cudaError_t status =
      fk::launch_wavenet_decoder_cluster(call.dtype, call.buffers, call.shape, call.n, call.steps, start, plan,
                                         static_cast<int>(threads), c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(status == cudaSuccess, "fastgen: wavenet_decoder_cluster_cuda: launch failed: ",
              cudaGetErrorString(status), " (clusters of ", cluster, " blocks of ", threads, " threads, ",
              fk::wavenet_decoder_cluster_smem_bytes(call.dtype, call.shape, plan),
              " bytes of shared memory each; clusters need sm_90+)");
  return call.codes;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastgen, m) {
  m.def("wavenet_decoder_cuda(Tensor(a!)[] states, Tensor first_input, Tensor uniforms, Tensor embedding, "
        "Tensor weights, Tensor? cond, int[] dilations, int[] shape, int start, int resident_elems, int threads) "
        "-> Tensor");
  m.def("wavenet_decoder_cluster_cuda(Tensor(a!)[] states, Tensor first_input, Tensor uniforms, "
        "Tensor embedding, Tensor weights, Tensor? cond, int[] dilations, int[] shape, int start, int cluster, "
        "int resident_layers, bool head_resident, int threads) -> Tensor");
}

TORCH_LIBRARY_IMPL(fastgen, CUDA, m) {
  m.impl("wavenet_decoder_cuda", &wavenet_decoder_cuda);
  m.impl("wavenet_decoder_cluster_cuda", &wavenet_decoder_cluster_cuda);
}
