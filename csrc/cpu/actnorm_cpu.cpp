// CPU kernels of actnorm (Glow's per-channel affine map) and its backward.
//
// x (N, C, *spatial) is seen as N * C rows of S = prod(spatial) values, channel c = row % C.
// forward y = (x + b) e^l (reverse: y = x e^-l - b), logdet = +-S * sum(l) for every sample.
// Backward, with T1[c] = sum_{n,s} gy and T2[c] = sum_{n,s} gy x, G = sum_n grad_logdet[n]:
//   forward:  gx = gy e^l,   gb = e^l T1,  gl = e^l (T2 + b T1) + S G
//   reverse:  gx = gy e^-l,  gb = -T1,     gl = -e^-l T2 - S G
// gx and the per-channel sums come out of one pass over gy and x.
//
// Two layouts of the work, both cut into items that do not depend on the thread count (so the
// sums are added in the same order on every run):
//   S >= kLongRows: rows of S values, each row's sums reduced in registers (work_split.h),
//                   then added per channel over n in a fixed order;
//   S <  kLongRows: short rows would leave the vector loops idle, so each sample is one
//                   C * S vector with the per-channel parameters expanded to it; an item is a
//                   group of samples x a block of whole channels, and accumulates per-position
//                   sums that it folds into per-channel partials at its end.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

#include "../flow_checks.h"
#include "fastgen/fast_math.h"
#include "half_bits.h"
#include "row_sums.h"
#include "work_split.h"

namespace fastgen::cpu {
namespace {

using at::Tensor;

// AVX-512, AVX2 and baseline clones of the loops (see affine_coupling_cpu.cpp).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(FASTGEN_NO_CLONES)
#define FLOW_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FLOW_CPU_CLONES
#endif

// Rows shorter than this take the per-position layout: per-row calls and horizontal sums would
// cost more than the extra loads of the expanded parameters (measured: (64, 48, 4, 4) backward
// 57 us with rows of 16, vs a 5 us copy).
constexpr int64_t kLongRows = 64;
constexpr int64_t kBlockPositions = 1024;  // positions per item in the short-row layout (L1-sized)

// y = (x + b) e (forward) or x e - b (reverse) over [0, n) with one b and e.
template <bool kReverse, typename scalar_t, typename acc_t>
FLOW_CPU_CLONES void affine_row(const scalar_t* __restrict x, scalar_t* __restrict y, int64_t n, acc_t b,
                                acc_t e) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const acc_t v = load(x, i);
    store(y, i, kReverse ? v * e - b : (v + b) * e);
  }
}

// The same for `samples` consecutive samples of L positions with per-position b and e (the
// short-row layout): one call per work item, not per row.
template <bool kReverse, typename scalar_t, typename acc_t>
FLOW_CPU_CLONES void affine_positions(const scalar_t* __restrict x, scalar_t* __restrict y, int64_t samples,
                                      int64_t L, const acc_t* __restrict b, const acc_t* __restrict e) {
  for (int64_t n = 0; n < samples; ++n) {
    const scalar_t* __restrict xn = x + n * L;
    scalar_t* __restrict yn = y + n * L;
#pragma omp simd
    for (int64_t i = 0; i < L; ++i) {
      const acc_t v = load(xn, i);
      store(yn, i, kReverse ? v * e[i] - b[i] : (v + b[i]) * e[i]);
    }
  }
}

// gx = gy e over one row; returns (sum gy, sum gy x) through t1, t2.
template <typename scalar_t, typename acc_t>
FLOW_CPU_CLONES void backward_row(const scalar_t* __restrict gy, const scalar_t* __restrict x,
                                  scalar_t* __restrict gx, int64_t n, acc_t e, acc_t* t1, acc_t* t2) {
  acc_t s1 = acc_t(0), s2 = acc_t(0);
#pragma omp simd reduction(+ : s1, s2)
  for (int64_t i = 0; i < n; ++i) {
    const acc_t g = load(gy, i);
    store(gx, i, g * e);
    s1 += g;
    s2 += g * load(x, i);
  }
  *t1 = s1;
  *t2 = s2;
}

