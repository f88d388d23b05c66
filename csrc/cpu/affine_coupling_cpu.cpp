// CPU kernels of affine_coupling (+ backward) and additive_coupling.
//
// An eager affine coupling is a chain of ~7 elementwise ops plus a per-sample sum, each writing
// a full tensor; here forward and backward are one pass each. x is seen as (N, D) rows; the
// rows are cut into fixed work items (work_split.h), so the per-sample log-determinant sums are
// added in the same order whatever the thread count. The backward recomputes s, exp(+-s) and
// ds/dr from the raw log-scale instead of saving them (cheaper than the memory traffic).
//
// float32 (and float16/bfloat16, loaded and accumulated in float32) use branch-free polynomials
// (fast_math.h and below) so the loops vectorize, in AVX-512, AVX2 and baseline clones; float64
// uses Cephes' double-precision rationals, also branch-free. Numerically stable forms, finite for
// every finite input (e = exp(-|a|) in (0, 1]):
//   tanh(u)          = sign(u) (1 - E) / (1 + E), E = exp(-2|u|); odd polynomial for |u| < 0.625
//   sigmoid(a)       = 1 / (1 + e) for a >= 0, e / (1 + e) below
//   log sigmoid(a)   = min(a, 0) - log1p(e)
//   1 - sigmoid(a)   = e / (1 + e) for a >= 0, 1 / (1 + e) below
// Measured on Zen 4 (one thread, 98K float32): the sigmoid forward went from 182 us (libm-like
// exp/log with full range checks, AVX2) to 76 us with these forms and the AVX-512 clone.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

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

// ------------------------------------------------------------------ scalar math, float / double
// The float forms are polynomials with every branch a select (see fast_math.h), so the loops
// vectorize; they stay within ~2e-7 relative error of libm.

