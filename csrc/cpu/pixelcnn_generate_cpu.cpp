// CPU kernel of pixelcnn_generate_row: one image row of a categorical Gated PixelCNN in one call.
//
// For each block of samples (one per thread) and each column j of the row, left to right:
//   input  = the network input of pixel j - 1 (2 v - 1 for the value v drawn there; zeros at j = 0)
//   every layer l: its horizontal stack at this pixel (horizontal_pixel.h, for the block at once;
//                  row caches starting from zeros), with the layer's link for the row at column j
//   logits = b_o + W_o relu(b_h + W_h relu(h));  level of channel c = draw(logits[c], u[n, c, j])
// The vertical stacks of the row (its links) depend only on the rows above, so the caller
// computes them before the row (gated_pixelcnn_vertical_step). Why one call: stepping every
// layer from Python costs an op dispatch per layer and pixel, several times the arithmetic of a
// batch-1 pixel. float32 and float64.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "../generate_checks.h"
#include "categorical_draw.h"
#include "horizontal_pixel.h"
#include "step_common.h"

namespace fastgen::cpu {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

// One thread's block of B samples stepping through a row together: each layer is one
// horizontal_pixels call for the block (the step op's code), so a row generated here equals one
// stepped with gated_pixelcnn_horizontal_step.
template <typename T>
struct RowBlock {
  RowBlock(int64_t B, const std::vector<HorizontalWeights<T>>& weights, int64_t C_img, int64_t hidden, int64_t levels)
      : B(B), C(weights[0].C), C_img(C_img), hidden(hidden), levels(levels) {
    for (const auto& w : weights) states.emplace_back(B * w.C_in * w.T, T(0));
    h.resize(B * C), input.assign(B * C_img, T(0)), hid.resize(B * hidden), logits.resize(B * C_img * levels);
    draw_scratch.resize(levels);
  }

  // Layer l at this pixel for every sample of the block: the layer's input is the image's
  // (layer 0) or the previous layer's h (stepped in place); `link` points at sample 0's link at
  // this column, `cond_rows` at sample 0's conditioning.
  void step_layer(const HorizontalWeights<T>& w, int64_t l, const T* link, int64_t link_n, int64_t link_o,
                  const T* cond_rows) {
    horizontal_pixels(w, B, states[l].data(), l == 0 ? input.data() : h.data(), link, link_n, link_o, cond_rows,
                      scratch, h.data());
  }

  // logits = b_o + W_o relu(b_h + W_h relu(h)) for every sample of the block.
  void head(const T* wh, const T* bh, const T* wo, const T* bo) {
    for (T& v : h) v = std::max(v, T(0));
    dot_block(wh, h.data(), C, B, hidden, C, bh, false, hid.data(), hidden);
    for (T& v : hid) v = std::max(v, T(0));
    dot_block(wo, hid.data(), hidden, B, C_img * levels, hidden, bo, false, logits.data(), C_img * levels);
  }

