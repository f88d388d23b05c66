// Dropout keep-masks from fastgen's counter-based stream (Philox4x32-10, as the Gaussian noise).
//
// Why counter-based: element e of a mask is a pure function of (seed, e), so a kernel can draw
// any tile's mask where it needs it, the backward regenerates it instead of storing it, and the
// plain-PyTorch reference (fastgen.reference.flows.conditioner_dropout_masks) draws the same.
// Element e takes output e % 4 of Philox at counter e / 4; it is kept when those 32 bits are
// >= floor(p * 2^32), and a kept element is 1 / (1 - p).
#pragma once
#include <stdint.h>

#include <cmath>
#include <vector>

#include "noise_tile.h"  // philox_block_bits

namespace fastgen::cpu {

// The 32-bit threshold below which an element is dropped.
inline uint32_t dropout_threshold(double p) { return static_cast<uint32_t>(std::floor(p * 4294967296.0)); }

// keep[i] = the mask at flat element begin + i, for i < count; `bits` is scratch.
template <typename T>
void dropout_keep(uint64_t seed, int64_t begin, int64_t count, uint32_t threshold, T kept, T* keep,
                  std::vector<uint32_t>& bits) {
  if (count <= 0) return;
  const int64_t first_block = begin / 4, blocks = (begin + count + 3) / 4 - first_block;
  bits.resize(4 * blocks);
  uint32_t* const out[4] = {bits.data(), bits.data() + blocks, bits.data() + 2 * blocks, bits.data() + 3 * blocks};
  philox_block_bits(out, seed, first_block, blocks);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t e = begin + i, k = e / 4 - first_block;
    keep[i] = out[e % 4][k] >= threshold ? kept : T(0);
  }
}

}  // namespace fastgen::cpu
