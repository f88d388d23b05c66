// The math of the Gaussian op family (reparameterize, KL, log-density), shared by the CPU
// kernels and the CUDA kernels so that both compute exactly the same expressions.
//
// Noise stream (the contract every backend and the Python reference follow):
//   element i of a tensor drawn with 64-bit `seed` takes output (i % 4) of
//   philox4x32_10(counter = (i / 4) as (lo32, hi32, 0, 0), key = (seed lo32, seed hi32)).
//   Outputs (x0, x1) give normals (n0, n1), outputs (x2, x3) give (n2, n3), by Box-Muller:
//     u = ((x_even >> 8) + 1) * 2^-24 in (0, 1],  v = (x_odd >> 8) * 2^-24 in [0, 1),
//     n_even = sqrt(-2 log u) cos(2 pi v),  n_odd = sqrt(-2 log u) sin(2 pi v).
#pragma once
#include <math.h>
#include <stdint.h>

#include "fastgen/fast_math.h"
#include "fastgen/hd.h"
#include "fastgen/philox.h"

namespace fastgen {

constexpr float kTwoToMinus24 = 5.9604644775390625e-08f;  // 2^-24
constexpr double kHalfLog2Pi = 0.91893853320467274178;    // 0.5 * log(2 pi)

// Four standard normals for counter block `block` (elements 4*block .. 4*block + 3).
template <typename acc_t>
struct Normal4 {
  acc_t n[4];
};

FASTGEN_HD void box_muller(uint32_t x_even, uint32_t x_odd, float* n_even, float* n_odd) {
  const float u = static_cast<float>((x_even >> 8) + 1u) * kTwoToMinus24;
  const float v = static_cast<float>(x_odd >> 8) * kTwoToMinus24;
  const float radius = sqrtf(-2.0f * fast_log_unit(u));
  float s, c;
  fast_sincos_2pi(v, &s, &c);
  *n_even = radius * c;
  *n_odd = radius * s;
}

FASTGEN_HD void box_muller(uint32_t x_even, uint32_t x_odd, double* n_even, double* n_odd) {
  const double u = static_cast<double>((x_even >> 8) + 1u) * static_cast<double>(kTwoToMinus24);
  const double v = static_cast<double>(x_odd >> 8) * static_cast<double>(kTwoToMinus24);
  const double radius = sqrt(-2.0 * log(u));
  const double theta = 6.283185307179586476925 * v;
  *n_even = radius * cos(theta);
  *n_odd = radius * sin(theta);
}

template <typename acc_t>
FASTGEN_HD Normal4<acc_t> normal4(uint64_t seed, uint64_t block) {
  const Philox4 bits = philox4x32_10(
      static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u,
      static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  Normal4<acc_t> out;
  box_muller(bits.x[0], bits.x[1], &out.n[0], &out.n[1]);
  box_muller(bits.x[2], bits.x[3], &out.n[2], &out.n[3]);
  return out;
}

FASTGEN_HD float exp_acc(float x) { return fast_expf(x); }
FASTGEN_HD double exp_acc(double x) { return exp(x); }

// One element of KL(N(mu, exp(logvar)) || N(0, 1)), given var = exp(logvar).
template <typename acc_t>
FASTGEN_HD acc_t gaussian_kl_term(acc_t mu, acc_t logvar, acc_t var) {
  return acc_t(0.5) * (mu * mu + var - acc_t(1) - logvar);
}

// Gradients of z = mu + std * eps (weighted by grad_z) and of the per-sample KL (weighted by
// grad_kl), with std = exp(logvar / 2). Either weight may be zero.
template <typename acc_t>
struct GaussianGrads {
  acc_t mu;
  acc_t logvar;
};

template <typename acc_t>
FASTGEN_HD GaussianGrads<acc_t> gaussian_backward_term(acc_t grad_z, acc_t grad_kl, acc_t mu,
                                                       acc_t std, acc_t eps) {
  GaussianGrads<acc_t> g;
  g.mu = grad_z + grad_kl * mu;
  g.logvar = acc_t(0.5) * (grad_z * std * eps + grad_kl * (std * std - acc_t(1)));
  return g;
}

}  // namespace fastgen
