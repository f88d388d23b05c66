// CUDA dispatch of the Gaussian op family: argument checks, device guard, outputs and
// workspace, then the torch-free launchers of kernels/gaussian.
//
// Why the split: the kernels take raw pointers and a cudaStream_t so nvcc can compile them
// without torch (CI's torch has no CUDA); everything torch-specific lives here. Built only when
// torch has CUDA (setup.py adds csrc/cuda/*.cpp and kernels/**/*.cu together).
//
// Why the current stream and a device-side seed: kernels enqueued on PyTorch's current stream
// order correctly with the surrounding ops and are captured by CUDA graphs; the seed stays on the
// GPU (the kernels read it through a pointer) because copying it to the host would synchronize
// and break graph capture.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "../../kernels/gaussian/gaussian_kernels.h"
#include "../gaussian_checks.h"
#include "kernel_dtype.h"

namespace {

namespace fk = fastgen::cuda;
using fastgen::check_float_tensor;
using fastgen::check_gaussian_inputs;
using fastgen::check_like;
using fastgen::kernel_dtype;

// The first dim is the batch (rows); the others are flattened into the columns.
struct Rows {
  int64_t rows, cols;
};

Rows rows_of(const at::Tensor& t) {
  int64_t cols = 1;
  for (int64_t d = 1; d < t.dim(); ++d) cols *= t.size(d);
  return {t.size(0), cols};
}

// A per-row tensor (the grad of kl or of log_prob) for `ref`: shape (rows,), on ref's device
// (the dispatcher sends a call here when any argument is on the GPU, so a CPU one can arrive),
// converted to ref's dtype as the CPU kernels do.
at::Tensor per_row(const at::Tensor& t, const char* name, const at::Tensor& ref,
                   const char* ref_name) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == ref.size(0), "fastgen: ", name, " must have shape (",
              ref.size(0), ",), got ", t.sizes());
  TORCH_CHECK(t.device() == ref.device(), "fastgen: ", name, " must be on the device of ",
              ref_name, " (", ref.device(), "), got ", t.device());
  return t.to(ref.scalar_type()).contiguous();
}

void check_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), "fastgen: ", name, " must be a CUDA tensor here, got ", t.device());
}

// Scratch for the row sums, from the caching allocator (ordered on the current stream).
at::Tensor workspace_for(const at::Tensor& like, fk::DType dtype, Rows r) {
  const size_t bytes = fk::gaussian_workspace_bytes(dtype, r.rows, r.cols);
  return at::empty({static_cast<int64_t>(bytes)}, like.options().dtype(at::kByte));
}

const void* ptr_or_null(const at::Tensor& t) {
  return t.defined() && t.numel() > 0 ? t.const_data_ptr() : nullptr;
}

void* mutable_ptr_or_null(const at::Tensor& t) {
  return t.defined() && t.numel() > 0 ? t.mutable_data_ptr() : nullptr;
}

void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, "fastgen::", op, ": CUDA kernel launch failed: ",
              cudaGetErrorString(err));
}

// Shared by reparameterize, gaussian_kl and reparameterize_with_kl: (z, kl), the one not
// asked for undefined.
std::tuple<at::Tensor, at::Tensor> gaussian_forward(const at::Tensor& mu_in,
                                                    const at::Tensor& logvar_in,
                                                    const std::optional<at::Tensor>& eps_in,
                                                    const std::optional<at::Tensor>& seed,
                                                    bool want_z, bool want_kl, const char* op) {
  check_gaussian_inputs(mu_in, logvar_in, eps_in, seed, want_z, "cuda");
  const fk::DType dtype = kernel_dtype(mu_in, "mu");
  const c10::cuda::CUDAGuard guard(mu_in.device());
  const at::Tensor mu = mu_in.contiguous(), logvar = logvar_in.contiguous();
  const at::Tensor eps = want_z && eps_in.has_value() ? eps_in->contiguous() : at::Tensor();
  // The kernels read the seed through this pointer: no copy to the host, no sync.
  const int64_t* seed_data =
      want_z && !eps.defined() ? seed->const_data_ptr<int64_t>() : nullptr;
  const Rows r = rows_of(mu);
  const at::Tensor z = want_z ? at::empty(mu.sizes(), mu.options()) : at::Tensor();
  const at::Tensor kl = want_kl ? at::empty({r.rows}, mu.options()) : at::Tensor();
  const at::Tensor workspace = want_kl ? workspace_for(mu, dtype, r) : at::Tensor();
  check_launch(fk::launch_gaussian_forward(dtype, ptr_or_null(mu), ptr_or_null(logvar),
                                           ptr_or_null(eps), seed_data, mutable_ptr_or_null(z),
                                           mutable_ptr_or_null(kl), mutable_ptr_or_null(workspace),
                                           r.rows, r.cols, c10::cuda::getCurrentCUDAStream()),
               op);
  return {z, kl};
}

at::Tensor reparameterize_cuda(const at::Tensor& mu, const at::Tensor& logvar,
                               const std::optional<at::Tensor>& eps,
                               const std::optional<at::Tensor>& seed) {
  return std::get<0>(gaussian_forward(mu, logvar, eps, seed, true, false, "reparameterize"));
}

