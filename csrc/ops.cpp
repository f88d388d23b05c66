// Every fastgen op's schema, declared once. Kernels register against these names from
// their own files (cpu/, cuda/) and from Python (Triton, fake kernels, autograd).
//
// Why TORCH_LIBRARY and not pybind11: ops registered with the dispatcher are visible to
// torch.compile, torch.library.opcheck, autograd and the fake-tensor machinery, which
// pybind11 functions are not. The module itself needs no Python bindings: importing the
// shared library runs these registrations.
#include <torch/library.h>

TORCH_LIBRARY(fastgen, m) {
  // Gaussian family. `seed` is a 0-dim int64 tensor on the input's device: when `eps` is None
  // the noise is drawn inside the kernel from fastgen's counter-based stream keyed by it.
  m.def("reparameterize(Tensor mu, Tensor logvar, Tensor? eps, Tensor? seed) -> Tensor");
  m.def("gaussian_kl(Tensor mu, Tensor logvar) -> Tensor");
  m.def(
      "reparameterize_with_kl(Tensor mu, Tensor logvar, Tensor? eps, Tensor? seed)"
      " -> (Tensor, Tensor)");
  // One backward serves all three: grad_z or grad_kl may be None.
  m.def(
      "reparameterize_backward(Tensor? grad_z, Tensor? grad_kl, Tensor mu, Tensor logvar,"
      " Tensor? eps, Tensor? seed) -> (Tensor, Tensor)");
  m.def("standard_normal_log_prob(Tensor z) -> Tensor");
  m.def("standard_normal_log_prob_backward(Tensor grad, Tensor z) -> Tensor");

  // Convolution family. causal_conv1d: x (N, C_in, T), weight (C_out, C_in, K), bias (C_out,)
  // or None -> y (N, C_out, T), y[t] depending on x[t - (K-1-k) * dilation] only (no padding
  // copy is built). The backward returns (grad_x, grad_weight, grad_bias); an output whose
  // output_mask entry is false is returned as an empty (0,) tensor, and grad_bias is the sum of
  // grad_y over N and T.
  m.def("causal_conv1d(Tensor x, Tensor weight, Tensor? bias, int dilation) -> Tensor");
  m.def(
      "causal_conv1d_backward(Tensor grad_y, Tensor x, Tensor weight, int dilation,"
      " bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
  // masked_conv2d: x (N, C_in, H, W), weight (C_out, C_in/groups, KH, KW) with odd KH, KW, bias
  // (C_out,) or None -> y (N, C_out, H, W) ("same" size). Only the taps kept by the PixelCNN
  // mask (mask_type "A" or "B", RGB channel blocks when color_channels > 1) are read; the
  // weight's masked entries are ignored and get zero gradient. Backward as for causal_conv1d.
  m.def(
      "masked_conv2d(Tensor x, Tensor weight, Tensor? bias, str mask_type, int dilation, int groups,"
      " int color_channels) -> Tensor");
  m.def(
      "masked_conv2d_backward(Tensor grad_y, Tensor x, Tensor weight, str mask_type, int dilation,"
      " int groups, int color_channels, bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
  // wavenet_layer: x (N, C_res, T), w_dilated (C_gate, C_res, K), w_res (C_res, C_gate/2),
  // w_skip (C_skip, C_gate/2), cond (N, C_cond, T) with w_cond (C_gate, C_cond) or both None,
  // biases (C,) or None -> (residual_out (N, C_res, T), skip (N, C_skip, T), h). h is the gate
  // pre-activation (N, C_gate, T) in the accumulation dtype (float32 for float16/bfloat16),
  // kept for the backward when save_pre_activation, else an empty (0,) tensor.
  m.def(
      "wavenet_layer(Tensor x, Tensor w_dilated, Tensor? b_dilated, Tensor w_res, Tensor? b_res,"
      " Tensor w_skip, Tensor? b_skip, int dilation, Tensor? cond, Tensor? w_cond,"
      " bool save_pre_activation) -> (Tensor, Tensor, Tensor)");
  // Gradients of every input given grad_residual, grad_skip and the saved h: (grad_x,
  // grad_w_dilated, grad_b_dilated, grad_w_res, grad_b_res, grad_w_skip, grad_b_skip, grad_cond,
  // grad_w_cond); the last two are empty (0,) tensors when cond is None. Bias gradients are
  // always computed (sums over N and T).
  m.def(
      "wavenet_layer_backward(Tensor grad_residual, Tensor grad_skip, Tensor x, Tensor h,"
      " Tensor w_dilated, Tensor w_res, Tensor w_skip, int dilation, Tensor? cond, Tensor? w_cond)"
      " -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // gated_pixelcnn_layer: v, h (N, C_in, H, W); w_v (2C, C_in, n/2+1, n), w_h (2C, C_in, 1, n/2+1),
  // w_v2h (2C, 2C), w_res (C, C), biases (C_out,) or None; cond (N, D) with w_cond_v, w_cond_h
  // (2C, D) or all None -> (v_out, h_out, v_pre, h_pre). v_pre and h_pre, the gate
  // pre-activations (N, 2C, H, W) in the accumulation dtype, are kept for the backward when
  // save_pre_activation, else empty (0,) tensors. mask_type "A": the horizontal current-pixel
  // tap is ignored and there is no residual; "B": h is added to h_out (C_in == C).
  m.def(
      "gated_pixelcnn_layer(Tensor v, Tensor h, Tensor w_v, Tensor? b_v, Tensor w_h, Tensor? b_h,"
      " Tensor w_v2h, Tensor? b_v2h, Tensor w_res, Tensor? b_res, str mask_type, Tensor? cond,"
      " Tensor? w_cond_v, Tensor? w_cond_h, bool save_pre_activation) -> (Tensor, Tensor, Tensor, Tensor)");
  // Gradients of every input: (grad_v, grad_h, grad_w_v, grad_b_v, grad_w_h, grad_b_h, grad_w_v2h,
  // grad_b_v2h, grad_w_res, grad_b_res, grad_cond, grad_w_cond_v, grad_w_cond_h); the last three
  // are empty (0,) tensors when cond is None; grad_w_h is zero on its ignored tap for mask "A".
  m.def(
      "gated_pixelcnn_layer_backward(Tensor grad_v_out, Tensor grad_h_out, Tensor v, Tensor h,"
      " Tensor v_pre, Tensor h_pre, Tensor w_v, Tensor w_h, Tensor w_v2h, Tensor w_res, str mask_type,"
      " Tensor? cond, Tensor? w_cond_v, Tensor? w_cond_h) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,"
      " Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");

  // Sampling steps (no autograd: the Python wrappers refuse inputs that require grad).
  // wavenet_layer_step: one time step t = position (0-dim int64 tensor) of wavenet_layer; x
  // (N, C_res); state (N, dilation * (K - 1), C_res), slot t' mod L holding the input of time t',
  // read for the taps and then given x at slot t mod L (in place) -> (residual_out (N, C_res),
  // skip (N, C_skip)). Weights as in wavenet_layer; cond (N, C_cond).
  m.def(
      "wavenet_layer_step(Tensor x, Tensor(a!) state, Tensor position, Tensor w_dilated, Tensor? b_dilated,"
      " Tensor w_res, Tensor? b_res, Tensor w_skip, Tensor? b_skip, int dilation, Tensor? cond,"
      " Tensor? w_cond) -> (Tensor, Tensor)");
  // wavenet_generate: a whole WaveNet for T steps per call (categorical output; float16/bfloat16
  // weights and states stay in that dtype, arithmetic in float32):
  // per step every layer as in wavenet_layer_step (states, one per layer, updated in place;
  // position start + t), skips -> relu -> w_hidden -> relu -> w_out logits, the code drawn by the
  // inverse CDF at uniforms[:, t], its embedding row the next step's input -> codes (N, T) int64.
  // first_input (N, R) is the input of step 0; cond (N, C_cond, T) with one w_cond per layer.
  m.def(
      "wavenet_generate(Tensor(a!)[] states, Tensor first_input, Tensor uniforms, Tensor embedding,"
      " Tensor[] w_dilated, Tensor?[] b_dilated, Tensor[] w_res, Tensor?[] b_res, Tensor[] w_skip,"
      " Tensor?[] b_skip, Tensor?[] w_cond, int[] dilations, Tensor w_hidden, Tensor? b_hidden, Tensor w_out,"
      " Tensor? b_out, Tensor? cond, int start) -> Tensor");
  // gated_pixelcnn_vertical_step: state (N, C_in, k + 1, W) (the cached rows of the vertical
  // input) moves up one row and takes new_row (N, C_in, W) last, in place -> (v_out (N, C, W),
  // link (N, 2C, W) = w_v2h @ v_pre + b_v2h) for that row.
  m.def(
      "gated_pixelcnn_vertical_step(Tensor(a!) state, Tensor new_row, Tensor w_v, Tensor? b_v, Tensor w_v2h,"
      " Tensor? b_v2h, Tensor? cond, Tensor? w_cond_v) -> (Tensor, Tensor)");
  // gated_pixelcnn_horizontal_step: state (N, C_in, k + 1) (the row's last horizontal inputs)
  // shifts left and takes new_input (N, C_in) last, in place -> h_out (N, C) at one pixel; link
  // (N, 2C) is the row above's link at that column. Mask "A" windows state[..., 1:] with taps
  // 0..k-1, mask "B" the whole state plus the residual new_input.
  m.def(
      "gated_pixelcnn_horizontal_step(Tensor(a!) state, Tensor new_input, Tensor link, Tensor w_h, Tensor? b_h,"
      " Tensor w_res, Tensor? b_res, str mask_type, Tensor? cond, Tensor? w_cond_h) -> Tensor");
  // pixelcnn_generate_row: one image row of a categorical Gated PixelCNN, left to right: at each
  // pixel every layer's horizontal stack (row caches from zeros), the output head and the draw
  // of each channel; links[l] (N, 2C, W) is layer l's link for the row (from the vertical steps
  // of the rows above), uniforms (N, C_img, W) -> int64 levels (N, C_img, W).
  m.def(
      "pixelcnn_generate_row(Tensor[] links, Tensor uniforms, Tensor[] w_h, Tensor?[] b_h, Tensor[] w_res,"
      " Tensor?[] b_res, str[] mask_types, Tensor? cond, Tensor?[] w_cond_h, Tensor w_hidden, Tensor? b_hidden,"
      " Tensor w_out, Tensor? b_out, int levels) -> Tensor");

  // Flow family. Every op returns (output, logdet); logdet is (N,) per sample, in the
  // accumulation dtype (float32 for float16/bfloat16 inputs, else the input dtype).
  // reverse=false is the density direction x -> z.
  // affine_coupling: x, shift, log_scale of one shape (N, ...) -> y = x * exp(s) + shift, or
  // for reverse x = (y - shift) * exp(-s), with s = map(log_scale): scale "tanh_clamp"
  // s = clamp * tanh(r / clamp), "sigmoid" s = log sigmoid(r + 2), "exp" s = r; logdet = +-sum s.
  m.def(
      "affine_coupling(Tensor x, Tensor shift, Tensor log_scale, bool reverse, str scale, float clamp)"
      " -> (Tensor, Tensor)");
  // (grad_x, grad_shift, grad_log_scale) of affine_coupling; grad_logdet None counts as zero.
  m.def(
      "affine_coupling_backward(Tensor grad_y, Tensor? grad_logdet, Tensor x, Tensor shift,"
      " Tensor log_scale, bool reverse, str scale, float clamp) -> (Tensor, Tensor, Tensor)");
  // additive_coupling: y = x + shift (reverse: x - shift); logdet is zero, so it is not returned.
  m.def("additive_coupling(Tensor x, Tensor shift, bool reverse) -> Tensor");
  // actnorm: x (N, C, *spatial), bias and log_scale (C,) -> y = (x + bias) * exp(log_scale)
  // (reverse: y * exp(-log_scale) - bias) and logdet = +-prod(spatial) * sum(log_scale).
  m.def("actnorm(Tensor x, Tensor bias, Tensor log_scale, bool reverse) -> (Tensor, Tensor)");
  // (grad_x, grad_bias, grad_log_scale) of actnorm; grad_logdet None counts as zero.
  m.def(
      "actnorm_backward(Tensor grad_y, Tensor? grad_logdet, Tensor x, Tensor bias, Tensor log_scale,"
      " bool reverse) -> (Tensor, Tensor, Tensor)");
  // invertible_conv1x1: x (N, C, *spatial), matrix (C, C) applied per position, y[:, i] =
  // sum_j matrix[i, j] x[:, j]; logabsdet a 0-dim tensor, log|det W| of the forward weight
  // (for reverse the caller passes matrix = W^-1); logdet = +-prod(spatial) * logabsdet.
  m.def(
      "invertible_conv1x1(Tensor x, Tensor matrix, Tensor logabsdet, bool reverse) -> (Tensor, Tensor)");
  // (grad_x, grad_matrix, grad_logabsdet) of invertible_conv1x1; an output whose output_mask
  // entry is false is an empty (0,) tensor; grad_logdet None counts as zero.
  m.def(
      "invertible_conv1x1_backward(Tensor grad_y, Tensor? grad_logdet, Tensor x, Tensor matrix,"
      " bool reverse, bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
  // conv_conditioner: Glow's coupling network on x (N, C_in, H, W): conv w1 (H1, C_in, k1, k1)
  // -> ReLU -> conv w2 (H2, H1, 1, 1) -> ReLU -> conv w3 (C_out, H2, k3, k3), odd k1, k3, "same"
  // padding, biases (H1,), (H2,), (C_out,) or None; dropout p in [0, 1) after each ReLU, its masks
  // drawn from fastgen's stream keyed by seed (0-dim int64 on x's device, needed when p > 0) ->
  // (y (N, C_out, H, W), h1 (N*H*W, H1), h2 (N*H*W, H2)); h1 and h2, the hidden activations after
  // their ReLUs and dropout in (n, h, w) row order, are what the backward takes.
  m.def(
      "conv_conditioner(Tensor x, Tensor w1, Tensor? b1, Tensor w2, Tensor? b2, Tensor w3, Tensor? b3,"
      " float dropout, Tensor? seed) -> (Tensor, Tensor, Tensor)");
  // (grad_x, grad_w1, grad_b1, grad_w2, grad_b2, grad_w3, grad_b3) of conv_conditioner; the bias
  // gradients are always computed (sums over N, H, W); the masks are drawn again from the seed.
  m.def(
      "conv_conditioner_backward(Tensor grad_y, Tensor x, Tensor h1, Tensor h2, Tensor w1, Tensor w2,"
      " Tensor w3, float dropout, Tensor? seed) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}
