// CPU kernel of wavenet_generate: a whole WaveNet (every layer, the output head and the
// categorical draw) for many time steps in one call, the CPU counterpart of a persistent decoder.
//
// Per sample n and step t (position p = start + t), with the layer input x (R channels):
//   for each layer l (ring buffer state_l (N, L_l, R), L_l = dilation_l * (K - 1)):
//     taps  = x[p - (K-1-k) d_l] for k < K (ring slots, x itself last)
//     h     = b_d + W_d @ taps (+ W_c @ cond[n, :, t]);  z = tanh(h_a) * sigmoid(h_b)
//     skips += b_s + W_s @ z;  x <- x + b_r + W_r @ z;  state_l[slot p mod L_l] <- the layer's input
//   logits = b_o + W_o @ relu(b_h + W_h @ relu(skips))
//   code   = the first level whose cumulative softmax mass exceeds u[n, t] * total
//   x      = embedding[code] (the next step's input)
//
// Why one call: sampling one step per layer from Python costs a dispatch per layer and step
// (~8 us), more than the arithmetic of a batch-1 step. Here nothing leaves C++ between steps.
// Samples are processed in blocks of up to 4; blocks are independent work items. When there are
// fewer blocks than threads (batch 1 in real time), two threads share a block: each computes one
// fixed half of every product's inner dimension and they meet once per layer on a spin barrier.
// float32 products keep their outputs in registers (matvec.h); float16/bfloat16 models keep
// weights and rings in their dtype and compute in float32.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <optional>
#include <vector>

#include "../generate_checks.h"
#include "categorical_draw.h"
#include "conv_common.h"
#include "gate_math.h"
#include "matvec.h"
#include "spin_barrier.h"
#include "step_common.h"

