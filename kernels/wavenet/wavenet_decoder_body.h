// The program one CUDA block runs in the persistent WaveNet decoder: every step of one sample's
// generation, every layer, the head and the categorical draw (see wavenet_decoder.cu).
//
// Written against a small `Block` interface (thread(), threads(), sync(), warp shuffles) rather
// than CUDA built-ins, so the same source runs two ways: on the GPU (wavenet_decoder.cu's
// CudaBlock: threadIdx, __syncthreads, __shfl_*_sync) and on the CPU in the test suite
// (tests/native/decoder_emulator.cpp: one std::thread per CUDA thread, std::barrier for the
// block and warp barriers), which checks the indexing and the barrier placement against the
// reference on machines without a GPU. Rules that keep the two equivalent: shuffles only in
// warp-uniform control flow; every shared-memory write is separated from reads by other threads
// by block.sync().
//
// Work split. Matrix-vector products: a warp per output row (rows dealt round-robin over the
// warps), its 32 lanes over the row's inputs (consecutive lanes read consecutive weights: no
// bank conflicts), then a butterfly warp sum (the same bits in every lane). Per step:
//   load     the step's input x_0 (first_input, or the embedding of the last code), every
//            layer's past taps from its ring buffer (all written in earlier steps, so they are
//            read at once, one memory round trip per step instead of one per layer), cond_t,
//            skips = 0                                                           | sync
//   layer l  ring[t mod L] = x_l; z = tanh(a) * sigmoid(b), (a; b) = W_gate [taps | x_l | cond]
//            + b_gate                                                            | sync
//            x_{l+1} = x_l + W_res z + b_res (not for the last layer), skips += W_skip z + b_skip
//            (the last layer also applies the head's relu to the skips)          | sync
//   head     hidden = relu(W_h skips + b_h)        | sync   logits = W_o hidden + b_o | sync
//   draw     warp 0: softmax cumulative sums (warp scan), code = #{levels: cdf < u * cdf_last}
//                                                                                | sync
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "wavenet_decoder_layout.h"

#ifndef FASTGEN_DEVICE
#if defined(__CUDACC__)
#define FASTGEN_DEVICE __device__ __forceinline__
#else
#define FASTGEN_DEVICE inline
#endif
#endif

namespace fastgen {
namespace decoder {

// What one launch works on (device pointers; all tensors dense, row-major).
template <typename S>
struct Args {
  S* const* rings;             // per layer: (N, dilation * (K - 1), R), slot t mod L holds time t
  const int64_t* dilations;    // per layer
  const S* first_input;        // (N, R): the first layer's input at step 0
  const S* uniforms;           // (N, T)
  const S* embedding;          // (levels, R)
  const S* weights;            // packed (wavenet_decoder_layout.h)
  const S* cond;               // (N, T, C_cond) or nullptr
  int64_t* codes;              // (N, T) out
  int64_t batch, steps, start;  // N, T, position of step 0
  int64_t resident_elems;      // packed elements copied into shared memory (a prefix)
  Shape shape;
};

FASTGEN_HD float to_acc(float v) { return v; }
FASTGEN_HD double to_acc(double v) { return v; }
FASTGEN_HD void store(float* p, float v) { *p = v; }
FASTGEN_HD void store(double* p, double v) { *p = v; }
FASTGEN_HD float acc_exp(float v) { return expf(v); }
FASTGEN_HD double acc_exp(double v) { return exp(v); }
FASTGEN_HD float acc_tanh(float v) { return tanhf(v); }
FASTGEN_HD double acc_tanh(double v) { return tanh(v); }

template <typename A>
FASTGEN_HD A gate(A a, A b) {
  return acc_tanh(a) / (A(1) + acc_exp(-b));  // tanh(a) * sigmoid(b); exp(-b) = inf gives 0
}

template <typename T, typename Block>
FASTGEN_DEVICE T warp_sum(Block& block, T v) {
  for (int offset = 16; offset > 0; offset /= 2) v += block.shfl_xor(v, offset);
  return v;
}

template <typename T, typename Block>
FASTGEN_DEVICE T warp_max(Block& block, T v) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const T other = block.shfl_xor(v, offset);
    v = other > v ? other : v;
  }
  return v;
}

// Unrolled on the GPU so each lane has several weight loads in flight (most weights come from
// L2, and a step is bound by how fast one SM streams them).
#if defined(__CUDA_ARCH__)
#define FASTGEN_UNROLL_4 _Pragma("unroll 4")
#else
#define FASTGEN_UNROLL_4
#endif

