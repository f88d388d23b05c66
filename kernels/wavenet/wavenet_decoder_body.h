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
// Work split. Matrix-vector products: a warp per kTile output rows (tiles dealt round-robin over
// the warps), its 32 lanes over the rows' inputs (consecutive lanes read consecutive weights: no
// bank conflicts), then a butterfly warp sum per row (the same bits in every lane). Per step:
//   load     the step's input x_0 (first_input, or the embedding of the last code), every
//            layer's past taps from its ring buffer (all written in earlier steps, so they are
//            read at once, one memory round trip per step instead of one per layer), cond_t,
//            skips = 0                                                           | sync
//   layer l  ring[t mod L] = x_l; z = tanh(a) * sigmoid(b), (a; b) = W_gate [taps | x_l | cond]
//            + b_gate                                                            | sync
//            x_{l+1} = x_l + W_res z + b_res (not for the last layer), skips += W_skip z + b_skip
//            (the last layer also applies the head's relu to the skips)          | sync
//   head     hidden = relu(W_h skips + b_h)        | sync   logits = W_o hidden + b_o | sync
//   draw     warp 0: softmax cumulative sums in double (warp scan), code = #{levels: cdf < u * cdf_last}
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

#if defined(__CUDA_ARCH__)
#define FASTGEN_UNROLL _Pragma("unroll")
#else
#define FASTGEN_UNROLL
#endif

// Rows a warp sums at once. A warp runs in order, so one row at a time would wait out a weight
// load (from L2 for most layers) and then a chain of shuffles for every row; kTile rows issue
// their loads together and interleave their reductions.
constexpr int kTile = 4;

// acc[r] += this lane's share of sum_i rows[r][i] * v[i], i < n, for r < count (lanes take
// i = lane, lane + 32, ...).
template <typename S, typename A>
FASTGEN_DEVICE void add_lane_dots(int lane, const S* const (&rows)[kTile], int count, const A* v, int64_t n,
                                  A (&acc)[kTile]) {
  for (int64_t i = lane; i < n; i += 32) {
    const A vi = v[i];
    FASTGEN_UNROLL
    for (int r = 0; r < kTile; ++r)
      if (r < count) acc[r] += to_acc(rows[r][i]) * vi;
  }
}

template <typename A, typename Block>
FASTGEN_DEVICE void warp_sums(Block& block, A (&acc)[kTile]) {
  FASTGEN_UNROLL
  for (int r = 0; r < kTile; ++r) acc[r] = warp_sum(block, acc[r]);
}

// For rows j in [first, end), dealt to the warps kTile at a time: out(j, sum_i row_of(j)[i] * v[i])
// in lane 0 of the warp that summed row j.
template <typename A, typename Block, typename RowOf, typename Out>
FASTGEN_DEVICE void matvec_rows(Block& block, int64_t first, int64_t end, RowOf row_of, const A* v, int64_t n,
                                Out out) {
  const int lane = block.thread() % 32, warp = block.thread() / 32, warps = block.threads() / 32;
  for (int64_t j = first + kTile * warp; j < end; j += kTile * warps) {  // warp-uniform
    const int count = end - j < kTile ? static_cast<int>(end - j) : kTile;
    decltype(row_of(j)) rows[kTile];
    A acc[kTile];
    FASTGEN_UNROLL
    for (int r = 0; r < kTile; ++r) {
      rows[r] = row_of(j + (r < count ? r : 0));
      acc[r] = A(0);
    }
    add_lane_dots(lane, rows, count, v, n, acc);
    warp_sums(block, acc);
    if (lane == 0) {
      FASTGEN_UNROLL  // constant indices keep acc in registers
      for (int r = 0; r < kTile; ++r)
        if (r < count) out(j + r, acc[r]);
    }
  }
}

// The gate's pre-activations of units g in [first, end), dealt to the warps kTile / 2 at a time:
// out(g, a, b) in lane 0, with (a; b) = (row_a(g); row_b(g)) . [window (n_window) | cond (n_cond)].
template <typename A, typename Block, typename RowA, typename RowB, typename Out>
FASTGEN_DEVICE void gate_units(Block& block, int64_t first, int64_t end, RowA row_a, RowB row_b, const A* window,
                               int64_t n_window, const A* cond, int64_t n_cond, Out out) {
  constexpr int kUnits = kTile / 2;
  const int lane = block.thread() % 32, warp = block.thread() / 32, warps = block.threads() / 32;
  for (int64_t g = first + kUnits * warp; g < end; g += kUnits * warps) {  // warp-uniform
    const int units = end - g < kUnits ? static_cast<int>(end - g) : kUnits;
    decltype(row_a(g)) rows[kTile];  // a and b rows of each unit in turn
    A acc[kTile];
    FASTGEN_UNROLL
    for (int u = 0; u < kUnits; ++u) {
      const int64_t unit = g + (u < units ? u : 0);
      rows[2 * u] = row_a(unit);
      rows[2 * u + 1] = row_b(unit);
      acc[2 * u] = acc[2 * u + 1] = A(0);
    }
    add_lane_dots(lane, rows, 2 * units, window, n_window, acc);
    if (n_cond > 0) {
      decltype(row_a(g)) cond_rows[kTile];
      FASTGEN_UNROLL
      for (int r = 0; r < kTile; ++r) cond_rows[r] = rows[r] + n_window;
      add_lane_dots(lane, cond_rows, 2 * units, cond, n_cond, acc);
    }
    warp_sums(block, acc);
    if (lane == 0) {
      FASTGEN_UNROLL
      for (int u = 0; u < kUnits; ++u)
        if (u < units) out(g + u, acc[2 * u], acc[2 * u + 1]);
    }
  }
}

