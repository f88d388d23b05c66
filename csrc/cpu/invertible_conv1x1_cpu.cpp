// invertible_conv1x1 (Glow's 1x1 convolution, a C x C channel mixing per position) and its
// backward, for CPU and (in CUDA builds) CUDA.
//
// x (N, C, *spatial) is (N, C, L) with L = prod(spatial); per sample y_n = M x_n, one batched
// GEMM with M broadcast over the batch (stride 0, no copy). The work is matrix-bound, so it is
// left to BLAS (MKL on CPU, cuBLAS on GPU) through ATen, and the same code serves both devices:
//   forward   y_n = M x_n,            logdet = +-L * logabsdet (reverse: M = W^-1, sign -)
//   backward  gx_n = M^T gy_n,        gM = sum_n gy_n x_n^T,   glogabsdet = +-L * sum_n glogdet[n]
// gM is summed deterministically on CPU: the samples are cut into a fixed number of groups (not
// depending on the thread count), each group's per-sample products summed in order by one
// thread, then the group partials in order. float16/bfloat16 run in float32 (inputs upcast
// once, outputs rounded once); the log-determinant stays float32. With a float16/bfloat16 x the
// matrix may be float32 (then used as it is; its gradient is float32 too).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <optional>
#include <tuple>

#include "../flow_checks.h"
#include "conv_common.h"

namespace fastgen::cpu {
namespace {

using at::Tensor;

// Below this many multiply-adds per group of gM, fewer groups (threads wake for nothing).
constexpr int64_t kMinGroupWork = 1 << 18;

int64_t positions_of(const Tensor& x) {
  int64_t L = 1;
  for (int64_t d = 2; d < x.dim(); ++d) L *= x.size(d);
  return L;
}

// x as (N, C, L) in the accumulation dtype, contiguous (a view when it already is).
Tensor as_acc_3d(const Tensor& t, at::ScalarType acc, int64_t L) {
  const Tensor c = (t.scalar_type() == acc ? t : t.to(acc)).contiguous();
  return c.view({c.size(0), c.size(1), L});
}

// out (N, C, L) = M (C, C) @ t_n per sample.
Tensor mix(const Tensor& M, const Tensor& t3) {
  const int64_t N = t3.size(0), C = t3.size(1);
  return at::bmm(M.expand({N, C, C}), t3);
}

// sum_n gy_n x_n^T, (C, C) in the accumulation dtype.
Tensor grad_matrix(const Tensor& gy3, const Tensor& x3) {
  const int64_t N = gy3.size(0), C = gy3.size(1), L = gy3.size(2);
  if (!gy3.is_cpu()) return at::bmm(gy3, x3.transpose(1, 2)).sum(0);
  const int64_t work = N * C * C * std::max<int64_t>(L, 1);
  const int64_t groups = std::max<int64_t>(1, std::min({N, kWeightGroups, work / kMinGroupWork}));
  Tensor partials = at::zeros({groups, C, C}, gy3.options());
  if (N == 0 || C == 0 || L == 0) return partials.sum(0);
  AT_DISPATCH_FLOATING_TYPES(gy3.scalar_type(), "invertible_conv1x1_grad_matrix", [&] {
    scalar_t* part = partials.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
      BelowAutograd below_in_worker;
      for (int64_t g = begin; g < end; ++g) {
        const int64_t n0 = g * N / groups, n1 = (g + 1) * N / groups;
        const Tensor prods = at::bmm(gy3.slice(0, n0, n1), x3.slice(0, n0, n1).transpose(1, 2)).contiguous();
        const scalar_t* p = prods.const_data_ptr<scalar_t>();
        scalar_t* acc = part + g * C * C;
        for (int64_t n = 0; n < n1 - n0; ++n) {
          for (int64_t i = 0; i < C * C; ++i) acc[i] += p[n * C * C + i];
        }
      }
    });
    // The group partials, in group order, into group 0.
    for (int64_t g = 1; g < groups; ++g) {
      for (int64_t i = 0; i < C * C; ++i) part[i] += part[g * C * C + i];
    }
  });
  return partials.select(0, 0);
}

