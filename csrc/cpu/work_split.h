// How the CPU kernels cut a (rows x cols) problem into independent work items.
//
// Each item covers a contiguous flat range: several whole rows when rows are short, or one
// column chunk of one row when rows are long. Items never depend on the thread count, so
// per-row sums are accumulated in the same order on every run (deterministic results).
#pragma once
#include <stdint.h>

#include <algorithm>

namespace fastgen::cpu {

constexpr int64_t kTileElements = 4096;  // fits the noise buffer in L1 with room to spare

struct WorkSplit {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t rows_per_item = 1;    // > 1 only when chunks_per_row == 1
  int64_t chunks_per_row = 1;   // > 1 only for rows longer than one tile
  int64_t items = 0;

  WorkSplit(int64_t rows_, int64_t cols_) : rows(rows_), cols(cols_) {
    if (cols <= kTileElements) {
      rows_per_item = std::max<int64_t>(1, kTileElements / std::max<int64_t>(cols, 1));
      items = (rows + rows_per_item - 1) / rows_per_item;
    } else {
      chunks_per_row = (cols + kTileElements - 1) / kTileElements;
      items = rows * chunks_per_row;
    }
  }

  // The rows [row_begin, row_end) and columns [col_begin, col_end) of one item.
  struct Item {
    int64_t row_begin, row_end, col_begin, col_end, chunk;
  };

  Item item(int64_t index) const {
    if (chunks_per_row == 1) {
      const int64_t begin = index * rows_per_item;
      return {begin, std::min(rows, begin + rows_per_item), 0, cols, 0};
    }
    const int64_t row = index / chunks_per_row, chunk = index % chunks_per_row;
    const int64_t col_begin = chunk * kTileElements;
    return {row, row + 1, col_begin, std::min(cols, col_begin + kTileElements), chunk};
  }
};

}  // namespace fastgen::cpu
