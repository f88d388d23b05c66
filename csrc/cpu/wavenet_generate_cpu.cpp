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
// Samples are processed in blocks that share every weight row while it is in L1 (the matrix-
// vector products of a block reuse each row B times); blocks are independent work items.
// float32 and float64 only (the caller falls back to the step ops for other dtypes).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include "../conv_checks.h"
#include "conv_common.h"
#include "gate_math.h"
#include "matvec.h"

namespace fastgen::cpu {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

constexpr int64_t kSampleBlock = 4;  // samples sharing each weight row

template <typename T>
const T* ptr_or_null(const OptTensor& t) {
  return t.has_value() ? t->data_ptr<T>() : nullptr;
}

// One layer's weights (transposed) and ring buffer, in the model's dtype w_t.
template <typename w_t>
struct LayerView {
  const w_t *wd, *bd, *wr, *br, *ws, *bs, *wc;
  w_t* state;
  int64_t dilation, L;
};

// v rounded to the model's dtype (a no-op for float32/float64): float16/bfloat16 models round
// where their step ops return tensors (each layer's residual and skip, the running skip sum, the
// head's outputs), so the fused decoder computes what the step-op loop computes.
template <typename w_t, typename acc_t>
inline acc_t rounded(acc_t v) {
  return static_cast<acc_t>(static_cast<w_t>(v));
}

// The index of the first level whose cumulative probability exceeds u (the reference's rule).
template <typename acc_t>
int64_t draw(const acc_t* logits, int64_t levels, acc_t u, acc_t* scratch) {
  acc_t top = logits[0];
  for (int64_t i = 1; i < levels; ++i) top = std::max(top, logits[i]);
  acc_t total = 0;
  for (int64_t i = 0; i < levels; ++i) {
    scratch[i] = std::exp(logits[i] - top);
    total += scratch[i];
  }
  const acc_t threshold = u * total;
  acc_t cdf = 0;
  int64_t below = 0;
  for (int64_t i = 0; i < levels; ++i) {
    cdf += scratch[i];
    below += cdf < threshold;
  }
  return std::min(below, levels - 1);
}

// Buffers every thread of a team reads: the gate pre-activations, the residual update, the skip
// sum, the head's hidden layer and logits of the block's B samples.
template <typename acc_t>
struct Shared {
  std::vector<acc_t> h, res, skip, skips, hidden, logits;
};

// Rows [r0, r1) of M that thread `tid` of `team` computes.
inline void row_range(int64_t M, int tid, int team, int64_t& r0, int64_t& r1) {
  r0 = M * tid / team;
  r1 = M * (tid + 1) / team;
}

// This thread's outputs [r0, r1) of y = bias + W @ x for the B vectors, with W given transposed
// (WT, (K, M) row-major: the kernel transposes every weight once per call).
template <typename w_t, typename acc_t>
void rows_matvec(const w_t* WT, const acc_t* X, int64_t ldx, int64_t B, int64_t M, int64_t K, const w_t* bias,
                 bool accumulate, acc_t* Y, int64_t ldy, int tid, int team) {
  int64_t r0, r1;
  row_range(M, tid, team, r0, r1);
  if (r1 > r0) matvec_t_block(WT, X, ldx, B, M, K, r0, r1, bias, accumulate, Y, ldy);
}

// The whole generation of samples [n0, n0 + B), run by every thread of a team of `team` threads
// (tid = its index; `barrier` synchronises the team). Each matrix-vector product is split by
// output rows; the small per-sample vectors (taps, gates, the layer input) are recomputed by
// every thread from the shared results, so two barriers per layer suffice. The row split does
// not change any row's arithmetic: results are the same for any team size.
template <typename w_t, typename acc_t, typename Barrier>
void generate_block(const std::vector<LayerView<w_t>>& layers, Shared<acc_t>& sh, int tid, int team,
                    Barrier&& barrier, int64_t n0, int64_t B, const w_t* first, const w_t* u, const w_t* emb,
                    const w_t* wh, const w_t* bh, const w_t* wo, const w_t* bo, const w_t* cond,
                    int64_t C_cond, int64_t R, int64_t C_gate, int64_t S, int64_t H, int64_t levels, int64_t K,
                    int64_t T, int64_t start, int64_t* codes) {
  const int64_t G = C_gate / 2;
  std::vector<acc_t> x(B * R), taps(B * R * K), z(B * G), scratch(levels), logits_b(levels), cond_t(B * C_cond),
      relu_in(B * S), relu_hidden(B * H);
  for (int64_t i = 0; i < B * R; ++i) x[i] = static_cast<acc_t>(first[n0 * R + i]);
  int64_t c0, c1, s0, s1;  // this thread's channels of the state writes and rows of the skip sum
  row_range(R, tid, team, c0, c1);
  row_range(S, tid, team, s0, s1);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t p = start + t;
    for (int64_t b = 0; b < B; ++b) std::fill(sh.skips.begin() + b * S + s0, sh.skips.begin() + b * S + s1, acc_t(0));
    for (int64_t b = 0; b < B && cond != nullptr; ++b) {
      for (int64_t c = 0; c < C_cond; ++c) {
        cond_t[b * C_cond + c] = static_cast<acc_t>(cond[((n0 + b) * C_cond + c) * T + t]);
      }
    }
    for (const auto& layer : layers) {
      const int64_t L = layer.L;
      for (int64_t b = 0; b < B; ++b) {
        const w_t* state_b = layer.state + (n0 + b) * L * R;
        acc_t* taps_b = taps.data() + b * R * K;
        for (int64_t k = 0; k + 1 < K; ++k) {
          const w_t* src = state_b + (((p - (K - 1 - k) * layer.dilation) % L + L) % L) * R;
          for (int64_t c = 0; c < R; ++c) taps_b[c * K + k] = static_cast<acc_t>(src[c]);
        }
        for (int64_t c = 0; c < R; ++c) taps_b[c * K + K - 1] = x[b * R + c];
      }
      rows_matvec(layer.wd, taps.data(), R * K, B, C_gate, R * K, layer.bd, false, sh.h.data(), C_gate, tid, team);
      if (layer.wc != nullptr) {
        rows_matvec(layer.wc, cond_t.data(), C_cond, B, C_gate, C_cond, static_cast<const w_t*>(nullptr), true,
                    sh.h.data(), C_gate, tid, team);
      }
      barrier();  // h complete; every thread has read its taps
      for (int64_t b = 0; b < B && L > 0; ++b) {  // the layer input goes to slot p mod L
        w_t* slot = layer.state + ((n0 + b) * L + p % L) * R;
        for (int64_t c = c0; c < c1; ++c) slot[c] = static_cast<w_t>(x[b * R + c]);
      }
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t j = 0; j < G; ++j) {
          z[b * G + j] = tanh_acc(sh.h[b * C_gate + j]) * sigmoid_acc(sh.h[b * C_gate + G + j]);
        }
      }
      rows_matvec(layer.ws, z.data(), G, B, S, G, layer.bs, false, sh.skip.data(), S, tid, team);
      for (int64_t b = 0; b < B; ++b) {  // this thread's rows of the skip sum
        for (int64_t o = s0; o < s1; ++o) {
          acc_t& sum = sh.skips[b * S + o];
          sum = rounded<w_t>(sum + rounded<w_t>(sh.skip[b * S + o]));
        }
      }
      rows_matvec(layer.wr, z.data(), G, B, R, G, layer.br, false, sh.res.data(), R, tid, team);
      barrier();  // res complete (and nobody reads h of this layer any more)
      for (int64_t i = 0; i < B * R; ++i) x[i] = rounded<w_t>(x[i] + sh.res[i]);
    }
    barrier();  // skips complete, res read by every thread
    for (int64_t i = 0; i < B * S; ++i) relu_in[i] = std::max(sh.skips[i], acc_t(0));
    rows_matvec(wh, relu_in.data(), S, B, H, S, bh, false, sh.hidden.data(), H, tid, team);
    barrier();  // hidden complete
    for (int64_t i = 0; i < B * H; ++i) relu_hidden[i] = std::max(rounded<w_t>(sh.hidden[i]), acc_t(0));
    rows_matvec(wo, relu_hidden.data(), H, B, levels, H, bo, false, sh.logits.data(), levels, tid, team);
    barrier();  // logits complete
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t i = 0; i < levels; ++i) logits_b[i] = rounded<w_t>(sh.logits[b * levels + i]);
      const int64_t code = draw(logits_b.data(), levels, static_cast<acc_t>(u[(n0 + b) * T + t]), scratch.data());
      if (tid == 0) codes[(n0 + b) * T + t] = code;
      for (int64_t c = 0; c < R; ++c) x[b * R + c] = static_cast<acc_t>(emb[code * R + c]);
    }
    // No barrier here: the shared buffers are next written after barriers every thread passes
    // only once it has read them (skips are zeroed by the threads that own their rows).
  }
}

