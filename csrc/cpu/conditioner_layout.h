// The data movement of conv_conditioner's CPU kernel (conv_conditioner_cpu.cpp): the rows of
// every matrix are the positions (n, h, w) of a block of samples, channels-last; these functions
// turn the NCHW input into the first product's im2col rows, the tap products of the last
// convolution into the NCHW output, and back for the gradients.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace fastgen::cpu {

// The sizes every loop needs.
struct ConditionerDims {
  int64_t N, C_in, H, W, k1, k3, C_out;
  int64_t positions() const { return N * H * W; }
};

inline ConditionerDims dims_of(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& w3) {
  return {x.size(0), x.size(1), x.size(2), x.size(3), w1.size(2), w3.size(2), w3.size(0)};
}

// im2col of samples [n0, n1): A (rows of those samples, C_in*k*k), A[(n, h, w), c*k*k + ky*k + kx] =
// x[n, c, h + ky - r, w + kx - r] or 0 outside the image. x is read through its strides (a channel
// slice needs no copy).
template <typename T>
void im2col(const at::Tensor& x, const ConditionerDims& d, int64_t n0, int64_t n1, T* out) {
  const int64_t k = d.k1, r = k / 2, kk = k * k, cols = d.C_in * kk;
  const T* xp = x.const_data_ptr<T>();
  const int64_t sn = x.stride(0), sc = x.stride(1), sh = x.stride(2), sw = x.stride(3);
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t h = 0; h < d.H; ++h)
      for (int64_t w = 0; w < d.W; ++w) {
        T* row = out + (((n - n0) * d.H + h) * d.W + w) * cols;
        for (int64_t c = 0; c < d.C_in; ++c) {
          const T* plane = xp + n * sn + c * sc;
          for (int64_t ky = 0; ky < k; ++ky) {
            const int64_t hh = h + ky - r;
            for (int64_t kx = 0; kx < k; ++kx) {
              const int64_t ww = w + kx - r;
              const bool inside = hh >= 0 && hh < d.H && ww >= 0 && ww < d.W;
              *row++ = inside ? plane[hh * sh + ww * sw] : T(0);
            }
          }
        }
      }
}

// The adjoint of im2col for samples [n0, n1): dx[n, c, h, w] = sum over taps of
// dA[(n, h - ky + r, w - kx + r), c*k*k + tap] (a gather: no two writes meet).
template <typename T>
void col2im(const T* dA, const ConditionerDims& d, int64_t n0, int64_t n1, T* dx) {
  const int64_t k = d.k1, r = k / 2, kk = k * k, cols = d.C_in * kk;
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t c = 0; c < d.C_in; ++c)
      for (int64_t h = 0; h < d.H; ++h)
        for (int64_t w = 0; w < d.W; ++w) {
          T sum = 0;
          for (int64_t ky = 0; ky < k; ++ky) {
            const int64_t hp = h - ky + r;
            if (hp < 0 || hp >= d.H) continue;
            for (int64_t kx = 0; kx < k; ++kx) {
              const int64_t wp = w - kx + r;
              if (wp < 0 || wp >= d.W) continue;
              sum += dA[(((n - n0) * d.H + hp) * d.W + wp) * cols + c * kk + ky * k + kx];
            }
          }
          dx[((n * d.C_in + c) * d.H + h) * d.W + w] = sum;
        }
}

// W3z (H2, k*k*C_out), W3z[c, tap*C_out + o] = w3[o, c, tap]: conv3's weight as one matrix whose
// product with h2 gives every tap's contribution at once.
inline at::Tensor tap_major(const at::Tensor& w3) {
  const int64_t C_out = w3.size(0), H2 = w3.size(1), kk = w3.size(2) * w3.size(3);
  return w3.reshape({C_out, H2, kk}).permute({1, 2, 0}).reshape({H2, kk * C_out});
}

// For samples [n0, n1): y[n, o, h, w] = b3[o] + sum over in-bounds taps of
// Z[(n, h + ky - r, w + kx - r), tap*C_out + o]; acc is scratch of C_out values.
template <typename T>
void shifted_sum(const T* Z, const T* bias, const ConditionerDims& d, int64_t n0, int64_t n1, T* acc, T* y) {
  const int64_t k = d.k3, r = k / 2, cols = k * k * d.C_out, plane = d.H * d.W;
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t h = 0; h < d.H; ++h)
      for (int64_t w = 0; w < d.W; ++w) {
        for (int64_t o = 0; o < d.C_out; ++o) acc[o] = bias ? bias[o] : T(0);
        for (int64_t ky = 0; ky < k; ++ky) {
          const int64_t hh = h + ky - r;
          if (hh < 0 || hh >= d.H) continue;
          for (int64_t kx = 0; kx < k; ++kx) {
            const int64_t ww = w + kx - r;
            if (ww < 0 || ww >= d.W) continue;
            const T* z = Z + (((n - n0) * d.H + hh) * d.W + ww) * cols + (ky * k + kx) * d.C_out;
            for (int64_t o = 0; o < d.C_out; ++o) acc[o] += z[o];
          }
        }
        T* out = y + n * d.C_out * plane + h * d.W + w;
        for (int64_t o = 0; o < d.C_out; ++o) out[o * plane] = acc[o];
      }
}

// The adjoint of shifted_sum for samples [n0, n1): G[(n, h, w), tap*C_out + o] =
// gy[n, o, h - ky + r, w - kx + r] or 0.
template <typename T>
void shifted_gather(const T* gy, const ConditionerDims& d, int64_t n0, int64_t n1, T* G) {
  const int64_t k = d.k3, r = k / 2, plane = d.H * d.W;
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t h = 0; h < d.H; ++h)
      for (int64_t w = 0; w < d.W; ++w)
        for (int64_t ky = 0; ky < k; ++ky) {
          const int64_t hs = h - ky + r;
          for (int64_t kx = 0; kx < k; ++kx) {
            const int64_t ws = w - kx + r;
            const bool inside = hs >= 0 && hs < d.H && ws >= 0 && ws < d.W;
            const T* src = gy + n * d.C_out * plane + hs * d.W + ws;
            for (int64_t o = 0; o < d.C_out; ++o) *G++ = inside ? src[o * plane] : T(0);
          }
        }
}

}  // namespace fastgen::cpu