// float64: the same forms with Cephes' double-precision rationals (exp.c, log1p.c, tanh.c),
// within ~3 ulp of libm and vectorized (libm's scalar calls made the float64 kernels ~2x slower
// than the eager reference; these are ~8x faster than libm).
union DoubleBits { double d; uint64_t u; };
FASTGEN_HD double bits_to_double(uint64_t u) { DoubleBits c; c.u = u; return c.d; }
FASTGEN_HD uint64_t double_to_bits(double d) { DoubleBits c; c.d = d; return c.u; }
constexpr double kRoundMagic = 6755399441055744.0;  // 1.5 * 2^52: x + magic - magic rounds to an integer
// 2^n for a whole n in [-1022, 1023] given as a double, from the bits of n + magic.
FASTGEN_HD double pow2_whole(double n) { return bits_to_double((double_to_bits(n + kRoundMagic) + 1023u) << 52); }
// e^r for |r| <= ln2 / 2: Cephes' exp.c Pade form 1 + 2 r P(r^2) / (Q(r^2) - r P(r^2)).
FASTGEN_HD double exp_reduced_d(double r) {
  const double rr = r * r;
  double px = 1.26177193074810590878e-4;
  px = px * rr + 3.02994407707441961300e-2;
  px = r * (px * rr + 9.99999999999999999910e-1);
  double qx = 3.00198505138664455042e-6;
  qx = qx * rr + 2.52448340349684104192e-3;
  qx = qx * rr + 2.27265548208155028766e-1;
  qx = qx * rr + 2.00000000000000000009e0;
  return 1.0 + 2.0 * px / (qx - px);
}
// x = n ln2 + r (ln2 in two parts so r is exact), n whole.
FASTGEN_HD double exp_split_d(double x, double& r) {
  const double n = (x * 1.4426950408889634073599 + kRoundMagic) - kRoundMagic;
  r = (x - n * 6.93145751953125e-1) - n * 1.42860682030941723212e-6;
  return n;
}
// e^x for any double: inf above 709.78, 0 below -745.13, NaN stays NaN; 2^n in two halves.
FASTGEN_HD double exp_any_d(double x) {
  const double kHi = 709.782712893384, kLo = -745.1332191019412;
  const double xc = x >= kLo ? (x <= kHi ? x : kHi) : kLo;  // NaN -> kLo
  double r;
  const double n = exp_split_d(xc, r);
  const double n1 = (n * 0.5 + kRoundMagic) - kRoundMagic, n2 = n - n1;
  const double result = exp_reduced_d(r) * pow2_whole(n1) * pow2_whole(n2);
  return x != x ? x : (x > kHi ? INFINITY : (x < kLo ? 0.0 : result));
}
// e^x for x <= 0; below -708.39 returns e^-708.39 (normal), NaN stays NaN.
FASTGEN_HD double exp_nonpositive_d(double x) {
  const double kLo = -708.3964185322641;
  const double xc = x >= kLo ? x : kLo;
  double r;
  const double n = exp_split_d(xc, r);
  const double result = exp_reduced_d(r) * pow2_whole(n);
  return x != x ? x : result;
}
// e^x for |x| <= 700 (no range selects).
FASTGEN_HD double exp_bounded_d(double x) {
  double r;
  const double n = exp_split_d(x, r);
  return exp_reduced_d(r) * pow2_whole(n);
}
// log1p(e) for e in [0, 1]: Cephes' log1p.c rational on [sqrt(1/2) - 1, sqrt(2) - 1], for larger e
// ln 2 + log1p((e - 1) / 2).
FASTGEN_HD double log1p_unit_d(double e) {
  const bool high = e > 0.41421356237309504880;
  const double x = high ? (e - 1.0) * 0.5 : e;
  double lp = 4.5270000862445199635215e-5;
  lp = lp * x + 4.9854102823193375972212e-1;
  lp = lp * x + 6.5787325942061044846969e0;
  lp = lp * x + 2.9911919328553073277375e1;
  lp = lp * x + 6.0949667980987787057556e1;
  lp = lp * x + 5.7112963590585538103336e1;
  lp = lp * x + 2.0039553499201281259648e1;
  double lq = x + 1.5062909083469192043167e1;
  lq = lq * x + 8.3047565967967209469434e1;
  lq = lq * x + 2.2176239823732856465394e2;
  lq = lq * x + 3.0909872225312059774938e2;
  lq = lq * x + 2.1642788614495947685003e2;
  lq = lq * x + 6.0118660497603843919306e1;
  const double x2 = x * x;
  const double z = -0.5 * x2 + x * (x2 * lp / lq);
  return (x + z) + (high ? 0.69314718055994530942 : 0.0);
}
// tanh: Cephes' tanh.c rational below 0.625, else sign(u) (1 - E) / (1 + E), E = e^-2|u|.
FASTGEN_HD double tanh_d(double u) {
  const double a = fabs(u);
  const double E = exp_nonpositive_d(-2.0 * a);
  const double big = copysign((1.0 - E) / (1.0 + E), u);
  const double s = u * u;
  const double p = (-9.64399179425052238628e-1 * s - 9.92877231001918586564e1) * s - 1.61468768441708447952e3;
  const double q = ((s + 1.12811678491632931402e2) * s + 2.23548839060100448583e3) * s + 4.84406305325125486048e3;
  const double small = u + u * s * (p / q);
  return a < 0.625 ? small : big;
}