// A barrier of the enclosing OpenMP team (an orphaned directive: it binds to the team running it).
inline void team_barrier() {
#pragma omp barrier
}

// Every block of samples, in parallel: one block per thread when there are enough blocks (no
// synchronisation); otherwise (batch 1 while sampling in real time) the whole team works on each
// block, splitting every matrix-vector product by rows.
template <typename w_t, typename acc_t>
void generate_all(const std::vector<LayerView<w_t>>& views, int64_t N, const w_t* first, const w_t* u,
                  const w_t* emb, const w_t* wh, const w_t* bh, const w_t* wo, const w_t* bo,
                  const w_t* cond, int64_t C_cond, int64_t R, int64_t C_gate, int64_t S, int64_t H, int64_t levels,
                  int64_t K, int64_t T, int64_t start, int64_t* codes) {
  const int64_t blocks = ceil_div(N, kSampleBlock);
  const int threads = at::get_num_threads();
  auto shared = [&] {
    const int64_t B = kSampleBlock;
    return Shared<acc_t>{std::vector<acc_t>(B * C_gate), std::vector<acc_t>(B * R), std::vector<acc_t>(B * S),
                         std::vector<acc_t>(B * S), std::vector<acc_t>(B * H), std::vector<acc_t>(B * levels)};
  };
  auto run = [&](int64_t blk, Shared<acc_t>& sh, int tid, int team, auto&& barrier) {
    const int64_t n0 = blk * kSampleBlock, B = std::min(kSampleBlock, N - n0);
    generate_block<w_t, acc_t>(views, sh, tid, team, barrier, n0, B, first, u, emb, wh, bh, wo, bo, cond, C_cond, R, C_gate, S,
                   H, levels, K, T, start, codes);
  };
  if (blocks >= threads || threads == 1) {
    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      Shared<acc_t> sh = shared();
      for (int64_t blk = b0; blk < b1; ++blk) run(blk, sh, 0, 1, [] {});
    });
    return;
  }
  for (int64_t blk = 0; blk < blocks; ++blk) {
    Shared<acc_t> sh = shared();
#pragma omp parallel num_threads(threads)
    run(blk, sh, omp_get_thread_num(), omp_get_num_threads(), team_barrier);
  }
}

