// Float32 exp / log / sincos written as branch-free polynomials.
//
// Why not <cmath>: the CPU kernels need these inside loops that g++ must auto-vectorize,
// and libm calls only vectorize under -ffast-math, which would also drop inf/NaN handling.
// Every branch is a select, so with -fno-trapping-math the loops vectorize (setup.py sets
// it). These stay within ~2 ulp of libm on their domains. On the GPU the CUDA math library is
// already fast, so device code uses it instead.
#pragma once
#include <math.h>
#include <stdint.h>

#include "fastgen/hd.h"

namespace fastgen {

// Bit casts through a union: g++ and nvcc both define this, and unlike memcpy it does not
// put the value in memory, which would stop the loops from vectorizing.
union FloatBits {
  float f;
  uint32_t u;
};

FASTGEN_HD float bits_to_float(uint32_t bits) {
  FloatBits cast;
  cast.u = bits;
  return cast.f;
}

FASTGEN_HD uint32_t float_to_bits(float value) {
  FloatBits cast;
  cast.f = value;
  return cast.u;
}

// x = n*ln2 + r with |r| <= ln2/2, for finite x; returns n (a whole number, as a float), sets r.
// ln2 is split in two so r is exact. n is rounded with the 1.5*2^23 trick rather than a cast:
// casts and branches keep the AVX2 loops from vectorizing.
FASTGEN_HD float exp_split(float x, float& r) {
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  return n;
}

// e^r for |r| <= ln2/2: the polynomial at the core of fast_expf.
FASTGEN_HD float exp_reduced(float r) {
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * r * r + r + 1.0f;
}

// tanh(x) for |x| < 0.625, where 1 - 2 / (e^{2|x|} + 1) would cancel: Cephes' odd polynomial.
FASTGEN_HD float tanh_near_zero(float x) {
  const float x2 = x * x;
  float p = -5.70498872745e-3f;
  p = p * x2 + 2.06390887954e-2f;
  p = p * x2 - 5.37397155531e-2f;
  p = p * x2 + 1.33314422036e-1f;
  p = p * x2 - 3.33332819422e-1f;
  return x + x * x2 * p;
}

// exp(x) for any float x: inf above 88.72, 0 below -104, NaN stays NaN.
FASTGEN_HD float fast_expf(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  const float kHi = 88.72283935546875f, kLo = -104.0f;
  // NaN clamps to kLo here (so the int conversions below stay defined) and is restored at the end.
  const float xc = (x >= kLo && x <= kHi) ? x : (x > kHi ? kHi : kLo);
  float r;
  const float n = exp_split(xc, r);
  const float p = exp_reduced(r);
  // 2^n applied in two halves so that n in [-150, 128] never leaves the normal range.
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t half = ni >> 1;
  const float scale_a = bits_to_float(static_cast<uint32_t>(half + 127) << 23);
  const float scale_b = bits_to_float(static_cast<uint32_t>(ni - half + 127) << 23);
  float result = p * scale_a * scale_b;
  result = x > kHi ? INFINITY : (x < kLo ? 0.0f : result);
  return x != x ? x : result;
#endif
}

// log(1 + x) for x in [-0.29, 0.42]: Cephes' logf polynomial, no division (vdivps is slow).
FASTGEN_HD float log1p_reduced(float x) {
  const float x2 = x * x;
  float p = 7.0376836292e-2f;
  p = p * x - 1.1514610310e-1f;
  p = p * x + 1.1676998740e-1f;
  p = p * x - 1.2420140846e-1f;
  p = p * x + 1.4249322787e-1f;
  p = p * x - 1.6668057665e-1f;
  p = p * x + 2.0000714765e-1f;
  p = p * x - 2.4999993993e-1f;
  p = p * x + 3.3333331174e-1f;
  return x + (p * x * x2 - 0.5f * x2);
}

// log(u) for u in (0, 1], the range of the uniforms the generator makes (never 0 or subnormal).
FASTGEN_HD float fast_log_unit(float u) {
#if defined(__CUDA_ARCH__)
  return logf(u);
#else
  const uint32_t bits = float_to_bits(u);
  int32_t exponent = static_cast<int32_t>(bits >> 23) - 127;
  float mantissa = bits_to_float((bits & 0x007FFFFFu) | 0x3F800000u);  // in [1, 2)
  const bool high = mantissa > 1.41421356f;
  mantissa = high ? mantissa * 0.5f : mantissa;
  exponent = high ? exponent + 1 : exponent;
  const float log_mantissa = log1p_reduced(mantissa - 1.0f);
  return static_cast<float>(exponent) * 0.693147180559945309f + log_mantissa;
#endif
}

// sin(2*pi*v) and cos(2*pi*v) for v in [0, 1).
FASTGEN_HD void fast_sincos_2pi(float v, float* sin_out, float* cos_out) {
#if defined(__CUDA_ARCH__)
  sincospif(2.0f * v, sin_out, cos_out);
#else
  // Quadrant q and remainder f = v - q/4 in [-1/8, 1/8]; both steps are exact in float.
  const int32_t quadrant = static_cast<int32_t>(v * 4.0f + 0.5f);
  const float f = v - static_cast<float>(quadrant) * 0.25f;
  const float theta = f * 6.28318530717958648f;  // |theta| <= pi/4
  const float t2 = theta * theta;
  float s = -2.5052108385e-8f;
  s = s * t2 + 2.7557319224e-6f;
  s = s * t2 - 1.9841269841e-4f;
  s = s * t2 + 8.3333333333e-3f;
  s = s * t2 - 1.6666666667e-1f;
  s = theta + theta * t2 * s;
  float c = 2.0876756988e-9f;
  c = c * t2 - 2.7557319224e-7f;
  c = c * t2 + 2.4801587302e-5f;
  c = c * t2 - 1.3888888889e-3f;
  c = c * t2 + 4.1666666667e-2f;
  c = c * t2 - 0.5f;
  c = 1.0f + t2 * c;
  // Rotate by q quarter turns: (sin, cos) -> (cos, -sin) per turn.
  const int32_t q = quadrant & 3;
  const float sin_value = q == 0 ? s : (q == 1 ? c : (q == 2 ? -s : -c));
  const float cos_value = q == 0 ? c : (q == 1 ? -s : (q == 2 ? -c : s));
  *sin_out = sin_value;
  *cos_out = cos_value;
#endif
}

}  // namespace fastgen