// e^x for x <= 0. Below -87.33 (where e^x leaves the normal range) it returns e^-87.33 ~ 1.2e-38
// instead of a smaller value, which changes nothing below (it is only ever added to 1 or
// multiplied by a bounded factor); NaN stays NaN. One 2^n scale, no overflow handling needed.
FASTGEN_HD float exp_nonpositive(float x) {
  const float kLo = -87.33654f;
  const float xc = x >= kLo ? x : kLo;  // NaN -> kLo (defined int conversion), restored below
  float r;
  const float n = exp_split(xc, r);
  const float result = exp_reduced(r) * bits_to_float(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
  return x != x ? x : result;
}
FASTGEN_HD double exp_nonpositive(double x) { return exp_nonpositive_d(x); }

// e^x for |x| <= 87 (the tanh_clamp factor with clamp <= 87): no range selects.
FASTGEN_HD float exp_bounded(float x) {
  float r;
  const float n = exp_split(x, r);
  return exp_reduced(r) * bits_to_float(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
}
FASTGEN_HD double exp_bounded(double x) { return exp_bounded_d(x); }

FASTGEN_HD float exp_any(float x) { return fast_expf(x); }
FASTGEN_HD double exp_any(double x) { return exp_any_d(x); }

// log1p(e) for e in [0, 1]: log(1 + x) directly for e <= sqrt(2) - 1, else ln 2 + log(1 + x) with
// x = (e - 1) / 2 = (1 + e) / 2 - 1; both x in [-0.29, 0.42], where log1p_reduced holds.
// No exponent split and no rounding of 1 + e, so tiny e keep full relative precision.
FASTGEN_HD float log1p_unit(float e) {
  const bool high = e > 0.41421356f;
  const float x = high ? (e - 1.0f) * 0.5f : e;
  return log1p_reduced(x) + (high ? 0.693147180559945309f : 0.0f);
}
FASTGEN_HD double log1p_unit(double e) { return log1p_unit_d(e); }

// tanh(u) = sign(u) (1 - E) / (1 + E), E = e^-2|u| in (0, 1] (never overflows); the odd
// polynomial below |u| = 0.625, where 1 - E would cancel.
FASTGEN_HD float tanh_of(float u) {
  const float a = fabsf(u);
  const float E = exp_nonpositive(-2.0f * a);
  const float big = (1.0f - E) / (1.0f + E);
  return a < 0.625f ? tanh_near_zero(u) : copysignf(big, u);
}
FASTGEN_HD double tanh_of(double u) { return tanh_d(u); }

// The maps of the kernels: tanh_clamp splits in two, by whether exp(+-s) can overflow.
enum class Map { kTanhClamp, kTanhClampWide, kSigmoid, kExp };

// The log-scale s of one raw value r, the factor f = e^s (forward) or e^-s (reverse) and ds/dr.
// Only what the caller uses survives inlining (the sigmoid backward of the forward direction
// never takes the log).
template <Map kMap, bool kReverse, typename acc_t>
FASTGEN_HD void scale_terms(acc_t r, acc_t clamp, acc_t inv_clamp, acc_t& s, acc_t& f, acc_t& ds) {
  if constexpr (kMap == Map::kTanhClamp || kMap == Map::kTanhClampWide) {
    const acc_t th = tanh_of(r * inv_clamp);
    s = clamp * th;
    f = kMap == Map::kTanhClamp ? exp_bounded(kReverse ? -s : s) : exp_any(kReverse ? -s : s);
    ds = acc_t(1) - th * th;
  } else if constexpr (kMap == Map::kSigmoid) {
    // s = log sigmoid(a) = min(a, 0) - log1p(e), e = e^-|a|; sigmoid(a) = 1 / (1 + e) for a >= 0,
    // e / (1 + e) below; ds/dr = 1 - sigmoid(a) = sigmoid(-a).
    const acc_t a = r + acc_t(2);
    const bool positive = a >= acc_t(0);
    const acc_t e = exp_nonpositive(-std::abs(a));
    const acc_t inv_u = acc_t(1) / (acc_t(1) + e);
    s = std::min(a, acc_t(0)) - log1p_unit(e);
    // Reverse: e^-s over the full range (e^-s overflows to inf for a < -88, as the reference does).
    f = kReverse ? exp_any(-s) : (positive ? inv_u : e * inv_u);
    ds = positive ? e * inv_u : inv_u;
  } else {
    s = r;
    f = exp_any(kReverse ? -r : r);
    ds = acc_t(1);
  }
}

// AVX-512 and AVX2 clones of the hot loops: with 16 lanes the polynomial-heavy loops run ~1.6x
// faster than with 8 (measured on Zen 4); the baseline clone keeps old CPUs working.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(FASTGEN_NO_CLONES)
#define FLOW_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FLOW_CPU_CLONES
#endif


// ------------------------------------------------------------------ loops over one row segment
// y over [begin, end) and the sum of s there. Raw __restrict pointers so g++ vectorizes.
template <Map kMap, bool kReverse, typename scalar_t, typename acc_t>
FLOW_CPU_CLONES acc_t forward_segment(const scalar_t* __restrict x, const scalar_t* __restrict t,
                                      const scalar_t* __restrict r, scalar_t* __restrict y, int64_t begin,
                                      int64_t end, acc_t clamp, acc_t inv_clamp) {
  acc_t sum = acc_t(0);
#pragma omp simd reduction(+ : sum)
  for (int64_t i = begin; i < end; ++i) {
    acc_t s, f, ds;
    scale_terms<kMap, kReverse, acc_t>(load(r, i), clamp, inv_clamp, s, f, ds);
    const acc_t xv = load(x, i), tv = load(t, i);
    store(y, i, kReverse ? (xv - tv) * f : xv * f + tv);
    sum += s;
  }
  return sum;
}

// forward y = x e^s + t:       gx = gy e^s, gt = gy,        gr = (gy x e^s + gl) s'
// reverse y = (x - t) e^-s:    gx = gy e^-s, gt = -gy e^-s, gr = (-gy y - gl) s'
template <Map kMap, bool kReverse, typename scalar_t, typename acc_t>
FLOW_CPU_CLONES void backward_segment(const scalar_t* __restrict gy, const scalar_t* __restrict x,
                                      const scalar_t* __restrict t, const scalar_t* __restrict r, acc_t gl,
                                      scalar_t* __restrict gx, scalar_t* __restrict gt, scalar_t* __restrict gr,
                                      int64_t begin, int64_t end, acc_t clamp, acc_t inv_clamp) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    acc_t s, f, ds;
    scale_terms<kMap, kReverse, acc_t>(load(r, i), clamp, inv_clamp, s, f, ds);
    const acc_t g = load(gy, i);
    const acc_t gxv = g * f;
    store(gx, i, gxv);
    if constexpr (kReverse) {
      const acc_t yv = (load(x, i) - load(t, i)) * f;
      store(gt, i, -gxv);
      store(gr, i, (-g * yv - gl) * ds);
    } else {
      store(gt, i, g);  // exact: g came from a scalar_t
      store(gr, i, (gxv * load(x, i) + gl) * ds);
    }
  }
}