// For `samples` samples (row stride L) of `len` positions: gx = gy e per position, and a1 += gy,
// a2 += gy x per position (the short-row layout).
template <typename scalar_t, typename acc_t>
FLOW_CPU_CLONES void backward_positions(const scalar_t* __restrict gy, const scalar_t* __restrict x,
                                        scalar_t* __restrict gx, int64_t samples, int64_t L, int64_t len,
                                        const acc_t* __restrict e, acc_t* __restrict a1, acc_t* __restrict a2) {
  for (int64_t n = 0; n < samples; ++n) {
    const scalar_t* __restrict gyn = gy + n * L;
    const scalar_t* __restrict xn = x + n * L;
    scalar_t* __restrict gxn = gx + n * L;
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) {
      const acc_t g = load(gyn, i);
      store(gxn, i, g * e[i]);
      a1[i] += g;
      a2[i] += g * load(xn, i);
    }
  }
}

// The short-row layout: blocks of whole channels, groups of samples.
struct PositionSplit {
  int64_t channels_per_block, blocks, samples_per_group, groups;
  PositionSplit(int64_t N, int64_t C, int64_t S) {
    channels_per_block = std::max<int64_t>(1, std::min<int64_t>(C, kBlockPositions / std::max<int64_t>(S, 1)));
    blocks = (C + channels_per_block - 1) / channels_per_block;
    samples_per_group = std::max<int64_t>(1, kTileElements / (channels_per_block * std::max<int64_t>(S, 1)));
    groups = (N + samples_per_group - 1) / samples_per_group;
  }
};

struct Dims {
  int64_t N, C, S;
};

Dims dims_of(const Tensor& x) {
  const int64_t N = x.size(0), C = x.size(1);
  int64_t S = 1;
  for (int64_t d = 2; d < x.dim(); ++d) S *= x.size(d);
  return {N, C, S};
}

// A (C,) parameter as acc_t values (any stride).
template <typename scalar_t, typename acc_t>
std::vector<acc_t> load_channels(const Tensor& p) {
  const scalar_t* data = p.const_data_ptr<scalar_t>();
  const int64_t stride = p.stride(0);
  std::vector<acc_t> out(p.size(0));
  for (int64_t c = 0; c < p.size(0); ++c) out[c] = static_cast<acc_t>(data[c * stride]);
  return out;
}

// The per-channel values repeated over the S positions of each channel: (C * S,).
template <typename acc_t>
std::vector<acc_t> expand_channels(const std::vector<acc_t>& v, int64_t S) {
  std::vector<acc_t> out(v.size() * S);
  for (size_t c = 0; c < v.size(); ++c) std::fill(out.begin() + c * S, out.begin() + (c + 1) * S, v[c]);
  return out;
}

std::tuple<Tensor, Tensor> actnorm(const Tensor& x_in, const Tensor& bias, const Tensor& log_scale, bool reverse) {
  check_actnorm_inputs(x_in, bias, log_scale, "cpu");
  const Tensor x = x_in.contiguous();
  const Dims d = dims_of(x);
  const at::ScalarType acc = at::toOpMathType(x.scalar_type());
  Tensor y = at::empty_like(x);
  Tensor logdet = at::empty({d.N}, x.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "actnorm", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const std::vector<acc_t> b = load_channels<scalar_t, acc_t>(bias);
    std::vector<acc_t> e = load_channels<scalar_t, acc_t>(log_scale);
    double total = 0.0;
    for (acc_t& v : e) {
      total += static_cast<double>(v);
      v = std::exp(reverse ? -v : v);
    }
    acc_t* ld = logdet.mutable_data_ptr<acc_t>();
    std::fill(ld, ld + d.N, static_cast<acc_t>(static_cast<double>(d.S) * (reverse ? -total : total)));
    if (x.numel() == 0) return;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    if (d.S >= kLongRows) {
      const WorkSplit split(d.N * d.C, d.S);
      for_each_segment(split, [&](int64_t row, int64_t, int64_t begin, int64_t end) {
        const int64_t c = row % d.C;
        if (reverse) {
          affine_row<true, scalar_t, acc_t>(xp + begin, yp + begin, end - begin, b[c], e[c]);
        } else {
          affine_row<false, scalar_t, acc_t>(xp + begin, yp + begin, end - begin, b[c], e[c]);
        }
      });
    } else {
      const std::vector<acc_t> bp = expand_channels(b, d.S), ep = expand_channels(e, d.S);
      const int64_t L = d.C * d.S;
      const int64_t per_item = std::max<int64_t>(1, kTileElements / L);  // whole samples per item
      const int64_t items = (d.N + per_item - 1) / per_item;
      at::parallel_for(0, items, kItemsPerTask, [&](int64_t first, int64_t last) {
        const int64_t n0 = first * per_item, n1 = std::min(d.N, last * per_item);
        if (reverse) {
          affine_positions<true, scalar_t, acc_t>(xp + n0 * L, yp + n0 * L, n1 - n0, L, bp.data(), ep.data());
        } else {
          affine_positions<false, scalar_t, acc_t>(xp + n0 * L, yp + n0 * L, n1 - n0, L, bp.data(), ep.data());
        }
      });
    }
  });
  return {y, logdet};
}

