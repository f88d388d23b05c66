// Pieces shared by the CPU kernels that reduce over rows.
#pragma once
#include <ATen/Parallel.h>
#include <stdint.h>

#include "work_split.h"

namespace fastgen::cpu {

// ~32K elements per task: below that, waking another thread costs more than it saves.
constexpr int64_t kItemsPerTask = 8;

enum class Noise { kNone, kGiven, kDrawn };

// Calls fn(row, chunk, begin, end) for every row segment, [begin, end) in flat indices, in
// parallel over work items.
template <typename Fn>
void for_each_segment(const WorkSplit& split, const Fn& fn) {
  at::parallel_for(0, split.items, kItemsPerTask, [&](int64_t first, int64_t last) {
    for (int64_t index = first; index < last; ++index) {
      const WorkSplit::Item it = split.item(index);
      for (int64_t row = it.row_begin; row < it.row_end; ++row) {
        const int64_t base = row * split.cols;
        fn(row, it.chunk, base + it.col_begin, base + it.col_end);
      }
    }
  });
}

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