// Warp 0: the level drawn from softmax(logits) with uniform u (the reference's inverse-CDF rule:
// the number of levels whose cumulative mass is below u times the total, at most levels - 1).
// In double whatever A is, as the reference (fastgen.reference.steps.categorical_draw)
// computes it: float cumulative sums rounded differently from the reference's drew another level
// about once in 40,000 draws. Two scans of the masses: the first for the total (the last
// cumulative sum, as the reference takes it), the second counts the sums below u * total.
template <typename A, typename Block>
FASTGEN_DEVICE int64_t draw(Block& block, const A* logits, int64_t levels, A u) {
  const int lane = block.thread() % 32;
  A top = -INFINITY;
  for (int64_t i = lane; i < levels; i += 32) top = logits[i] > top ? logits[i] : top;
  const double shift = static_cast<double>(warp_max(block, top));
  double threshold = 0;
  int below = 0;
  for (int pass = 0; pass < 2; ++pass) {
    double carry = 0;
    for (int64_t base = 0; base < levels; base += 32) {  // warp-uniform: an inclusive scan per 32
      const int64_t i = base + lane;
      double v = i < levels ? acc_exp(static_cast<double>(logits[i]) - shift) : 0.0;
      for (int offset = 1; offset < 32; offset *= 2) {
        const double left = block.shfl_up(v, offset);
        if (lane >= offset) v += left;
      }
      v += carry;
      if (pass == 1 && i < levels) below += v < threshold;
      carry = block.shfl_idx(v, 31);
    }
    threshold = static_cast<double>(u) * carry;  // carry is now the last cumulative sum
  }
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

// Where a block's running vectors, drawn code and resident weights are in its shared memory
// (wavenet_decoder_layout.h), the same for both programs.
template <typename S, typename A>
struct SharedLayout {
  A *windows, *cond, *z, *skips, *hidden, *logits;  // windows: (layers, K, R), layer l's [taps | x_l]
  int64_t* code;
  S* resident;
};

template <typename S, typename A>
FASTGEN_DEVICE SharedLayout<S, A> shared_layout(const Shape& d, unsigned char* smem) {
  SharedLayout<S, A> v;
  v.windows = reinterpret_cast<A*>(smem);
  v.cond = v.windows + d.layers * d.kernel_size * d.residual;
  v.z = v.cond + d.cond;
  v.skips = v.z + d.gate;
  v.hidden = v.skips + d.skip;
  v.logits = v.hidden + d.hidden;
  v.code = reinterpret_cast<int64_t*>(smem + code_offset(d, sizeof(A)));
  v.resident = reinterpret_cast<S*>(smem + weights_offset(d, sizeof(A)));
  return v;
}

template <typename S, typename A, typename Block>
FASTGEN_DEVICE void decode_sample(const Args<S>& a, int64_t n, Block& block, unsigned char* smem) {
  const Shape& d = a.shape;
  const int64_t K = d.kernel_size, R = d.residual, G = d.gate, S_ = d.skip, H = d.hidden;
  const int64_t levels = d.levels, C = d.cond, KR = K * R, in_gate = gate_inputs(d), rows_rs = R + S_;
  const int tid = block.thread(), threads = block.threads();
  const int warp = tid / 32, lane = tid % 32;

  const SharedLayout<S, A> v = shared_layout<S, A>(d, smem);
  A *windows = v.windows, *cond_t = v.cond, *z = v.z, *skips = v.skips, *hidden = v.hidden, *logits = v.logits;
  int64_t* code = v.code;
  S* resident = v.resident;

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
      gate_units(
          block, 0, G, [&](int64_t g) { return w_gate + g * in_gate; },
          [&](int64_t g) { return w_gate + (G + g) * in_gate; }, window, KR, cond_t, C,
          [&](int64_t g, A pre_a, A pre_b) { z[g] = gate(pre_a + to_acc(b_gate[g]), pre_b + to_acc(b_gate[G + g])); });
      block.sync();
      const bool last = l + 1 == d.layers;
      A* x_next = last ? nullptr : windows + (l + 1) * KR + past;
      matvec_rows(block, last ? R : 0, rows_rs, [&](int64_t j) { return w_rs + j * G; }, z, G, [&](int64_t j, A sum) {
        const A out = sum + to_acc(b_rs[j]);
        if (j < R) {
          x_next[j] = x[j] + out;
        } else {  // after the last layer's term, the head's relu (each row has one owner)
          const A total = skips[j - R] + out;
          skips[j - R] = last ? (total > A(0) ? total : A(0)) : total;
        }
      });
      block.sync();
    }
    // ---- head (skips holds relu(skips) now)
    matvec_rows(block, 0, H, [&](int64_t h) { return w_hidden + h * S_; }, skips, S_, [&](int64_t h, A sum) {
      const A pre = sum + to_acc(b_hidden[h]);
      hidden[h] = pre > A(0) ? pre : A(0);
    });
    block.sync();
    matvec_rows(block, 0, levels, [&](int64_t o) { return w_out + o * H; }, hidden, H,
                [&](int64_t o, A sum) { logits[o] = sum + to_acc(b_out[o]); });
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
