// Pieces shared by the CPU kernels that reduce over rows.
#pragma once
#include <ATen/Parallel.h>
#include <stdint.h>

#include "work_split.h"

namespace fastgen::cpu {

// ~32K elements per task: below that, waking another thread costs more than it saves.
constexpr int64_t kItemsPerTask = 8;

enum class Noise { kNone, kGiven, kDrawn };

// out[row] = scale * (sum of the row's chunk partials, added in chunk order in double) + shift.
template <typename scalar_t, typename acc_t>
void finish_row_sums(const acc_t* partials, const WorkSplit& split, double scale, double shift,
                     scalar_t* out) {
  at::parallel_for(0, split.rows, 4096, [&](int64_t first, int64_t last) {
    for (int64_t row = first; row < last; ++row) {
      double total = 0.0;
      for (int64_t c = 0; c < split.chunks_per_row; ++c) {
        total += static_cast<double>(partials[row * split.chunks_per_row + c]);
      }
      out[row] = static_cast<scalar_t>(total * scale + shift);
    }
  });
}

}  // namespace fastgen::cpu