template <typename scalar_t>
FLOW_CPU_CLONES void add_segment(const scalar_t* __restrict x, const scalar_t* __restrict t,
                                 scalar_t* __restrict y, int64_t begin, int64_t end, bool reverse) {
  if (reverse) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) store(y, i, load(x, i) - load(t, i));
  } else {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) store(y, i, load(x, i) + load(t, i));
  }
}

// ------------------------------------------------------------------ drivers
// Calls fn(std::integral_constant<Map>, std::integral_constant<bool>) for the runtime choice.
template <typename Fn>
void dispatch_map(ScaleMap scale, double clamp, bool reverse, const Fn& fn) {
  auto with_direction = [&](auto map_c) {
    return reverse ? fn(map_c, std::true_type{}) : fn(map_c, std::false_type{});
  };
  switch (scale) {
    case ScaleMap::kTanhClamp:  // |s| < clamp: e^+-s cannot overflow below 87
      if (clamp <= 87.0) return with_direction(std::integral_constant<Map, Map::kTanhClamp>{});
      return with_direction(std::integral_constant<Map, Map::kTanhClampWide>{});
    case ScaleMap::kSigmoid: return with_direction(std::integral_constant<Map, Map::kSigmoid>{});
    case ScaleMap::kExp: return with_direction(std::integral_constant<Map, Map::kExp>{});
  }
}

// (N, D) view of a tensor with N = size(0): D = 0 when N = 0 (nothing to do then).
WorkSplit rows_of(const Tensor& x) { return WorkSplit(x.size(0), x.size(0) == 0 ? 0 : x.numel() / x.size(0)); }

std::tuple<Tensor, Tensor> affine_coupling(const Tensor& x_in, const Tensor& shift_in, const Tensor& log_scale_in,
                                           bool reverse, c10::string_view scale, double clamp) {
  const ScaleMap map = check_affine_coupling_inputs(x_in, shift_in, log_scale_in, scale, clamp, "cpu");
  const Tensor x = x_in.contiguous(), shift = shift_in.contiguous(), raw = log_scale_in.contiguous();
  const at::ScalarType acc = at::toOpMathType(x.scalar_type());
  const WorkSplit split = rows_of(x);
  Tensor y = at::empty_like(x);
  Tensor logdet = at::empty({split.rows}, x.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "affine_coupling", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* tp = shift.const_data_ptr<scalar_t>();
    const scalar_t* rp = raw.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    acc_t* out = logdet.mutable_data_ptr<acc_t>();
    const acc_t c = static_cast<acc_t>(clamp), inv_c = static_cast<acc_t>(1.0 / clamp);
    dispatch_map(map, clamp, reverse, [&](auto map_c, auto reverse_c) {
      constexpr Map kMap = decltype(map_c)::value;
      constexpr bool kReverse = decltype(reverse_c)::value;
      if (split.chunks_per_row == 1) {  // whole rows per item: the item writes the row's logdet
        for_each_segment(split, [&](int64_t row, int64_t, int64_t begin, int64_t end) {
          const acc_t sum = forward_segment<kMap, kReverse, scalar_t, acc_t>(xp, tp, rp, yp, begin, end, c, inv_c);
          out[row] = kReverse ? -sum : sum;
        });
      } else {  // long rows: per-chunk partials, added in chunk order afterwards
        std::vector<acc_t> partials(split.rows * split.chunks_per_row);
        acc_t* part = partials.data();
        for_each_segment(split, [&](int64_t row, int64_t chunk, int64_t begin, int64_t end) {
          part[row * split.chunks_per_row + chunk] =
              forward_segment<kMap, kReverse, scalar_t, acc_t>(xp, tp, rp, yp, begin, end, c, inv_c);
        });
        finish_row_sums<acc_t, acc_t>(part, split, kReverse ? -1.0 : 1.0, 0.0, out);
      }
    });
  });
  return {y, logdet};
}