// This lane's share of sum_i w[i] * v[i], i < n (lanes take i = lane, lane + 32, ...).
template <typename S, typename A>
FASTGEN_DEVICE A lane_dot(int lane, const S* w, const A* v, int64_t n) {
  A acc = 0;
  FASTGEN_UNROLL_4
  for (int64_t i = lane; i < n; i += 32) acc += to_acc(w[i]) * v[i];
  return acc;
}

// sum_i w[i] * v[i] for i < n, split over the warp's lanes (every lane gets the sum).
template <typename S, typename A, typename Block>
FASTGEN_DEVICE A row_dot(Block& block, const S* w, const A* v, int64_t n) {
  return warp_sum(block, lane_dot(block.thread() % 32, w, v, n));
}

// Warp 0: the level drawn from softmax(logits) with uniform u (the reference's inverse-CDF rule:
// the number of levels whose cumulative mass is below u times the total, at most levels - 1).
// Overwrites logits with the cumulative sums.
template <typename A, typename Block>
FASTGEN_DEVICE int64_t draw(Block& block, A* logits, int64_t levels, A u) {
  const int lane = block.thread() % 32;
  A top = -INFINITY;
  for (int64_t i = lane; i < levels; i += 32) top = logits[i] > top ? logits[i] : top;
  top = warp_max(block, top);
  A carry = 0;
  for (int64_t base = 0; base < levels; base += 32) {  // warp-uniform: an inclusive scan per 32
    const int64_t i = base + lane;
    A v = i < levels ? acc_exp(logits[i] - top) : A(0);
    for (int offset = 1; offset < 32; offset *= 2) {
      const A left = block.shfl_up(v, offset);
      if (lane >= offset) v += left;
    }
    v += carry;
    if (i < levels) logits[i] = v;
    carry = block.shfl_idx(v, 31);
  }
  const A threshold = u * carry;  // carry is now the last cumulative sum
  int below = 0;
  for (int64_t i = lane; i < levels; i += 32) below += logits[i] < threshold;  // this lane's own writes
  below = warp_sum(block, below);
  return below < levels - 1 ? below : levels - 1;
}

// The load of step t (position p) into shared memory, block-strided: the first layer's input
// (first_input at step 0, else the embedding of the last code), every layer's past taps (written
// in earlier steps, so all are read at once: one memory round trip a step, not one a layer) and
// cond_t. windows: (layers, K, R), layer l's [taps | x_l].
template <typename S, typename A, typename Block>
FASTGEN_DEVICE void load_step(const Args<S>& a, int64_t n, int64_t t, const int64_t* code, Block& block, A* windows,
                              A* cond_t) {
  const Shape& d = a.shape;
  const int64_t K = d.kernel_size, R = d.residual, C = d.cond, KR = K * R, past = (K - 1) * R;
  const int64_t p = a.start + t;
  const int tid = block.thread(), threads = block.threads();
  A* x0 = windows + past;
  const S* source = t == 0 ? a.first_input + n * R : a.embedding + *code * R;
  for (int64_t c = tid; c < R; c += threads) x0[c] = to_acc(source[c]);
  for (int64_t i = tid; i < d.layers * past; i += threads) {
    const int64_t l = i / past, k = (i % past) / R, c = i % R;
    const int64_t dilation = a.dilations[l], length = dilation * (K - 1);
    const int64_t slot = ((p - (K - 1 - k) * dilation) % length + length) % length;
    windows[l * KR + k * R + c] = to_acc(a.rings[l][(n * length + slot) * R + c]);
  }
  for (int64_t c = tid; c < C; c += threads) cond_t[c] = to_acc(a.cond[(n * a.steps + t) * C + c]);
}

// Layer l's input x (channels [c0, c1), block-strided) into its ring at position p.
template <typename S, typename A, typename Block>
FASTGEN_DEVICE void store_ring(const Args<S>& a, int64_t n, int64_t l, int64_t p, const A* x, int64_t c0, int64_t c1,
                               Block& block) {
  const int64_t K = a.shape.kernel_size, R = a.shape.residual;
  if (K == 1) return;  // no past taps, no ring
  const int64_t length = a.dilations[l] * (K - 1);
  S* ring = a.rings[l] + (n * length + p % length) * R;
  for (int64_t c = c0 + block.thread(); c < c1; c += block.threads()) store(ring + c, x[c]);
}

