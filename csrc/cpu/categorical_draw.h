// The categorical draw of the fused samplers (wavenet_generate, pixelcnn_generate_row): the
// inverse-CDF rule of the reference samplers on a row of logits.
#pragma once
#include <stdint.h>

#include <algorithm>
#include <cmath>

namespace fastgen::cpu {

// The index of the first level whose cumulative probability exceeds u (the reference's rule).
template <typename acc_t>
inline int64_t draw(const acc_t* logits, int64_t levels, acc_t u, acc_t* scratch) {
  acc_t top = logits[0];
  for (int64_t i = 1; i < levels; ++i) top = std::max(top, logits[i]);
  acc_t total = 0;
  for (int64_t i = 0; i < levels; ++i) {
    scratch[i] = std::exp(logits[i] - top);
    total += scratch[i];
  }
  const acc_t threshold = u * total;
  acc_t cdf = 0;
  int64_t below = 0;
  for (int64_t i = 0; i < levels; ++i) {
    cdf += scratch[i];
    below += cdf < threshold;
  }
  return std::min(below, levels - 1);
}

}  // namespace fastgen::cpu
