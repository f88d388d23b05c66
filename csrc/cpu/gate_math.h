// Scalar tanh and sigmoid of the WaveNet-style gates (tanh(a) * sigmoid(b)) on the CPU.
// float32 avoids libm so the loops that call them vectorize (see fast_math.h); float64 uses libm.
#pragma once
#include <cmath>

#include "fastgen/fast_math.h"

namespace fastgen::cpu {

// tanh: an odd polynomial for |x| < 0.625 (Cephes' tanhf), where 1 - 2 / (e^{2|x|} + 1) would
// cancel, that formula elsewhere (exact 1 once e^{2|x|} overflows). A few ulp from libm.
FASTGEN_HD float tanh_acc(float x) {
  const float near_zero = tanh_near_zero(x);
  const float ax = x < 0.0f ? -x : x;
  const float far = 1.0f - 2.0f / (fast_expf(2.0f * ax) + 1.0f);
  return ax < 0.625f ? near_zero : (x < 0.0f ? -far : far);
}
inline double tanh_acc(double x) { return std::tanh(x); }

FASTGEN_HD float sigmoid_acc(float x) { return 1.0f / (1.0f + fast_expf(-x)); }
inline double sigmoid_acc(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace fastgen::cpu