template <typename S, typename A, typename Block>
FASTGEN_DEVICE void decode_sample(const Args<S>& a, int64_t n, Block& block, unsigned char* smem) {
  const Shape& d = a.shape;
  const int64_t K = d.kernel_size, R = d.residual, G = d.gate, S_ = d.skip, H = d.hidden;
  const int64_t levels = d.levels, C = d.cond, KR = K * R, in_gate = gate_inputs(d), rows_rs = R + S_;
  const int tid = block.thread(), threads = block.threads();
  const int warp = tid / 32, warps = threads / 32, lane = tid % 32;

  A* windows = reinterpret_cast<A*>(smem);  // (layers, K, R): layer l's [taps | x_l]
  A* cond_t = windows + d.layers * KR;
  A* skips = cond_t + C;
  A* hidden = skips + S_;
  A* logits = hidden + H;
  A* z = logits + levels;
  int64_t* code = reinterpret_cast<int64_t*>(smem + code_offset(d, sizeof(A)));
  S* resident = reinterpret_cast<S*>(smem + weights_offset(d, sizeof(A)));

  for (int64_t i = tid; i < a.resident_elems; i += threads) resident[i] = a.weights[i];
  // A weight block lying wholly in the copied prefix is read from shared memory.
  auto weights_at = [&](int64_t offset, int64_t count) -> const S* {
    return offset + count <= a.resident_elems ? resident + offset : a.weights + offset;
  };
  const S* w_hidden = weights_at(head_offset(d), head_elems(d));
  const S* b_hidden = w_hidden + H * S_;
  const S* w_out = b_hidden + H;
  const S* b_out = w_out + levels * H;
  const int64_t past = (K - 1) * R;  // taps read from a ring, per layer

  for (int64_t t = 0; t < a.steps; ++t) {
    const int64_t p = a.start + t;
    // ---- load
    load_step(a, n, t, code, block, windows, cond_t);
    for (int64_t s = tid; s < S_; s += threads) skips[s] = A(0);
    block.sync();
    // ---- layers
    for (int64_t l = 0; l < d.layers; ++l) {
      const A* window = windows + l * KR;
      const A* x = window + past;
      store_ring(a, n, l, p, x, 0, R, block);
      const S* w_gate = weights_at(l * layer_elems(d), layer_elems(d));
      const S* b_gate = w_gate + 2 * G * in_gate;
      const S* w_rs = b_gate + 2 * G;
      const S* b_rs = w_rs + rows_rs * G;
      for (int64_t g = warp; g < G; g += warps) {
        const S* row_a = w_gate + g * in_gate;
        const S* row_b = w_gate + (G + g) * in_gate;
        // Two independent reductions (their shuffles interleave); the cond part, if any, first
        // summed per lane.
        const A pre_a = warp_sum(block, lane_dot(lane, row_a, window, KR) + lane_dot(lane, row_a + KR, cond_t, C));
        const A pre_b = warp_sum(block, lane_dot(lane, row_b, window, KR) + lane_dot(lane, row_b + KR, cond_t, C));
        if (lane == 0) z[g] = gate(pre_a + to_acc(b_gate[g]), pre_b + to_acc(b_gate[G + g]));
      }
      block.sync();
      const bool last = l + 1 == d.layers;
      A* x_next = last ? nullptr : windows + (l + 1) * KR + past;
      for (int64_t j = (last ? R : 0) + warp; j < rows_rs; j += warps) {
        const A out = row_dot(block, w_rs + j * G, z, G) + to_acc(b_rs[j]);
        if (lane == 0) {
          if (j < R) {
            x_next[j] = x[j] + out;
          } else {  // after the last layer's term, the head's relu (each row has one owner)
            const A sum = skips[j - R] + out;
            skips[j - R] = last ? (sum > A(0) ? sum : A(0)) : sum;
          }
        }
      }
      block.sync();
    }
    // ---- head (skips holds relu(skips) now)
    for (int64_t h = warp; h < H; h += warps) {
      const A pre = row_dot(block, w_hidden + h * S_, skips, S_) + to_acc(b_hidden[h]);
      if (lane == 0) hidden[h] = pre > A(0) ? pre : A(0);
    }
    block.sync();
    for (int64_t o = warp; o < levels; o += warps) {
      const A out = row_dot(block, w_out + o * H, hidden, H) + to_acc(b_out[o]);
      if (lane == 0) logits[o] = out;
    }
    block.sync();
    // ---- draw
    if (warp == 0) {
      const int64_t drawn = draw(block, logits, levels, to_acc(a.uniforms[n * a.steps + t]));
      if (lane == 0) {
        *code = drawn;
        a.codes[n * a.steps + t] = drawn;
      }
    }
    block.sync();
  }
}

}  // namespace decoder
}  // namespace fastgen