at::Tensor gaussian_kl_cuda(const at::Tensor& mu, const at::Tensor& logvar) {
  return std::get<1>(
      gaussian_forward(mu, logvar, std::nullopt, std::nullopt, false, true, "gaussian_kl"));
}

std::tuple<at::Tensor, at::Tensor> reparameterize_with_kl_cuda(
    const at::Tensor& mu, const at::Tensor& logvar, const std::optional<at::Tensor>& eps,
    const std::optional<at::Tensor>& seed) {
  return gaussian_forward(mu, logvar, eps, seed, true, true, "reparameterize_with_kl");
}

std::tuple<at::Tensor, at::Tensor> reparameterize_backward_cuda(
    const std::optional<at::Tensor>& grad_z_in, const std::optional<at::Tensor>& grad_kl_in,
    const at::Tensor& mu_in, const at::Tensor& logvar_in, const std::optional<at::Tensor>& eps_in,
    const std::optional<at::Tensor>& seed) {
  // Without grad_z the noise is not needed, so eps and seed are then neither checked nor read.
  const bool has_grad_z = grad_z_in.has_value();
  check_gaussian_inputs(mu_in, logvar_in, has_grad_z ? eps_in : std::nullopt,
                        has_grad_z ? seed : std::nullopt, has_grad_z, "cuda");
  if (has_grad_z) check_like(*grad_z_in, mu_in, "grad_z", "mu");
  const fk::DType dtype = kernel_dtype(mu_in, "mu");
  const c10::cuda::CUDAGuard guard(mu_in.device());
  const at::Tensor mu = mu_in.contiguous(), logvar = logvar_in.contiguous();
  const at::Tensor grad_z = has_grad_z ? grad_z_in->contiguous() : at::Tensor();
  const at::Tensor eps = has_grad_z && eps_in.has_value() ? eps_in->contiguous() : at::Tensor();
  const at::Tensor grad_kl =
      grad_kl_in.has_value() ? per_row(*grad_kl_in, "grad_kl", mu, "mu") : at::Tensor();
  const int64_t* seed_data =
      has_grad_z && !eps.defined() ? seed->const_data_ptr<int64_t>() : nullptr;
  const Rows r = rows_of(mu);
  const at::Tensor grad_mu = at::empty(mu.sizes(), mu.options());
  const at::Tensor grad_logvar = at::empty(mu.sizes(), mu.options());
  check_launch(fk::launch_gaussian_backward(
                   dtype, ptr_or_null(grad_z), ptr_or_null(grad_kl), ptr_or_null(mu),
                   ptr_or_null(logvar), ptr_or_null(eps), seed_data, mutable_ptr_or_null(grad_mu),
                   mutable_ptr_or_null(grad_logvar), r.rows, r.cols,
                   c10::cuda::getCurrentCUDAStream()),
               "reparameterize_backward");
  return {grad_mu, grad_logvar};
}

at::Tensor standard_normal_log_prob_cuda(const at::Tensor& z_in) {
  check_float_tensor(z_in, "z");
  check_cuda(z_in, "z");
  const fk::DType dtype = kernel_dtype(z_in, "z");
  const c10::cuda::CUDAGuard guard(z_in.device());
  const at::Tensor z = z_in.contiguous();
  const Rows r = rows_of(z);
  const at::Tensor out = at::empty({r.rows}, z.options());
  const at::Tensor workspace = workspace_for(z, dtype, r);
  check_launch(fk::launch_normal_log_prob(dtype, ptr_or_null(z), mutable_ptr_or_null(out),
                                          mutable_ptr_or_null(workspace), r.rows, r.cols,
                                          c10::cuda::getCurrentCUDAStream()),
               "standard_normal_log_prob");
  return out;
}

at::Tensor standard_normal_log_prob_backward_cuda(const at::Tensor& grad_in,
                                                  const at::Tensor& z_in) {
  check_float_tensor(z_in, "z");
  check_cuda(z_in, "z");
  const fk::DType dtype = kernel_dtype(z_in, "z");
  const c10::cuda::CUDAGuard guard(z_in.device());
  const at::Tensor z = z_in.contiguous();
  const at::Tensor grad = per_row(grad_in, "grad", z, "z");
  const Rows r = rows_of(z);
  const at::Tensor grad_z = at::empty(z.sizes(), z.options());
  check_launch(fk::launch_normal_log_prob_backward(dtype, ptr_or_null(grad), ptr_or_null(z),
                                                   mutable_ptr_or_null(grad_z), r.rows, r.cols,
                                                   c10::cuda::getCurrentCUDAStream()),
               "standard_normal_log_prob_backward");
  return grad_z;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgen, CUDA, m) {
  m.impl("reparameterize", TORCH_FN(reparameterize_cuda));
  m.impl("gaussian_kl", TORCH_FN(gaussian_kl_cuda));
  m.impl("reparameterize_with_kl", TORCH_FN(reparameterize_with_kl_cuda));
  m.impl("reparameterize_backward", TORCH_FN(reparameterize_backward_cuda));
  m.impl("standard_normal_log_prob", TORCH_FN(standard_normal_log_prob_cuda));
  m.impl("standard_normal_log_prob_backward", TORCH_FN(standard_normal_log_prob_backward_cuda));
}