// T1[c], T2[c] (in double) and gx, for the long-row layout.
template <typename scalar_t, typename acc_t>
void backward_long_rows(const scalar_t* gy, const scalar_t* x, scalar_t* gx, const Dims& d,
                        const std::vector<acc_t>& e, std::vector<double>& t1, std::vector<double>& t2) {
  const WorkSplit split(d.N * d.C, d.S);
  const int64_t chunks = split.chunks_per_row;
  std::vector<acc_t> p1(split.rows * chunks), p2(split.rows * chunks);
  for_each_segment(split, [&](int64_t row, int64_t chunk, int64_t begin, int64_t end) {
    const int64_t at = row * chunks + chunk;
    backward_row<scalar_t, acc_t>(gy + begin, x + begin, gx + begin, end - begin, e[row % d.C], &p1[at], &p2[at]);
  });
  for (int64_t n = 0; n < d.N; ++n) {
    for (int64_t c = 0; c < d.C; ++c) {
      const int64_t base = (n * d.C + c) * chunks;
      for (int64_t k = 0; k < chunks; ++k) {
        t1[c] += static_cast<double>(p1[base + k]);
        t2[c] += static_cast<double>(p2[base + k]);
      }
    }
  }
}

// The same for the short-row layout.
template <typename scalar_t, typename acc_t>
void backward_short_rows(const scalar_t* gy, const scalar_t* x, scalar_t* gx, const Dims& d,
                         const std::vector<acc_t>& e, std::vector<double>& t1, std::vector<double>& t2) {
  const PositionSplit split(d.N, d.C, d.S);
  const int64_t L = d.C * d.S;
  const std::vector<acc_t> ep = expand_channels(e, d.S);
  // Per (group, channel) partials of T1 and T2.
  std::vector<acc_t> q1(split.groups * d.C), q2(split.groups * d.C);
  const int64_t items = split.groups * split.blocks;
  const int64_t item_elements = split.samples_per_group * std::min(L, kBlockPositions);
  const int64_t grain = std::max<int64_t>(1, kItemsPerTask * kTileElements / std::max<int64_t>(1, item_elements));
  at::parallel_for(0, items, grain, [&](int64_t first, int64_t last) {
    std::vector<acc_t> a1(split.channels_per_block * d.S), a2(split.channels_per_block * d.S);
    for (int64_t item = first; item < last; ++item) {
      const int64_t group = item / split.blocks, block = item % split.blocks;
      const int64_t c0 = block * split.channels_per_block, c1 = std::min(d.C, c0 + split.channels_per_block);
      const int64_t p0 = c0 * d.S, len = (c1 - c0) * d.S;
      const int64_t n0 = group * split.samples_per_group, n1 = std::min(d.N, n0 + split.samples_per_group);
      std::fill(a1.begin(), a1.begin() + len, acc_t(0));
      std::fill(a2.begin(), a2.begin() + len, acc_t(0));
      const int64_t base = n0 * L + p0;
      backward_positions<scalar_t, acc_t>(gy + base, x + base, gx + base, n1 - n0, L, len, ep.data() + p0, a1.data(),
                                          a2.data());
      for (int64_t c = c0; c < c1; ++c) {
        acc_t s1 = acc_t(0), s2 = acc_t(0);
        for (int64_t s = 0; s < d.S; ++s) {
          s1 += a1[(c - c0) * d.S + s];
          s2 += a2[(c - c0) * d.S + s];
        }
        q1[group * d.C + c] = s1;
        q2[group * d.C + c] = s2;
      }
    }
  });
  for (int64_t g = 0; g < split.groups; ++g) {
    for (int64_t c = 0; c < d.C; ++c) {
      t1[c] += static_cast<double>(q1[g * d.C + c]);
      t2[c] += static_cast<double>(q2[g * d.C + c]);
    }
  }
}

