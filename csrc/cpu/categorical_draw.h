// The categorical draw of the fused samplers (wavenet_generate, pixelcnn_generate_row): the
// inverse-CDF rule of the reference samplers on a row of logits.
#pragma once
#include <stdint.h>

#include <algorithm>
#include <cmath>

namespace fastgen::cpu {

// The index of the first level whose cumulative probability exceeds u: mass_i = exp(l_i - max l),
// summed in level order, compared with u times the last sum. In double whatever the logits'
// dtype, exactly as the reference (fastgen.reference.steps.categorical_draw) does it:
// float32 cumulative sums, rounded differently from the reference's, drew another level about
// once in 40,000 draws. `scratch` holds `levels` doubles.
template <typename acc_t, typename u_t>
inline int64_t draw(const acc_t* logits, int64_t levels, u_t u, double* scratch) {
  acc_t top = logits[0];
  for (int64_t i = 1; i < levels; ++i) top = std::max(top, logits[i]);
  double cdf = 0;
  for (int64_t i = 0; i < levels; ++i) {
    cdf += std::exp(static_cast<double>(logits[i]) - static_cast<double>(top));
    scratch[i] = cdf;
  }
  const double threshold = static_cast<double>(u) * cdf;
  int64_t below = 0;
  for (int64_t i = 0; i < levels; ++i) below += scratch[i] < threshold;
  return std::min(below, levels - 1);
}

}  // namespace fastgen::cpu