std::tuple<Tensor, Tensor> invertible_conv1x1(const Tensor& x, const Tensor& matrix, const Tensor& logabsdet,
                                              bool reverse) {
  check_conv1x1_inputs(x, matrix, x.is_cpu() ? "cpu" : "cuda");
  check_logabsdet(logabsdet, x);
  const at::ScalarType dtype = x.scalar_type(), acc = at::toOpMathType(dtype);
  const int64_t N = x.size(0), L = positions_of(x);
  const double factor = static_cast<double>(reverse ? -L : L);
  BelowAutograd below;
  const Tensor x3 = as_acc_3d(x, acc, L);
  const Tensor M = matrix.scalar_type() == acc ? matrix : matrix.to(acc);
  Tensor y = mix(M, x3).view(x.sizes());
  if (acc != dtype) y = y.to(dtype);
  Tensor logdet;
  if (x.is_cpu()) {
    logdet = at::empty({N}, x.options().dtype(acc));
    double value = 0.0;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logabsdet.scalar_type(), "logabsdet", [&] {
      value = factor * static_cast<double>(*logabsdet.const_data_ptr<scalar_t>());
    });
    AT_DISPATCH_FLOATING_TYPES(acc, "invertible_conv1x1_logdet", [&] {
      scalar_t* out = logdet.mutable_data_ptr<scalar_t>();
      std::fill(out, out + N, static_cast<scalar_t>(value));
    });
  } else {  // no host sync: stays on the device
    logdet = logabsdet.to(acc).mul(factor).expand({N}).contiguous();
  }
  return {y, logdet};
}

std::tuple<Tensor, Tensor, Tensor> invertible_conv1x1_backward(const Tensor& grad_y,
                                                               const std::optional<Tensor>& grad_logdet,
                                                               const Tensor& x, const Tensor& matrix, bool reverse,
                                                               std::array<bool, 3> output_mask) {
  check_conv1x1_inputs(x, matrix, x.is_cpu() ? "cpu" : "cuda");
  check_flow_grad_y(grad_y, x);
  check_flow_grad_logdet(grad_logdet, x);
  const at::ScalarType dtype = x.scalar_type(), acc = at::toOpMathType(dtype);
  const int64_t N = x.size(0), L = positions_of(x);
  const double factor = static_cast<double>(reverse ? -L : L);
  BelowAutograd below;
  Tensor gx = at::empty({0}, x.options()), gM = at::empty({0}, x.options()), glad = at::empty({0}, x.options());
  if (output_mask[0] || output_mask[1]) {
    const Tensor gy3 = as_acc_3d(grad_y, acc, L);
    if (output_mask[0]) {
      const Tensor Mt = (matrix.scalar_type() == acc ? matrix : matrix.to(acc)).t();
      gx = mix(Mt, gy3).view(x.sizes());
      if (acc != dtype) gx = gx.to(dtype);
    }
    if (output_mask[1]) {
      gM = grad_matrix(gy3, as_acc_3d(x, acc, L));
      if (gM.scalar_type() != matrix.scalar_type()) gM = gM.to(matrix.scalar_type());
    }
  }
  if (output_mask[2]) {
    if (!grad_logdet.has_value()) {
      glad = at::zeros({}, matrix.options());
    } else if (x.is_cpu()) {
      double total = 0.0;
      const Tensor& g = *grad_logdet;
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "grad_logdet", [&] {
        const scalar_t* gp = g.const_data_ptr<scalar_t>();
        for (int64_t n = 0; n < N; ++n) total += static_cast<double>(gp[n * g.stride(0)]);
      });
      glad = at::empty({}, matrix.options());
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, matrix.scalar_type(), "grad_logabsdet", [&] {
        *glad.mutable_data_ptr<scalar_t>() = static_cast<scalar_t>(factor * total);
      });
    } else {
      glad = grad_logdet->to(acc).sum().mul(factor).to(matrix.scalar_type());
    }
  }
  return {gx, gM, glad};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgen, CPU, m) {
  m.impl("invertible_conv1x1", &invertible_conv1x1);
  m.impl("invertible_conv1x1_backward", &invertible_conv1x1_backward);
}

#ifdef FASTGEN_WITH_CUDA
TORCH_LIBRARY_IMPL(fastgen, CUDA, m) {
  m.impl("invertible_conv1x1", &invertible_conv1x1);
  m.impl("invertible_conv1x1_backward", &invertible_conv1x1_backward);
}
#endif

}  // namespace fastgen::cpu
