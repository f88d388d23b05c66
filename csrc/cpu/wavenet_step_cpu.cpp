// CPU kernel of wavenet_layer_step: one time step t of a WaveNet residual layer while sampling.
//
//   state (N, L, C_res), L = dilation * (K - 1): slot s holds the layer input of the latest time
//   t' < t with t' mod L == s (zeros stand for times before 0). Tap k reads time
//   t - (K-1-k) * dilation: x itself for k = K - 1, slot (t - (K-1-k) * dilation) mod L
//   otherwise. Once the taps are read, x goes to slot t mod L (that slot held time t - L, the
//   oldest tap, which no later step reads).
//
//   h = b_dilated + sum_k Wd[:, :, k] @ tap_k (+ w_cond @ cond)
//   z = tanh(h[:C_half]) * sigmoid(h[C_half:])
//   residual = x + w_res @ z + b_res,   skip = w_skip @ z + b_skip
//
// One sample is a few small matrix-vector products. The taps are gathered interleaved as
// taps[c * K + k], the order of w_dilated's (C_res, K) row, so each gate channel is one
// contiguous dot product; the state is time-major so a tap's channels are one contiguous read.
// Samples are independent work items. float16/bfloat16 are computed in float32 (weights
// upcast once per call); float64 in float64.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <optional>
#include <tuple>
#include <vector>

#include "../step_checks.h"
#include "conv_common.h"
#include "gate_math.h"
#include "matvec.h"
#include "step_common.h"

namespace fastgen::cpu {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

template <typename scalar_t>
void step_kernel(const Tensor& x, const Tensor& state, int64_t t, const Tensor& wd, const Tensor& bd,
                 const Tensor& wr, const Tensor& br, const Tensor& ws, const Tensor& bs, int64_t dilation,
                 const Tensor& cond, const Tensor& wc, const Tensor& residual, const Tensor& skip) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t N = x.size(0), C_res = x.size(1), C_gate = wd.size(0), K = wd.size(2);
  const int64_t C_half = C_gate / 2, C_skip = ws.size(0), L = state.size(1);
  const int64_t C_cond = cond.defined() ? cond.size(1) : 0;
  const scalar_t* x_p = x.data_ptr<scalar_t>();
  scalar_t* state_p = state.data_ptr<scalar_t>();
  const scalar_t* cond_p = cond.defined() ? cond.data_ptr<scalar_t>() : nullptr;
  scalar_t* res_p = residual.data_ptr<scalar_t>();
  scalar_t* skip_p = skip.data_ptr<scalar_t>();
  const acc_t *wd_p = wd.data_ptr<acc_t>(), *wr_p = wr.data_ptr<acc_t>(), *ws_p = ws.data_ptr<acc_t>();
  const acc_t *bd_p = data_or_null<acc_t>(bd), *br_p = data_or_null<acc_t>(br), *bs_p = data_or_null<acc_t>(bs);
  const acc_t* wc_p = data_or_null<acc_t>(wc);
  // Slot of each buffered tap (k < K - 1), the same for every sample.
  std::vector<int64_t> slots(K > 1 ? K - 1 : 0);
  for (int64_t k = 0; k + 1 < K; ++k) slots[k] = ((t - (K - 1 - k) * dilation) % L + L) % L;
  // A sample is ~C_gate * C_res * K + (C_res + C_skip) * C_half multiply-adds: split across
  // threads only when there are enough samples to pay for waking them.
  const int64_t work = C_gate * C_res * K + (C_res + C_skip) * C_half;
  const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(work, 1));
  at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
    std::vector<acc_t> taps(C_res * K), h(C_gate), z(C_half), cond_n(C_cond), out(std::max(C_res, C_skip));
    for (int64_t n = n0; n < n1; ++n) {
      const scalar_t* x_n = x_p + n * C_res;
      scalar_t* state_n = state_p + n * L * C_res;
      for (int64_t k = 0; k + 1 < K; ++k) {
        const scalar_t* src = state_n + slots[k] * C_res;
        for (int64_t c = 0; c < C_res; ++c) taps[c * K + k] = static_cast<acc_t>(src[c]);
      }
      for (int64_t c = 0; c < C_res; ++c) taps[c * K + K - 1] = static_cast<acc_t>(x_n[c]);
      matvec(wd_p, taps.data(), C_gate, C_res * K, bd_p, false, h.data());
      if (cond_p != nullptr) {
        for (int64_t c = 0; c < C_cond; ++c) cond_n[c] = static_cast<acc_t>(cond_p[n * C_cond + c]);
        matvec(wc_p, cond_n.data(), C_gate, C_cond, static_cast<const acc_t*>(nullptr), true, h.data());
      }
      for (int64_t j = 0; j < C_half; ++j) z[j] = tanh_acc(h[j]) * sigmoid_acc(h[C_half + j]);
      matvec(wr_p, z.data(), C_res, C_half, br_p, false, out.data());
      for (int64_t c = 0; c < C_res; ++c) {
        res_p[n * C_res + c] = static_cast<scalar_t>(static_cast<acc_t>(x_n[c]) + out[c]);
      }
      matvec(ws_p, z.data(), C_skip, C_half, bs_p, false, out.data());
      for (int64_t c = 0; c < C_skip; ++c) skip_p[n * C_skip + c] = static_cast<scalar_t>(out[c]);
      if (L > 0) {
        scalar_t* dst = state_n + (t % L) * C_res;
        for (int64_t c = 0; c < C_res; ++c) dst[c] = x_n[c];
      }
    }
  });
}

std::tuple<Tensor, Tensor> wavenet_layer_step(const Tensor& x, Tensor state, const Tensor& position,
                                              const Tensor& w_dilated, const OptTensor& b_dilated,
                                              const Tensor& w_res, const OptTensor& b_res, const Tensor& w_skip,
                                              const OptTensor& b_skip, int64_t dilation, const OptTensor& cond,
                                              const OptTensor& w_cond) {
  check_wavenet_layer_step_inputs(x, state, position, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, dilation,
                                  cond, w_cond);
  TORCH_CHECK(position.device().is_cpu(), "fastgen: position must be on the CPU for CPU inputs");
  const int64_t t = position.item<int64_t>();
  TORCH_CHECK(t >= 0, "fastgen: position must be >= 0, got ", t);
  const at::ScalarType acc = acc_type(x.scalar_type());
  const Tensor xc = x.contiguous();
  const Tensor condc = cond.has_value() ? cond->contiguous() : Tensor();
  Tensor residual = at::empty(x.sizes(), x.options());
  Tensor skip = at::empty({x.size(0), w_skip.size(0)}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "wavenet_layer_step", [&] {
    step_kernel<scalar_t>(xc, state, t, acc_contiguous(w_dilated, acc), acc_contiguous(b_dilated, acc),
                          acc_contiguous(w_res, acc), acc_contiguous(b_res, acc), acc_contiguous(w_skip, acc),
                          acc_contiguous(b_skip, acc), dilation, condc, acc_contiguous(w_cond, acc), residual,
                          skip);
  });
  return {residual, skip};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgen, CPU, m) { m.impl("wavenet_layer_step", &wavenet_layer_step); }

}  // namespace fastgen::cpu