namespace fastgen::cpu {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

constexpr int64_t kSampleBlock = 4;  // samples sharing each weight row

// One layer's weights (transposed) and ring buffer, in the model's dtype w_t.
template <typename w_t>
struct LayerView {
  const w_t *wd, *bd, *wr, *br, *ws, *bs, *wc;
  w_t* state;
  int64_t dilation, L;
};

// v rounded to the model's dtype (a no-op for float32/float64): float16/bfloat16 models round
// where their step ops return tensors (each layer's residual, the head's outputs); the skip sum
// over the layers is kept in float32 and rounded once.
template <typename w_t, typename acc_t>
inline acc_t rounded(acc_t v) {
  return static_cast<acc_t>(static_cast<w_t>(v));
}

// Every product's inner dimension is split into kParts fixed parts (the gate channels for the
// residual and skip products, the hidden units for the logits), summed part 0 + part 1
// afterwards; the head's hidden layer is split by its outputs instead, the same units each part
// then takes for the logits. A team of kParts threads computes one part each and meets once per
// layer (plus once for the head); a thread alone computes both parts in turn. The arithmetic is
// the same either way: results do not depend on the thread count.
constexpr int kParts = 2;

// One set of partial products of a block of B samples: part p's share of each split product.
template <typename acc_t>
struct Partials {
  std::vector<acc_t> res[kParts], skip[kParts], logits[kParts];
  Partials(int64_t B, int64_t R, int64_t S, int64_t levels) {
    constexpr int64_t pad = 16;  // parts written by different threads never share a cache line
    for (int p = 0; p < kParts; ++p) {
      res[p].resize(B * R + pad), skip[p].resize(B * S + pad), logits[p].resize(B * levels + pad);
    }
  }
};

// What the threads of a team share: two sets of partials, used in turn after each barrier so
// that a thread writing the next set never overwrites one another thread still reads, and
// whether the team has gone solo (below).
template <typename acc_t>
struct TeamShared {
  Partials<acc_t> phase[2];
  SpinBarrier barrier;
  alignas(64) std::atomic<bool> solo{false};
  int64_t solo_at_step = -1;  // tests: go solo at this step of a block whatever the waits
  TeamShared(int team, int64_t B, int64_t R, int64_t S, int64_t levels)
      : phase{Partials<acc_t>(B, R, S, levels), Partials<acc_t>(B, R, S, levels)}, barrier(team) {}
};

// Rows [r0, r1) of M that part (or thread) `index` of `count` takes.
inline void row_range(int64_t M, int index, int count, int64_t& r0, int64_t& r1) {
  r0 = M * index / count;
  r1 = M * (index + 1) / count;
}

// out[i] = rounded(a[i] + b[i]) for i < n: the two parts of a split product.
template <typename w_t, typename acc_t>
void sum_parts(const std::vector<acc_t>& a, const std::vector<acc_t>& b, int64_t n, acc_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = rounded<w_t>(a[i] + b[i]);
}

// A team goes solo (its first thread computes both parts, the others leave) when its threads
// spend a large share of the time in slow barrier waits: they are not running on cores of
// their own (other processes share them), and a team that meets ~30 times a step then waits on
// the scheduler, a time slice (milliseconds) against ~60 us for a whole batch-1 step of the
// benchmark model. Measured on 2 cores (2x15 layers, 64/128/256, batch 1): quiet, a few short
// slow waits per thousand steps; beside two busy processes, one every 10-20 steps, and two
// threads reached half the speed of one. One thread alone is ~0.7x a team on a quiet machine,
// so a team losing more than kSoloWaitShare of its time is better split up. Results do not
// change: the arithmetic is the same for any team size.
constexpr double kSoloWaitShare = 0.25;
constexpr int64_t kSoloMinNs = 2'000'000;  // judge after a few milliseconds, not on one stray wait

inline bool should_go_solo(int64_t slow_wait_ns, int64_t elapsed_ns) {
  return elapsed_ns >= kSoloMinNs && static_cast<double>(slow_wait_ns) >= kSoloWaitShare * elapsed_ns;
}

// The whole generation of samples [n0, n0 + B), run by every thread of a team (tid = its index
// among `team` threads, sharing `sh`). The small per-sample vectors (taps, the layer input, the
// skip sum, the head's hidden layer) are kept by every thread and updated identically from the
// shared partials.
template <typename w_t, typename acc_t>
FASTGEN_CPU_CLONES void generate_block(const std::vector<LayerView<w_t>>& layers, TeamShared<acc_t>& sh, int tid, int team,
                    int64_t n0, int64_t B, const w_t* first, const w_t* u, const w_t* emb, const w_t* wh,
                    const w_t* bh, const w_t* wo, const w_t* bo, const w_t* cond, int64_t C_cond, int64_t R,
                    int64_t C_gate, int64_t S, int64_t H, int64_t levels, int64_t K, int64_t T, int64_t start,
                    int64_t* codes) {
  if (team > 1 && sh.solo.load(std::memory_order_acquire)) {  // gone solo in an earlier block
    if (tid != 0) return;
    team = 1;
  }
  const int64_t G = C_gate / 2;
  std::vector<acc_t> x(B * R), taps(B * R * K), h(B * C_gate), z(B * G), skips(B * S), relu_skips(B * S),
      relu_hidden(B * H), logits(B * levels), cond_t(B * C_cond);
  std::vector<double> scratch(levels);  // the draw's cumulative sums
  for (int64_t i = 0; i < B * R; ++i) x[i] = static_cast<acc_t>(first[n0 * R + i]);
  std::vector<std::vector<acc_t>> part_skips(kParts, std::vector<acc_t>(B * S));  // this thread's parts' skip sums
  std::vector<const acc_t*> tap_in(K);
  std::vector<int64_t> tap_ld(K);
  int64_t c0, c1;  // this thread's channels of the ring-buffer writes
  row_range(R, tid, team, c0, c1);
  int64_t phase = 0;  // barriers passed: which set of partials is written next
  // The clock for going solo starts after the first step: its first meeting waits for the
  // other threads to start up, which says nothing about the machine.
  std::chrono::steady_clock::time_point started;
  int64_t slow_ns_at_start = 0;
  auto elapsed_ns = [&] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started).count();
  };
  auto meet = [&] {
    if (team > 1) sh.barrier.wait();
    return &sh.phase[phase++ & 1];
  };
  for (int64_t t = 0; t < T; ++t) {
    const int64_t p = start + t;
    for (int64_t b = 0; b < B && cond != nullptr; ++b) {
      for (int64_t c = 0; c < C_cond; ++c) {
        cond_t[b * C_cond + c] = static_cast<acc_t>(cond[((n0 + b) * C_cond + c) * T + t]);
      }
    }
    for (auto& acc : part_skips) std::fill(acc.begin(), acc.end(), acc_t(0));
    for (size_t l = 0; l < layers.size(); ++l) {
      const auto& layer = layers[l];
      const bool last = l + 1 == layers.size();
      const int64_t L = layer.L;
      // Tap k's input for sample b at tap_in[k] + b * tap_ld[k]: the ring slot of time
      // p - (K-1-k) d read in place (a float16/bfloat16 ring is widened into `taps` first), and
      // the layer input itself for the last tap.
      for (int64_t k = 0; k + 1 < K; ++k) {
        const w_t* slot = layer.state + n0 * L * R + (((p - (K - 1 - k) * layer.dilation) % L + L) % L) * R;
        if constexpr (std::is_same_v<w_t, acc_t>) {
          tap_in[k] = slot, tap_ld[k] = L * R;
        } else {
          for (int64_t b = 0; b < B; ++b) {
            for (int64_t c = 0; c < R; ++c) taps[(b * K + k) * R + c] = static_cast<acc_t>(slot[b * L * R + c]);
          }
          tap_in[k] = taps.data() + k * R, tap_ld[k] = K * R;
        }
      }
      tap_in[K - 1] = x.data(), tap_ld[K - 1] = R;
      Partials<acc_t>& out = sh.phase[phase & 1];
      for (int part = tid; part < kParts; part += team) {
        int64_t g0, g1;  // this part's gate channels: rows g0.. of the tanh half, G + g0.. of the sigmoid half
        row_range(G, part, kParts, g0, g1);
        const int64_t width = g1 - g0;  // h rows [2 g0, 2 g1): the part's tanh rows, then its sigmoid rows
        for (int64_t k = 0; k < K; ++k) {  // w_dilated as K transposed (R, C_gate) matrices
          matvec_t_block(layer.wd + k * R * C_gate, tap_in[k], tap_ld[k], B, C_gate, R, 2 * g0, 2 * g1,
                         k == 0 ? layer.bd : nullptr, k > 0, h.data(), C_gate);
        }
        if (layer.wc != nullptr) {
          matvec_t_block(layer.wc, cond_t.data(), C_cond, B, C_gate, C_cond, 2 * g0, 2 * g1,
                         static_cast<const w_t*>(nullptr), true, h.data(), C_gate);
        }
        for (int64_t b = 0; b < B; ++b) {
          const acc_t* h_b = h.data() + b * C_gate + 2 * g0;
          for (int64_t j = 0; j < width; ++j) z[b * G + g0 + j] = tanh_acc(h_b[j]) * sigmoid_acc(h_b[width + j]);
        }
        const bool first_part = part == 0;  // the part that adds the biases
        matvec_t_block(layer.wr + g0 * R, z.data() + g0, G, B, R, g1 - g0, 0, R, first_part ? layer.br : nullptr,
                       false, out.res[part].data(), R);
        // Each part sums its share of every layer's skip privately; the parts meet at the head.
        matvec_t_block(layer.ws + g0 * S, z.data() + g0, G, B, S, g1 - g0, 0, S, first_part ? layer.bs : nullptr,
                       true, part_skips[part].data(), S);
        if (last) std::copy(part_skips[part].begin(), part_skips[part].end(), out.skip[part].begin());
      }
      meet();  // every part written; every thread has read its taps
      for (int64_t b = 0; b < B && L > 0; ++b) {  // the layer input goes to slot p mod L
        w_t* slot = layer.state + ((n0 + b) * L + p % L) * R;
        for (int64_t c = c0; c < c1; ++c) slot[c] = static_cast<w_t>(x[b * R + c]);
      }
      for (int64_t i = 0; i < B * R; ++i) x[i] = rounded<w_t>(x[i] + (out.res[0][i] + out.res[1][i]));
      if (last) sum_parts<w_t>(out.skip[0], out.skip[1], B * S, skips.data());
    }
    // The head, split by hidden units: part p computes hidden units [h0, h1) over every skip
    // channel (each thread holds the summed skips), then those units' share of the logits, so
    // the head needs one meeting, not two.
    Partials<acc_t>* out = &sh.phase[phase & 1];
    for (int64_t i = 0; i < B * S; ++i) relu_skips[i] = std::max(skips[i], acc_t(0));
    for (int part = tid; part < kParts; part += team) {
      int64_t h0, h1;
      row_range(H, part, kParts, h0, h1);
      matvec_t_block(wh, relu_skips.data(), S, B, H, S, h0, h1, bh, false, relu_hidden.data(), H);
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t j = h0; j < h1; ++j) {
          acc_t& v = relu_hidden[b * H + j];
          v = std::max(rounded<w_t>(v), acc_t(0));
        }
      }
      matvec_t_block(wo + h0 * levels, relu_hidden.data() + h0, H, B, levels, h1 - h0, 0, levels,
                     part == 0 ? bo : nullptr, false, out->logits[part].data(), levels);
    }
    if (tid == 0 && team > 1) {
      if (t == 0) {
        started = std::chrono::steady_clock::now();
        slow_ns_at_start = sh.barrier.slow_wait_ns();
      } else if (t == sh.solo_at_step || should_go_solo(sh.barrier.slow_wait_ns() - slow_ns_at_start, elapsed_ns())) {
        sh.solo.store(true, std::memory_order_relaxed);  // published by the barrier below
      }
    }
    meet();  // the logits' parts written
    if (team > 1 && sh.solo.load(std::memory_order_relaxed)) {
      // This step's ring writes are done by all; the first thread continues alone and the others
      // leave before reading anything it may overwrite next.
      if (tid != 0) return;
      team = 1;
      row_range(R, 0, 1, c0, c1);
    }
    sum_parts<w_t>(out->logits[0], out->logits[1], B * levels, logits.data());
    for (int64_t b = 0; b < B; ++b) {
      const int64_t code =
          draw(logits.data() + b * levels, levels, static_cast<acc_t>(u[(n0 + b) * T + t]), scratch.data());
      if (tid == 0) codes[(n0 + b) * T + t] = code;
      for (int64_t c = 0; c < R; ++c) x[b * R + c] = static_cast<acc_t>(emb[code * R + c]);
    }
  }
}

