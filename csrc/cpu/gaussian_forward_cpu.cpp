// CPU forward kernels of the Gaussian op family: reparameterize, gaussian_kl and
// reparameterize_with_kl.
//
// One pass over memory: noise is generated tile by tile in cache (never written to a
// full-size tensor) and z and the per-row KL come out of the same loop.
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

template <typename scalar_t, typename acc_t>
struct ForwardArgs {
  const scalar_t* mu;
  const scalar_t* logvar;
  const scalar_t* eps;
  scalar_t* z;
  acc_t* kl_partials;  // (rows, chunks_per_row)
};

// z and/or the KL partial sum of elements [begin, end). Raw __restrict pointers rather than
// the args struct: through a struct reference g++ cannot prove the loads independent of the
// stores and falls back to the scalar loop.
template <typename scalar_t, typename acc_t, bool kWantZ, bool kWantKl, Noise kNoise>
FASTGEN_CPU_CLONES acc_t forward_segment(const scalar_t* __restrict mu_data,
                                         const scalar_t* __restrict logvar_data,
                                         const scalar_t* __restrict eps_data,
                                         const acc_t* __restrict noise, scalar_t* __restrict z,
                                         int64_t begin, int64_t end) {
  acc_t kl_sum = acc_t(0);
#pragma omp simd reduction(+ : kl_sum)
  for (int64_t i = begin; i < end; ++i) {
    const acc_t mu = static_cast<acc_t>(mu_data[i]);
    const acc_t logvar = static_cast<acc_t>(logvar_data[i]);
    const acc_t std = exp_acc(acc_t(0.5) * logvar);
    if constexpr (kWantZ) {
      const acc_t eps = kNoise == Noise::kDrawn ? noise[i] : static_cast<acc_t>(eps_data[i]);
      z[i] = static_cast<scalar_t>(mu + std * eps);
    }
    if constexpr (kWantKl) kl_sum += gaussian_kl_term(mu, logvar, std * std);
  }
  return kl_sum;
}

template <typename scalar_t, bool kWantZ, bool kWantKl, Noise kNoise>
void forward_all(const ForwardArgs<scalar_t, at::opmath_type<scalar_t>>& args,
                 const WorkSplit& split, uint64_t seed) {
  using acc_t = at::opmath_type<scalar_t>;
  at::parallel_for(0, split.items, kItemsPerTask, [&](int64_t first, int64_t last) {
    std::optional<NoiseTile<acc_t>> tile;
    if constexpr (kNoise == Noise::kDrawn) tile.emplace();
    for (int64_t index = first; index < last; ++index) {
      const WorkSplit::Item it = split.item(index);
      const acc_t* noise = nullptr;
      if constexpr (kNoise == Noise::kDrawn) noise = tile->generate_item(seed, split, it);
      for (int64_t row = it.row_begin; row < it.row_end; ++row) {
        const int64_t base = row * split.cols;
        const acc_t sum = forward_segment<scalar_t, acc_t, kWantZ, kWantKl, kNoise>(
            args.mu, args.logvar, args.eps, noise, args.z, base + it.col_begin, base + it.col_end);
        if constexpr (kWantKl) args.kl_partials[row * split.chunks_per_row + it.chunk] = sum;
      }
    }
  });
}

std::tuple<Tensor, Tensor> gaussian_forward(const Tensor& mu_in, const Tensor& logvar_in,
                                            const std::optional<Tensor>& eps_in,
                                            const std::optional<Tensor>& seed, bool want_z,
                                            bool want_kl) {
  check_gaussian_inputs(mu_in, logvar_in, eps_in, seed, want_z, "cpu");
  const Tensor mu = mu_in.contiguous(), logvar = logvar_in.contiguous();
  const Tensor eps = want_z && eps_in.has_value() ? eps_in->contiguous() : Tensor();
  const WorkSplit split(mu.size(0), mu.size(0) == 0 ? 0 : mu.numel() / mu.size(0));
  Tensor z = want_z ? at::empty_like(mu) : Tensor();
  Tensor kl = want_kl ? at::empty({split.rows}, mu.options()) : Tensor();
  const uint64_t seed_value =
      want_z && !eps.defined() ? static_cast<uint64_t>(seed->item<int64_t>()) : 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mu.scalar_type(), "gaussian_forward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    Tensor partials = want_kl ? at::empty({split.rows, split.chunks_per_row},
                                          mu.options().dtype(c10::CppTypeToScalarType<acc_t>::value))
                              : Tensor();
    const ForwardArgs<scalar_t, acc_t> args{
        mu.const_data_ptr<scalar_t>(), logvar.const_data_ptr<scalar_t>(),
        eps.defined() ? eps.const_data_ptr<scalar_t>() : nullptr,
        want_z ? z.mutable_data_ptr<scalar_t>() : nullptr,
        want_kl ? partials.mutable_data_ptr<acc_t>() : nullptr};
    if (!want_z) {
      forward_all<scalar_t, false, true, Noise::kNone>(args, split, seed_value);
    } else if (eps.defined()) {
      want_kl ? forward_all<scalar_t, true, true, Noise::kGiven>(args, split, seed_value)
              : forward_all<scalar_t, true, false, Noise::kGiven>(args, split, seed_value);
    } else {
      want_kl ? forward_all<scalar_t, true, true, Noise::kDrawn>(args, split, seed_value)
              : forward_all<scalar_t, true, false, Noise::kDrawn>(args, split, seed_value);
    }
    if (want_kl) {
      finish_row_sums<scalar_t, acc_t>(partials.const_data_ptr<acc_t>(), split, 1.0, 0.0,
                                       kl.mutable_data_ptr<scalar_t>());
    }
  });
  return {z, kl};
}

Tensor reparameterize(const Tensor& mu, const Tensor& logvar, const std::optional<Tensor>& eps,
                      const std::optional<Tensor>& seed) {
  return std::get<0>(gaussian_forward(mu, logvar, eps, seed, true, false));
}

Tensor gaussian_kl(const Tensor& mu, const Tensor& logvar) {
  return std::get<1>(gaussian_forward(mu, logvar, std::nullopt, std::nullopt, false, true));
}

std::tuple<Tensor, Tensor> reparameterize_with_kl(const Tensor& mu, const Tensor& logvar,
                                                  const std::optional<Tensor>& eps,
                                                  const std::optional<Tensor>& seed) {
  return gaussian_forward(mu, logvar, eps, seed, true, true);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgen, CPU, m) {
  m.impl("reparameterize", &reparameterize);
  m.impl("gaussian_kl", &gaussian_kl);
  m.impl("reparameterize_with_kl", &reparameterize_with_kl);
}

}  // namespace fastgen::cpu