Tensor contiguous_or_empty(const OptTensor& t) { return t.has_value() ? t->contiguous() : Tensor(); }

Tensor wavenet_generate(at::TensorList states, const Tensor& first_input, const Tensor& uniforms,
                        const Tensor& embedding, at::TensorList w_dilated, const c10::List<OptTensor>& b_dilated,
                        at::TensorList w_res, const c10::List<OptTensor>& b_res, at::TensorList w_skip,
                        const c10::List<OptTensor>& b_skip, const c10::List<OptTensor>& w_cond,
                        at::IntArrayRef dilations, const Tensor& w_hidden, const OptTensor& b_hidden,
                        const Tensor& w_out, const OptTensor& b_out, const OptTensor& cond, int64_t start) {
  const int64_t layers = static_cast<int64_t>(states.size());
  TORCH_CHECK(layers >= 1, "fastgen: wavenet_generate needs at least one layer");
  for (int64_t size : {static_cast<int64_t>(w_dilated.size()), static_cast<int64_t>(b_dilated.size()),
                       static_cast<int64_t>(w_res.size()), static_cast<int64_t>(b_res.size()),
                       static_cast<int64_t>(w_skip.size()), static_cast<int64_t>(b_skip.size()),
                       static_cast<int64_t>(w_cond.size()), static_cast<int64_t>(dilations.size())}) {
    TORCH_CHECK(size == layers, "fastgen: wavenet_generate needs one entry per layer in every list");
  }
  const at::ScalarType dtype = first_input.scalar_type();
  TORCH_CHECK(at::isFloatingType(dtype), "fastgen: wavenet_generate needs a floating-point first_input");
  check_conv_tensor(first_input, "first_input", "(N, R)", 2);
  check_conv_tensor(uniforms, "uniforms", "(N, T)", 2);
  const int64_t N = first_input.size(0), R = first_input.size(1), T = uniforms.size(1);
  const int64_t K = w_dilated[0].size(2), C_gate = w_dilated[0].size(0), S = w_skip[0].size(0);
  const int64_t H = w_hidden.size(0), levels = w_out.size(0);
  TORCH_CHECK(uniforms.size(0) == N && start >= 0, "fastgen: uniforms must be (N, T) and start >= 0");
  TORCH_CHECK(embedding.dim() == 2 && embedding.size(0) == levels && embedding.size(1) == R,
              "fastgen: embedding must be (levels, R) = (", levels, ", ", R, "), got ", embedding.sizes());
  TORCH_CHECK(w_hidden.dim() == 2 && w_hidden.size(1) == S && w_out.dim() == 2 && w_out.size(1) == H,
              "fastgen: w_hidden must be (H, C_skip) and w_out (levels, H)");
  const int64_t C_cond = cond.has_value() ? cond->size(1) : 0;
  if (cond.has_value()) {
    TORCH_CHECK(cond->dim() == 3 && cond->size(0) == N && cond->size(2) == T, "fastgen: cond must be (N, C_cond, T)");
  }
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
  for (int64_t l = 0; l < layers; ++l) {
    TORCH_CHECK(w_dilated[l].sizes() == at::IntArrayRef({C_gate, R, K}) && dilations[l] >= 1,
                "fastgen: every w_dilated must be (C_gate, R, K) with a dilation >= 1");
    TORCH_CHECK(states[l].sizes() == at::IntArrayRef({N, dilations[l] * (K - 1), R}) && states[l].is_contiguous(),
                "fastgen: state ", l, " must be contiguous (N, dilation * (K - 1), R)");
    TORCH_CHECK(w_res[l].sizes() == at::IntArrayRef({R, C_gate / 2}) && w_skip[l].sizes() == at::IntArrayRef({S, C_gate / 2}),
                "fastgen: w_res must be (R, C_gate / 2) and w_skip (C_skip, C_gate / 2)");
    TORCH_CHECK(w_cond.get(l).has_value() == cond.has_value(), "fastgen: w_cond and cond must be given together");
  }
  for (const Tensor& t : {first_input, uniforms, embedding, w_hidden, w_out}) {
    TORCH_CHECK(t.scalar_type() == dtype && t.device().is_cpu(), "fastgen: wavenet_generate tensors must share "
                "the dtype of first_input and be on the CPU");
  }
  Tensor codes = at::empty({N, T}, first_input.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "wavenet_generate", [&] {
    using w_t = scalar_t;
    using acc_t = at::opmath_type<scalar_t>;
    std::vector<LayerView<w_t>> views(layers);
    for (int64_t l = 0; l < layers; ++l) {
      const OptTensor bd = b_dilated.get(l), br = b_res.get(l), bs = b_skip.get(l), wc = w_cond.get(l);
      views[l] = {ct(w_dilated[l]).data_ptr<w_t>(),
                  bd.has_value() ? c(*bd).data_ptr<w_t>() : nullptr,
                  ct(w_res[l]).data_ptr<w_t>(),
                  br.has_value() ? c(*br).data_ptr<w_t>() : nullptr,
                  ct(w_skip[l]).data_ptr<w_t>(),
                  bs.has_value() ? c(*bs).data_ptr<w_t>() : nullptr,
                  wc.has_value() ? ct(*wc).data_ptr<w_t>() : nullptr,
                  states[l].data_ptr<w_t>(),
                  dilations[l],
                  dilations[l] * (K - 1)};
    }
    const w_t* first = c(first_input).data_ptr<w_t>();
    const w_t* u = c(uniforms).data_ptr<w_t>();
    const w_t* emb = c(embedding).data_ptr<w_t>();
    const w_t* wh = ct(w_hidden).data_ptr<w_t>();
    const w_t* wo = ct(w_out).data_ptr<w_t>();
    const Tensor bh = contiguous_or_empty(b_hidden), bo = contiguous_or_empty(b_out), cc = contiguous_or_empty(cond);
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