std::tuple<Tensor, Tensor, Tensor> actnorm_backward(const Tensor& grad_y_in, const std::optional<Tensor>& grad_logdet,
                                                    const Tensor& x_in, const Tensor& bias, const Tensor& log_scale,
                                                    bool reverse) {
  check_actnorm_inputs(x_in, bias, log_scale, "cpu");
  check_flow_grad_y(grad_y_in, x_in);
  check_flow_grad_logdet(grad_logdet, x_in);
  const at::ScalarType dtype = x_in.scalar_type();
  const Tensor x = x_in.contiguous();
  const Tensor gy = (grad_y_in.scalar_type() == dtype ? grad_y_in : grad_y_in.to(dtype)).contiguous();
  const Dims d = dims_of(x);
  Tensor gx = at::empty_like(x);
  Tensor gb = at::empty({d.C}, bias.options()), gl = at::empty({d.C}, log_scale.options());
  // G = sum_n grad_logdet[n], in a fixed order.
  double G = 0.0;
  if (grad_logdet.has_value() && d.N > 0) {
    const Tensor& g = *grad_logdet;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "actnorm_grad_logdet", [&] {
      const scalar_t* gp = g.const_data_ptr<scalar_t>();
      for (int64_t n = 0; n < d.N; ++n) G += static_cast<double>(gp[n * g.stride(0)]);
    });
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "actnorm_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const std::vector<acc_t> b = load_channels<scalar_t, acc_t>(bias);
    std::vector<acc_t> e = load_channels<scalar_t, acc_t>(log_scale);
    for (acc_t& v : e) v = std::exp(reverse ? -v : v);
    std::vector<double> t1(d.C, 0.0), t2(d.C, 0.0);
    if (x.numel() > 0) {
      const scalar_t* gyp = gy.const_data_ptr<scalar_t>();
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      scalar_t* gxp = gx.mutable_data_ptr<scalar_t>();
      if (d.S >= kLongRows) {
        backward_long_rows<scalar_t, acc_t>(gyp, xp, gxp, d, e, t1, t2);
      } else {
        backward_short_rows<scalar_t, acc_t>(gyp, xp, gxp, d, e, t1, t2);
      }
    }
    scalar_t* gbp = gb.mutable_data_ptr<scalar_t>();
    scalar_t* glp = gl.mutable_data_ptr<scalar_t>();
    const double SG = static_cast<double>(d.S) * G;
    for (int64_t c = 0; c < d.C; ++c) {
      const double ec = static_cast<double>(e[c]);
      if (reverse) {
        gbp[c] = static_cast<scalar_t>(-t1[c]);
        glp[c] = static_cast<scalar_t>(-ec * t2[c] - SG);
      } else {
        gbp[c] = static_cast<scalar_t>(ec * t1[c]);
        glp[c] = static_cast<scalar_t>(ec * (t2[c] + static_cast<double>(b[c]) * t1[c]) + SG);
      }
    }
  });
  return {gx, gb, gl};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgen, CPU, m) {
  m.impl("actnorm", &actnorm);
  m.impl("actnorm_backward", &actnorm_backward);
}

}  // namespace fastgen::cpu
