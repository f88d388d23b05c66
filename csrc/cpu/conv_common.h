// Small helpers shared by the CPU convolution kernels (causal_conv1d, masked_conv2d).
#pragma once
#include <ATen/OpMathType.h>
#include <c10/core/ScalarType.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include <cstdint>

namespace fastgen::cpu {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// float16/bfloat16 are computed in float32, float32 in float32, float64 in float64.
inline at::ScalarType acc_type(at::ScalarType dtype) { return at::toOpMathType(dtype); }

// The kernels run ATen GEMMs inside at::parallel_for worker threads, whose thread-local
// dispatch state is the default one: exclude autograd there explicitly (the inputs may require
// grad, or, under inference mode, be inference tensors that autograd's kernels refuse to write in
// place; the op's own autograd is registered separately).
struct BelowAutograd {
  c10::impl::ExcludeDispatchKeyGuard guard{c10::autograd_dispatch_keyset_with_ADInplaceOrView};
};

// Partials of a weight gradient: at most this many groups of work items, each summed into its
// own partial (fixed, so results do not depend on the number of threads).
constexpr int64_t kWeightGroups = 16;

}  // namespace fastgen::cpu
