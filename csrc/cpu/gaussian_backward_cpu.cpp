// CPU backward of the Gaussian op family: one kernel for reparameterize, gaussian_kl and
// reparameterize_with_kl (grad_z and grad_kl are each optional). Drawn noise is regenerated
// from the seed tile by tile, so the forward never has to store it.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "../gaussian_checks.h"
#include "cpu_clones.h"
#include "noise_tile.h"
#include "row_sums.h"
#include "work_split.h"

namespace fastgen::cpu {
namespace {

using at::Tensor;

template <typename scalar_t>
struct BackwardArgs {
  const scalar_t* grad_z;   // null: no gradient flows into z
  const scalar_t* grad_kl;  // null: no gradient flows into the KL
  const scalar_t* mu;
  const scalar_t* logvar;
  const scalar_t* eps;
  scalar_t* grad_mu;
  scalar_t* grad_logvar;
};

// Raw __restrict pointers, not the args struct, so g++ can vectorize (see the forward).
template <typename scalar_t, typename acc_t, Noise kNoise>
FASTGEN_CPU_CLONES void backward_segment(
    const scalar_t* __restrict grad_z_data, const scalar_t* __restrict mu_data,
    const scalar_t* __restrict logvar_data, const scalar_t* __restrict eps_data,
    const acc_t* __restrict noise, acc_t grad_kl, scalar_t* __restrict grad_mu,
    scalar_t* __restrict grad_logvar, int64_t begin, int64_t end) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const acc_t mu = static_cast<acc_t>(mu_data[i]);
    const acc_t std = exp_acc(acc_t(0.5) * static_cast<acc_t>(logvar_data[i]));
    acc_t grad_z = acc_t(0), eps = acc_t(0);
    if constexpr (kNoise != Noise::kNone) {
      grad_z = static_cast<acc_t>(grad_z_data[i]);
      eps = kNoise == Noise::kDrawn ? noise[i] : static_cast<acc_t>(eps_data[i]);
    }
    const GaussianGrads<acc_t> g = gaussian_backward_term(grad_z, grad_kl, mu, std, eps);
    grad_mu[i] = static_cast<scalar_t>(g.mu);
    grad_logvar[i] = static_cast<scalar_t>(g.logvar);
  }
}

template <typename scalar_t, Noise kNoise>
void backward_all(const BackwardArgs<scalar_t>& args, const WorkSplit& split, uint64_t seed) {
  using acc_t = at::opmath_type<scalar_t>;
  at::parallel_for(0, split.items, kItemsPerTask, [&](int64_t first, int64_t last) {
    std::optional<NoiseTile<acc_t>> tile;
    if constexpr (kNoise == Noise::kDrawn) tile.emplace();
    for (int64_t index = first; index < last; ++index) {
      const WorkSplit::Item it = split.item(index);
      const acc_t* noise = nullptr;
      if constexpr (kNoise == Noise::kDrawn) noise = tile->generate_item(seed, split, it);
      for (int64_t row = it.row_begin; row < it.row_end; ++row) {
        const acc_t grad_kl = args.grad_kl ? static_cast<acc_t>(args.grad_kl[row]) : acc_t(0);
        const int64_t base = row * split.cols;
        backward_segment<scalar_t, acc_t, kNoise>(args.grad_z, args.mu, args.logvar, args.eps,
                                                  noise, grad_kl, args.grad_mu, args.grad_logvar,
                                                  base + it.col_begin, base + it.col_end);
      }
    }
  });
}

}  // namespace

std::tuple<Tensor, Tensor> reparameterize_backward(
    const std::optional<Tensor>& grad_z_in, const std::optional<Tensor>& grad_kl_in,
    const Tensor& mu_in, const Tensor& logvar_in, const std::optional<Tensor>& eps_in,
    const std::optional<Tensor>& seed) {
  const bool has_grad_z = grad_z_in.has_value();
  check_gaussian_inputs(mu_in, logvar_in, has_grad_z ? eps_in : std::nullopt,
                        has_grad_z ? seed : std::nullopt, has_grad_z, "cpu");
  if (has_grad_z) check_like(*grad_z_in, mu_in, "grad_z", "mu");
  const Tensor mu = mu_in.contiguous(), logvar = logvar_in.contiguous();
  const Tensor grad_z = has_grad_z ? grad_z_in->contiguous() : Tensor();
  const Tensor eps = has_grad_z && eps_in.has_value() ? eps_in->contiguous() : Tensor();
  Tensor grad_kl;
  if (grad_kl_in.has_value()) {
    TORCH_CHECK(grad_kl_in->dim() == 1 && grad_kl_in->size(0) == mu.size(0),
                "fastgen: grad_kl must have shape (", mu.size(0), ",), got ", grad_kl_in->sizes());
    grad_kl = grad_kl_in->to(mu.scalar_type()).contiguous();
  }
  const WorkSplit split(mu.size(0), mu.size(0) == 0 ? 0 : mu.numel() / mu.size(0));
  Tensor grad_mu = at::empty_like(mu), grad_logvar = at::empty_like(mu);
  const uint64_t seed_value =
      has_grad_z && !eps.defined() ? static_cast<uint64_t>(seed->item<int64_t>()) : 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mu.scalar_type(), "gaussian_backward", [&] {
    const BackwardArgs<scalar_t> args{
        has_grad_z ? grad_z.const_data_ptr<scalar_t>() : nullptr,
        grad_kl.defined() ? grad_kl.const_data_ptr<scalar_t>() : nullptr,
        mu.const_data_ptr<scalar_t>(),
        logvar.const_data_ptr<scalar_t>(),
        eps.defined() ? eps.const_data_ptr<scalar_t>() : nullptr,
        grad_mu.mutable_data_ptr<scalar_t>(),
        grad_logvar.mutable_data_ptr<scalar_t>()};
    if (!has_grad_z) {
      backward_all<scalar_t, Noise::kNone>(args, split, seed_value);
    } else if (eps.defined()) {
      backward_all<scalar_t, Noise::kGiven>(args, split, seed_value);
    } else {
      backward_all<scalar_t, Noise::kDrawn>(args, split, seed_value);
    }
  });
  return {grad_mu, grad_logvar};
}

TORCH_LIBRARY_IMPL(fastgen, CPU, m) {
  m.impl("reparameterize_backward", &reparameterize_backward);
}

}  // namespace fastgen::cpu
