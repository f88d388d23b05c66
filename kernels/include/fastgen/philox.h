// Philox4x32-10 counter-based generator (Salmon et al., SC'11).
//
// Why counter-based: element i's noise is a pure function of (seed, i), so the CPU kernel,
// the CUDA kernel, the Triton kernel and the plain-PyTorch reference all draw the same
// integers, any thread can generate any element without shared state, and the backward
// pass regenerates the noise instead of storing it.
#pragma once
#include <stdint.h>

#include "fastgen/hd.h"

namespace fastgen {

struct Philox4 {
  uint32_t x[4];
};

FASTGEN_HD uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(product >> 32);
  return static_cast<uint32_t>(product);
}

// Ten rounds of Philox4x32 on counter (c0, c1, c2, c3) with key (k0, k1).
FASTGEN_HD Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                 uint32_t k0, uint32_t k1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  // Fully unrolled so the caller's loop over counters has no inner control flow and vectorizes.
#if defined(__CUDACC__)  // nvcc: both passes understand this one
#pragma unroll
#elif defined(__GNUC__)
#pragma GCC unroll 10
#endif
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo32(kMul0, c0, &hi0);
    const uint32_t lo1 = mulhilo32(kMul1, c2, &hi1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  Philox4 out;
  out.x[0] = c0;
  out.x[1] = c1;
  out.x[2] = c2;
  out.x[3] = c3;
  return out;
}

}  // namespace fastgen
