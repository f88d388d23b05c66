// A tile of fastgen noise for one contiguous flat range, generated on the CPU.
#pragma once
#include <stdint.h>

#include <vector>

#include "cpu_clones.h"
#include "fastgen/gaussian_math.h"
#include "philox_avx2.h"
#include "work_split.h"

namespace fastgen::cpu {

// Portable Philox over consecutive counters; written lane by lane (structure of arrays) so
// the loop has no interleaved stores and g++ vectorizes it.
FASTGEN_CPU_CLONES inline void philox_blocks(uint32_t* __restrict out0, uint32_t* __restrict out1,
                                             uint32_t* __restrict out2, uint32_t* __restrict out3,
                                             uint64_t seed, uint64_t first_block, int64_t blocks) {
#pragma omp simd
  for (int64_t k = 0; k < blocks; ++k) {
    const uint64_t block = first_block + static_cast<uint64_t>(k);
    const Philox4 bits = philox4x32_10(static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                                       0u, 0u, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
    out0[k] = bits.x[0];
    out1[k] = bits.x[1];
    out2[k] = bits.x[2];
    out3[k] = bits.x[3];
  }
}

// Box-Muller on the four Philox outputs of each block, written in element order.
template <typename acc_t>
FASTGEN_CPU_CLONES void box_muller_blocks(const uint32_t* __restrict bits0, const uint32_t* __restrict bits1,
                                          const uint32_t* __restrict bits2, const uint32_t* __restrict bits3,
                                          acc_t* __restrict values, int64_t blocks) {
#pragma omp simd
  for (int64_t k = 0; k < blocks; ++k) {
    acc_t n0, n1, n2, n3;
    box_muller(bits0[k], bits1[k], &n0, &n1);
    box_muller(bits2[k], bits3[k], &n2, &n3);
    values[4 * k] = n0;
    values[4 * k + 1] = n1;
    values[4 * k + 2] = n2;
    values[4 * k + 3] = n3;
  }
}

// out[j][k] = output j of Philox at counter first_block + k, k < blocks: the AVX2 version where
// the CPU has it, the portable loop for the rest.
inline void philox_block_bits(uint32_t* const out[4], uint64_t seed, int64_t first_block, int64_t blocks) {
  int64_t done = 0;
#ifdef FASTGEN_HAS_PHILOX_AVX2
  if (cpu_has_avx2()) done = philox_blocks_avx2(out[0], out[1], out[2], out[3], seed, first_block, blocks);
#endif
  philox_blocks(out[0] + done, out[1] + done, out[2] + done, out[3] + done, seed,
                static_cast<uint64_t>(first_block + done), blocks - done);
}

template <typename acc_t>
class NoiseTile {
 public:
  static constexpr int64_t kMaxBlocks = kTileElements / 4 + 2;  // +2: unaligned range ends

  NoiseTile() : bits_(4 * kMaxBlocks), values_(4 * kMaxBlocks) {}

  // Noise for flat elements [begin, begin + count), count <= kTileElements.
  const acc_t* generate(uint64_t seed, int64_t begin, int64_t count) {
    const int64_t first_block = begin / 4;
    const int64_t blocks = (begin + count + 3) / 4 - first_block;
    uint32_t* bits[4];
    for (int j = 0; j < 4; ++j) bits[j] = bits_.data() + j * kMaxBlocks;
    philox_block_bits(bits, seed, first_block, blocks);
    box_muller_blocks(bits[0], bits[1], bits[2], bits[3], values_.data(), blocks);
    return values_.data() + (begin - 4 * first_block);
  }

  // Noise for one work item, indexed by flat position (pointer[i] is element i's noise).
  const acc_t* generate_item(uint64_t seed, const WorkSplit& split, const WorkSplit::Item& it) {
    const int64_t flat_begin = it.row_begin * split.cols + it.col_begin;
    const int64_t flat_end = (it.row_end - 1) * split.cols + it.col_end;
    return generate(seed, flat_begin, flat_end - flat_begin) - flat_begin;
  }

 private:
  std::vector<uint32_t> bits_;  // Philox output j of block k at bits_[j * kMaxBlocks + k]
  std::vector<acc_t> values_;
};

}  // namespace fastgen::cpu