// Every block of samples, in parallel: one block per thread when there are enough blocks (no
// synchronisation); otherwise (batch 1 while sampling in real time) teams of kParts threads,
// each team working through its share of the blocks.
template <typename w_t, typename acc_t>
void generate_all(const std::vector<LayerView<w_t>>& views, int64_t N, const w_t* first, const w_t* u,
                  const w_t* emb, const w_t* wh, const w_t* bh, const w_t* wo, const w_t* bo,
                  const w_t* cond, int64_t C_cond, int64_t R, int64_t C_gate, int64_t S, int64_t H, int64_t levels,
                  int64_t K, int64_t T, int64_t start, int64_t* codes) {
  const int64_t blocks = ceil_div(N, kSampleBlock);
  const int threads = at::get_num_threads();
  auto run = [&](int64_t blk, TeamShared<acc_t>& sh, int tid, int team) {
    const int64_t n0 = blk * kSampleBlock, B = std::min(kSampleBlock, N - n0);
    generate_block<w_t, acc_t>(views, sh, tid, team, n0, B, first, u, emb, wh, bh, wo, bo, cond, C_cond, R, C_gate,
                               S, H, levels, K, T, start, codes);
  };
  if (blocks >= threads || threads < kParts) {
    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      TeamShared<acc_t> sh(1, kSampleBlock, R, S, levels);
      for (int64_t blk = b0; blk < b1; ++blk) run(blk, sh, 0, 1);
    });
    return;
  }
  const int teams = static_cast<int>(std::min<int64_t>(blocks, threads / kParts));
  // FASTGEN_DECODER_SOLO_AT_STEP (for tests): every team goes solo at that step, so the handover
  // is exercised on a machine that never makes a team's waits slow.
  const char* forced = std::getenv("FASTGEN_DECODER_SOLO_AT_STEP");
  const int64_t solo_at_step = forced != nullptr ? std::atoll(forced) : -1;
  std::vector<std::unique_ptr<TeamShared<acc_t>>> shared;