std::tuple<Tensor, Tensor, Tensor> affine_coupling_backward(const Tensor& grad_y_in,
                                                            const std::optional<Tensor>& grad_logdet,
                                                            const Tensor& x_in, const Tensor& shift_in,
                                                            const Tensor& log_scale_in, bool reverse,
                                                            c10::string_view scale, double clamp) {
  const ScaleMap map = check_affine_coupling_inputs(x_in, shift_in, log_scale_in, scale, clamp, "cpu");
  check_flow_grad_y(grad_y_in, x_in);
  check_flow_grad_logdet(grad_logdet, x_in);
  const at::ScalarType dtype = x_in.scalar_type(), acc = at::toOpMathType(dtype);
  const Tensor x = x_in.contiguous(), raw = log_scale_in.contiguous();
  // The forward direction needs no shift: gt = gy and y is not recomputed.
  const Tensor shift = reverse ? shift_in.contiguous() : x;
  const Tensor gy = (grad_y_in.scalar_type() == dtype ? grad_y_in : grad_y_in.to(dtype)).contiguous();
  Tensor gl;
  if (grad_logdet.has_value()) gl = grad_logdet->scalar_type() == acc ? *grad_logdet : grad_logdet->to(acc);
  const WorkSplit split = rows_of(x);
  Tensor gx = at::empty_like(x), gt = at::empty_like(x), gr = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "affine_coupling_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* gyp = gy.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* tp = shift.const_data_ptr<scalar_t>();
    const scalar_t* rp = raw.const_data_ptr<scalar_t>();
    const acc_t* glp = gl.defined() ? gl.const_data_ptr<acc_t>() : nullptr;
    const int64_t gl_stride = gl.defined() ? gl.stride(0) : 0;
    scalar_t* gxp = gx.mutable_data_ptr<scalar_t>();
    scalar_t* gtp = gt.mutable_data_ptr<scalar_t>();
    scalar_t* grp = gr.mutable_data_ptr<scalar_t>();
    const acc_t c = static_cast<acc_t>(clamp), inv_c = static_cast<acc_t>(1.0 / clamp);
    dispatch_map(map, clamp, reverse, [&](auto map_c, auto reverse_c) {
      constexpr Map kMap = decltype(map_c)::value;
      constexpr bool kReverse = decltype(reverse_c)::value;
      for_each_segment(split, [&](int64_t row, int64_t, int64_t begin, int64_t end) {
        const acc_t g = glp != nullptr ? glp[row * gl_stride] : acc_t(0);
        backward_segment<kMap, kReverse, scalar_t, acc_t>(gyp, xp, tp, rp, g, gxp, gtp, grp, begin, end, c, inv_c);
      });
    });
  });
  return {gx, gt, gr};
}

Tensor additive_coupling(const Tensor& x_in, const Tensor& shift_in, bool reverse) {
  check_additive_coupling_inputs(x_in, shift_in, "cpu");
  const Tensor x = x_in.contiguous(), shift = shift_in.contiguous();
  Tensor y = at::empty_like(x);
  const int64_t n = x.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "additive_coupling", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* tp = shift.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, kItemsPerTask * kTileElements, [&](int64_t begin, int64_t end) {
      add_segment<scalar_t>(xp, tp, yp, begin, end, reverse);
    });
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgen, CPU, m) {
  m.impl("affine_coupling", &affine_coupling);
  m.impl("affine_coupling_backward", &affine_coupling_backward);
  m.impl("additive_coupling", &additive_coupling);
}

}  // namespace fastgen::cpu
