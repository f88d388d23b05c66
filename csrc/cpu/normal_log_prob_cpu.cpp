// CPU kernels of standard_normal_log_prob (per-sample log N(z; 0, I)) and its backward.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "../gaussian_checks.h"
#include "cpu_clones.h"
#include "fastgen/gaussian_math.h"
#include "row_sums.h"
#include "work_split.h"

namespace fastgen::cpu {
namespace {

using at::Tensor;

template <typename scalar_t, typename acc_t>
FASTGEN_CPU_CLONES acc_t sum_of_squares(const scalar_t* __restrict z, int64_t begin, int64_t end) {
  acc_t sum = acc_t(0);
#pragma omp simd reduction(+ : sum)
  for (int64_t i = begin; i < end; ++i) {
    const acc_t value = static_cast<acc_t>(z[i]);
    sum += value * value;
  }
  return sum;
}

template <typename scalar_t, typename acc_t>
FASTGEN_CPU_CLONES void scale_negated(const scalar_t* __restrict z, acc_t grad,
                                      scalar_t* __restrict out, int64_t begin, int64_t end) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) out[i] = static_cast<scalar_t>(-grad * static_cast<acc_t>(z[i]));
}

Tensor standard_normal_log_prob(const Tensor& z_in) {
  check_float_tensor(z_in, "z");
  const Tensor z = z_in.contiguous();
  const WorkSplit split(z.size(0), z.size(0) == 0 ? 0 : z.numel() / z.size(0));
  Tensor out = at::empty({split.rows}, z.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "normal_log_prob", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    Tensor partials = at::empty({split.rows, split.chunks_per_row},
                                z.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    const scalar_t* z_data = z.const_data_ptr<scalar_t>();
    acc_t* partial_data = partials.mutable_data_ptr<acc_t>();
    for_each_segment(split, [&](int64_t row, int64_t chunk, int64_t begin, int64_t end) {
      partial_data[row * split.chunks_per_row + chunk] = sum_of_squares<scalar_t, acc_t>(z_data, begin, end);
    });
    finish_row_sums<scalar_t, acc_t>(partial_data, split, -0.5,
                                     -static_cast<double>(split.cols) * kHalfLog2Pi,
                                     out.mutable_data_ptr<scalar_t>());
  });
  return out;
}

Tensor standard_normal_log_prob_backward(const Tensor& grad_in, const Tensor& z_in) {
  check_float_tensor(z_in, "z");
  TORCH_CHECK(grad_in.dim() == 1 && grad_in.size(0) == z_in.size(0),
              "fastgen: grad must have shape (", z_in.size(0), ",), got ", grad_in.sizes());
  const Tensor z = z_in.contiguous();
  const Tensor grad = grad_in.to(z.scalar_type()).contiguous();
  const WorkSplit split(z.size(0), z.size(0) == 0 ? 0 : z.numel() / z.size(0));
  Tensor grad_z = at::empty_like(z);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, z.scalar_type(), "normal_log_prob_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* z_data = z.const_data_ptr<scalar_t>();
    const scalar_t* grad_data = grad.const_data_ptr<scalar_t>();
    scalar_t* out = grad_z.mutable_data_ptr<scalar_t>();
    for_each_segment(split, [&](int64_t row, int64_t, int64_t begin, int64_t end) {
      scale_negated<scalar_t, acc_t>(z_data, static_cast<acc_t>(grad_data[row]), out, begin, end);
    });
  });
  return grad_z;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgen, CPU, m) {
  m.impl("standard_normal_log_prob", &standard_normal_log_prob);
  m.impl("standard_normal_log_prob_backward", &standard_normal_log_prob_backward);
}

}  // namespace fastgen::cpu