#pragma omp parallel num_threads(teams * kParts)
  {
    // OpenMP may grant fewer threads than asked: size the teams by what it granted.
    const int granted = omp_get_num_threads(), team = granted >= kParts ? kParts : 1, used = granted / team * team;
#pragma omp single
    for (int i = 0; i < used / team; ++i) {
      shared.push_back(std::make_unique<TeamShared<acc_t>>(team, kSampleBlock, R, S, levels));
      shared.back()->solo_at_step = solo_at_step;
    }
    const int me = omp_get_thread_num();
    for (int64_t blk = me / team; me < used && blk < blocks; blk += used / team) {
      run(blk, *shared[me / team], me % team, team);
    }
  }
}

Tensor wavenet_generate(at::TensorList states, const Tensor& first_input, const Tensor& uniforms,
                        const Tensor& embedding, at::TensorList w_dilated, const c10::List<OptTensor>& b_dilated,
                        at::TensorList w_res, const c10::List<OptTensor>& b_res, at::TensorList w_skip,
                        const c10::List<OptTensor>& b_skip, const c10::List<OptTensor>& w_cond,
                        at::IntArrayRef dilations, const Tensor& w_hidden, const OptTensor& b_hidden,
                        const Tensor& w_out, const OptTensor& b_out, const OptTensor& cond, int64_t start) {
  check_wavenet_generate_inputs(states, first_input, uniforms, embedding, w_dilated, b_dilated, w_res, b_res, w_skip,
                                b_skip, w_cond, dilations, w_hidden, b_hidden, w_out, b_out, cond, start, "cpu");
  const int64_t layers = static_cast<int64_t>(states.size());
  const at::ScalarType dtype = first_input.scalar_type();
  const int64_t N = first_input.size(0), R = first_input.size(1), T = uniforms.size(1);
  const int64_t K = w_dilated[0].size(2), C_gate = w_dilated[0].size(0), S = w_skip[0].size(0);
  const int64_t H = w_hidden.size(0), levels = w_out.size(0);
  const int64_t C_cond = cond.has_value() ? cond->size(1) : 0;
  std::vector<Tensor> keep;  // contiguous (or transposed) copies alive for the kernel
  auto c = [&](const Tensor& t) -> const Tensor& {
    keep.push_back(t.contiguous());
    return keep.back();
  };
  // A weight (M, ...) as its transpose (K, M), K the product of the other dims.
  auto ct = [&](const Tensor& t) -> const Tensor& {
    keep.push_back(t.reshape({t.size(0), -1}).t().contiguous());
    return keep.back();
  };
  keep.reserve(8 * layers + 8);
  // The gate rows (tanh half, sigmoid half) regrouped by part, each part's tanh rows then its
  // sigmoid rows, so that one product computes a part's gates.
  std::vector<int64_t> order;
  for (int part = 0; part < kParts; ++part) {
    int64_t g0, g1;
    row_range(C_gate / 2, part, kParts, g0, g1);
    for (int64_t half = 0; half < 2; ++half) {
      for (int64_t j = g0; j < g1; ++j) order.push_back(half * (C_gate / 2) + j);
    }
  }
  const Tensor gate_order = at::empty({C_gate}, at::TensorOptions().dtype(at::kLong));
  std::copy(order.begin(), order.end(), gate_order.data_ptr<int64_t>());
  auto by_part = [&](const Tensor& t) { return t.index_select(0, gate_order); };
  Tensor codes = at::empty({N, T}, first_input.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "wavenet_generate", [&] {
    using w_t = scalar_t;
    using acc_t = at::opmath_type<scalar_t>;
    std::vector<LayerView<w_t>> views(layers);
    for (int64_t l = 0; l < layers; ++l) {
      const OptTensor bd = b_dilated.get(l), br = b_res.get(l), bs = b_skip.get(l), wc = w_cond.get(l);
      views[l] = {c(by_part(w_dilated[l]).permute({2, 1, 0})).data_ptr<w_t>(),  // (K, R, C_gate)
                  bd.has_value() ? c(by_part(*bd)).data_ptr<w_t>() : nullptr,
                  ct(w_res[l]).data_ptr<w_t>(),
                  br.has_value() ? c(*br).data_ptr<w_t>() : nullptr,
                  ct(w_skip[l]).data_ptr<w_t>(),
                  bs.has_value() ? c(*bs).data_ptr<w_t>() : nullptr,
                  wc.has_value() ? ct(by_part(*wc)).data_ptr<w_t>() : nullptr,
                  states[l].data_ptr<w_t>(),
                  dilations[l],
                  dilations[l] * (K - 1)};
    }
    const w_t* first = c(first_input).data_ptr<w_t>();
    const w_t* u = c(uniforms).data_ptr<w_t>();
    const w_t* emb = c(embedding).data_ptr<w_t>();
    const w_t* wh = ct(w_hidden).data_ptr<w_t>();
    const w_t* wo = ct(w_out).data_ptr<w_t>();
    const Tensor bh = contiguous_or_undefined(b_hidden), bo = contiguous_or_undefined(b_out), cc = contiguous_or_undefined(cond);
    const w_t* bh_p = bh.defined() ? bh.data_ptr<w_t>() : nullptr;
    const w_t* bo_p = bo.defined() ? bo.data_ptr<w_t>() : nullptr;
    const w_t* cond_p = cc.defined() ? cc.data_ptr<w_t>() : nullptr;
    int64_t* codes_p = codes.data_ptr<int64_t>();
    generate_all<w_t, acc_t>(views, N, first, u, emb, wh, bh_p, wo, bo_p, cond_p, C_cond, R, C_gate, S, H, levels, K, T, start,
                 codes_p);
  });
  return codes;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgen, CPU, m) { m.impl("wavenet_generate", &wavenet_generate); }

}  // namespace fastgen::cpu
