// Element loads and stores of the flow kernels: float16/bfloat16 go through float32.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>

#include "fastgen/fast_math.h"

namespace fastgen::cpu {

// float16/bfloat16 converted with branch-free bit arithmetic on the raw 16-bit patterns (c10's
// conversions, bit for bit, written so g++ vectorizes them: through the c10::Half struct the
// loops stay scalar, ~15x slower).
FASTGEN_HD float load(const float* p, int64_t i) { return p[i]; }
FASTGEN_HD double load(const double* p, int64_t i) { return p[i]; }
FASTGEN_HD float load(const c10::BFloat16* p, int64_t i) {
  return bits_to_float(static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(p)[i]) << 16);
}
FASTGEN_HD float load(const c10::Half* p, int64_t i) {  // c10::detail::fp16_ieee_to_fp32_value
  const uint32_t w = static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(p)[i]) << 16;
  const uint32_t sign = w & 0x80000000u, two_w = w + w;
  const float normalized = bits_to_float((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float denormalized = bits_to_float((two_w >> 17) | (126u << 23)) - 0.5f;
  return bits_to_float(sign | (two_w < (1u << 27) ? float_to_bits(denormalized) : float_to_bits(normalized)));
}
FASTGEN_HD void store(float* p, int64_t i, float v) { p[i] = v; }
FASTGEN_HD void store(double* p, int64_t i, double v) { p[i] = v; }
FASTGEN_HD void store(c10::BFloat16* p, int64_t i, float v) {  // round to nearest even, NaN -> 0x7FC0
  const uint32_t u = float_to_bits(v);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  reinterpret_cast<uint16_t*>(p)[i] = static_cast<uint16_t>(v != v ? 0x7FC0u : rounded);
}
FASTGEN_HD void store(c10::Half* p, int64_t i, float v) {  // c10::detail::fp16_ieee_from_fp32_value
  float base = (fabsf(v) * 0x1.0p+112f) * 0x1.0p-110f;
  const uint32_t w = float_to_bits(v), shl1_w = w + w, sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  bias = bias < 0x71000000u ? 0x71000000u : bias;
  base = bits_to_float((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = float_to_bits(base);
  const uint32_t nonsign = ((bits >> 13) & 0x00007C00u) + (bits & 0x00000FFFu);
  reinterpret_cast<uint16_t*>(p)[i] = static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

}  // namespace fastgen::cpu
