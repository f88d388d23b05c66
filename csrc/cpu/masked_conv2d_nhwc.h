// Channels-last (NHWC) CPU kernels of masked_conv2d, used when the input is channels-last: the
// gathered taps of a pixel are contiguous runs of channels, and the output (and grad_x) is
// written channels-last, as nn.Conv2d returns it for such an input.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>

#include "masked_conv_problem.h"

namespace fastgen::cpu {

// Whether the kernels take the channels-last path for x: x is channels-last and not also
// contiguous (a (N, 1, H, W) or 1x1 image is both and stays on the NCHW path). The fake kernels
// (fastgen/ops/_conv_registration.py) apply the same rule to the output's layout.
inline bool takes_channels_last(const at::Tensor& x) {
  return x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}

// y (N, C_out, H, W) channels-last from x (channels-last, in the accumulation dtype), the kept
// weight (groups, C_out / groups, C_in / groups * T) and an optional bias (C_out).
at::Tensor masked_conv2d_forward_channels_last(const at::Tensor& x, const at::Tensor& w_kept,
                                               const std::optional<at::Tensor>& bias, const Problem& pb);

// grad_x (channels-last) from grad_y (channels-last), in the accumulation dtype.
at::Tensor masked_conv2d_grad_input_channels_last(const at::Tensor& gy, const at::Tensor& w_kept, const Problem& pb);

// grad_weight (C_out, C_in / groups, KH, KW) from grad_y and x (both channels-last).
at::Tensor masked_conv2d_grad_weight_channels_last(const at::Tensor& gy, const at::Tensor& x, const Problem& pb,
                                                   int64_t KH, int64_t KW);

}  // namespace fastgen::cpu