  int64_t B, C, C_img, hidden, levels;
  std::vector<std::vector<T>> states;  // per layer: (B, C_in, T)
  PixelScratch<T> scratch;
  std::vector<T> h, input, hid, logits;
  std::vector<double> draw_scratch;  // the draw's cumulative sums
};

Tensor pixelcnn_generate_row(at::TensorList links, const Tensor& uniforms, at::TensorList w_h,
                             const c10::List<OptTensor>& b_h, at::TensorList w_res, const c10::List<OptTensor>& b_res,
                             std::vector<std::string> mask_types, const OptTensor& cond,
                             const c10::List<OptTensor>& w_cond_h, const Tensor& w_hidden, const OptTensor& b_hidden,
                             const Tensor& w_out, const OptTensor& b_out, int64_t levels) {
  check_pixelcnn_generate_row_inputs(links, uniforms, w_h, b_h, w_res, b_res, mask_types, cond, w_cond_h, w_hidden,
                                     b_hidden, w_out, b_out, levels, "cpu");
  const int64_t layers = static_cast<int64_t>(w_h.size());
  const at::ScalarType dtype = uniforms.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "fastgen: pixelcnn_generate_row runs float32 and "
              "float64 models, got ", dtype);
  const int64_t N = uniforms.size(0), C_img = uniforms.size(1), W = uniforms.size(2);
  const int64_t C = w_res[0].size(0), D = cond.has_value() ? cond->size(1) : 0, hidden = w_hidden.size(0);
  // Per layer: the window weight, b_h, w_res, b_res, w_cond_h (contiguous; undefined if absent).
  std::vector<std::array<Tensor, 5>> prepared(layers);
  std::vector<int64_t> inputs(layers), taps(layers);
  std::vector<bool> mask_b(layers);
  int64_t C_in = C_img;
  for (int64_t l = 0; l < layers; ++l) {
    const std::string& mask = mask_types[l];
    const Tensor& w = w_h[l];
    const int64_t T = w.size(3), used = mask == "B" ? T : T - 1;
    const Tensor window = (mask == "B" ? w : w.narrow(3, 0, used)).reshape({2 * C, C_in * used}).contiguous();
    const OptTensor bh = b_h.get(l), br = b_res.get(l), wc = w_cond_h.get(l);
    prepared[l] = {window, contiguous_or_undefined(bh), w_res[l].contiguous(), contiguous_or_undefined(br),
                   contiguous_or_undefined(wc)};
    inputs[l] = C_in, taps[l] = T, mask_b[l] = mask == "B";
    C_in = C;
  }
  Tensor codes = at::empty({N, C_img, W}, uniforms.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(dtype, "pixelcnn_generate_row", [&] {
    std::vector<HorizontalWeights<scalar_t>> weights(layers);
    for (int64_t l = 0; l < layers; ++l) {
      const auto& [window, bh_l, wr_l, br_l, wc_l] = prepared[l];
      weights[l] = {window.data_ptr<scalar_t>(), data_or_null<scalar_t>(bh_l), wr_l.data_ptr<scalar_t>(),
                    data_or_null<scalar_t>(br_l), data_or_null<scalar_t>(wc_l), inputs[l], taps[l], C, D, mask_b[l]};
    }
    std::vector<const scalar_t*> link_p(layers);
    std::vector<int64_t> link_n(layers), link_o(layers), link_j(layers);
    for (int64_t l = 0; l < layers; ++l) {
      link_p[l] = links[l].data_ptr<scalar_t>();
      link_n[l] = links[l].stride(0), link_o[l] = links[l].stride(1), link_j[l] = links[l].stride(2);
    }
    const Tensor u = uniforms.contiguous(), cond_c = contiguous_or_undefined(cond);
    const Tensor wh = w_hidden.contiguous(), wo = w_out.contiguous();
    const Tensor bh = contiguous_or_undefined(b_hidden), bo = contiguous_or_undefined(b_out);
    const scalar_t* u_p = u.data_ptr<scalar_t>();
    const scalar_t* cond_p = data_or_null<scalar_t>(cond_c);
    int64_t* codes_p = codes.data_ptr<int64_t>();
    const int64_t work = W * layers * (2 * C * 3 * C + C * C) + W * hidden * (C + C_img * levels);
    const int64_t grain = std::max<int64_t>(1, (1 << 18) / std::max<int64_t>(work, 1));
    at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
      RowBlock<scalar_t> block(n1 - n0, weights, C_img, hidden, levels);
      for (int64_t j = 0; j < W; ++j) {
        for (int64_t l = 0; l < layers; ++l) {
          block.step_layer(weights[l], l, link_p[l] + n0 * link_n[l] + j * link_j[l], link_n[l], link_o[l],
                           cond_p == nullptr ? nullptr : cond_p + n0 * D);
        }
        block.head(wh.data_ptr<scalar_t>(), data_or_null<scalar_t>(bh), wo.data_ptr<scalar_t>(),
                   data_or_null<scalar_t>(bo));
        for (int64_t b = 0; b < n1 - n0; ++b) {
          const int64_t n = n0 + b;
          for (int64_t c = 0; c < C_img; ++c) {
            const int64_t level = draw(block.logits.data() + (b * C_img + c) * levels, levels,
                                       u_p[(n * C_img + c) * W + j], block.draw_scratch.data());
            codes_p[(n * C_img + c) * W + j] = level;
            // The network input of the drawn value v = level / (levels - 1): 2 v - 1 (as the model maps images).
            const scalar_t v = static_cast<scalar_t>(level) / static_cast<scalar_t>(levels - 1);
            block.input[b * C_img + c] = scalar_t(2) * v - scalar_t(1);
          }
        }
      }
    });
  });
  return codes;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgen, CPU, m) { m.impl("pixelcnn_generate_row", &pixelcnn_generate_row); }

}  // namespace fastgen::cpu
