// Where the persistent WaveNet decoders (wavenet_decoder.cu: a block or a cluster of blocks per
// sample) find their weights and keep their running vectors: the packed weight buffer and the
// shared-memory plans. Torch- and CUDA-free, so
// the host emulation test (tests/native/) and the launcher share it; Python mirrors it in
// fastgen/ops/_wavenet_decoder_cuda.py and a test checks that the two agree.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "fastgen/hd.h"

namespace fastgen {
namespace decoder {

// Channel counts of the model: every layer has the same sizes. gate = G (w_dilated has 2G rows).
struct Shape {
  int64_t layers, kernel_size, residual, gate, skip, hidden, levels, cond;
};

// The packed weights, in the model's dtype, layer by layer and then the head, so that "the first
// m layers" (and, once every layer fits, the head) is a prefix of the buffer, the part copied
// into shared memory:
//   layer l:   w_gate (2G, K*R + C_cond) | b_gate (2G) | w_rs (R + S, G) | b_rs (R + S)
//   head:      w_hidden (H, S) | b_hidden (H) | w_out (levels, H) | b_out (levels)
// w_gate's row j is w_dilated[j, :, k] for k = 0..K-1 (k-major), then w_cond[j, :]: the row
// that multiplies the layer's window [tap_0 | ... | tap_{K-1} = x | cond]. w_rs stacks w_res
// over w_skip. Missing biases are packed as zeros.
FASTGEN_HD int64_t gate_inputs(const Shape& s) { return s.kernel_size * s.residual + s.cond; }
FASTGEN_HD int64_t head_elems(const Shape& s) {
  return s.hidden * s.skip + s.hidden + s.levels * s.hidden + s.levels;
}
FASTGEN_HD int64_t layer_elems(const Shape& s) {
  const int64_t rows_rs = s.residual + s.skip;
  return 2 * s.gate * gate_inputs(s) + 2 * s.gate + rows_rs * s.gate + rows_rs;
}
FASTGEN_HD int64_t head_offset(const Shape& s) { return s.layers * layer_elems(s); }
FASTGEN_HD int64_t weight_elems(const Shape& s) { return head_offset(s) + head_elems(s); }

// Shared memory, in this order:
//   running vectors (accumulation dtype): windows (layers, K, R) | cond (C_cond) | z (G) |
//     skips (S) | hidden (H) | logits (levels)  (shared_layout in wavenet_decoder_body.h)
//   the drawn code (one int64), at the next 16-byte boundary
//   resident weights (model dtype): the first `resident_elems` of the packed buffer, at the
//     next 16-byte boundary
FASTGEN_HD int64_t vector_elems(const Shape& s) {
  return s.layers * s.kernel_size * s.residual + s.cond + s.skip + s.hidden + s.levels + s.gate;
}
FASTGEN_HD size_t align16(size_t bytes) { return (bytes + 15) / 16 * 16; }
FASTGEN_HD size_t code_offset(const Shape& s, size_t acc_bytes) {
  return align16(static_cast<size_t>(vector_elems(s)) * acc_bytes);
}
FASTGEN_HD size_t weights_offset(const Shape& s, size_t acc_bytes) { return code_offset(s, acc_bytes) + 16; }
FASTGEN_HD size_t smem_bytes(const Shape& s, size_t acc_bytes, size_t scalar_bytes, int64_t resident_elems) {
  return weights_offset(s, acc_bytes) + align16(static_cast<size_t>(resident_elems) * scalar_bytes);
}

// ---- the cluster decoder (wavenet_decoder_cluster.h): a 1/Q slice of every matrix per block
// [begin, end) of the part-th of `parts` near-equal slices of [0, total).
FASTGEN_HD int64_t slice_begin(int64_t total, int64_t part, int64_t parts) { return total * part / parts; }
FASTGEN_HD int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A block's slices of the packed weights, at most this many rows each (the largest slice):
//   gate:  2 * gate_units rows of gate_inputs (a rows, then b rows) | 2 * gate_units biases
//   rs:    rs_rows rows of G | rs_rows biases
//   head:  hidden_rows rows of S | hidden_rows biases | level_rows rows of H | level_rows biases
struct SliceShape {
  int64_t gate_units, rs_rows, hidden_rows, level_rows;
};

FASTGEN_HD SliceShape slice_shape(const Shape& s, int64_t cluster) {
  return {ceil_div(s.gate, cluster), ceil_div(s.residual + s.skip, cluster), ceil_div(s.hidden, cluster),
          ceil_div(s.levels, cluster)};
}
FASTGEN_HD int64_t layer_slice_elems(const Shape& s, const SliceShape& q) {
  return 2 * q.gate_units * gate_inputs(s) + 2 * q.gate_units + q.rs_rows * s.gate + q.rs_rows;
}
FASTGEN_HD int64_t head_slice_elems(const Shape& s, const SliceShape& q) {
  return q.hidden_rows * s.skip + q.hidden_rows + q.level_rows * s.hidden + q.level_rows;
}

// Shared memory of one block of the cluster: the running vectors and the code as above, then the
// resident slices (model dtype): the first `resident_layers` layers', then the head's if
// `head_resident`.
FASTGEN_HD size_t cluster_smem_bytes(const Shape& s, int64_t cluster, size_t acc_bytes, size_t scalar_bytes,
                                     int64_t resident_layers, bool head_resident) {
  const SliceShape q = slice_shape(s, cluster);
  const int64_t elems = resident_layers * layer_slice_elems(s, q) + (head_resident ? head_slice_elems(s, q) : 0);
  return weights_offset(s, acc_bytes) + align16(static_cast<size_t>(elems) * scalar_bytes);
}

struct ClusterPlan {
  int64_t cluster, resident_layers;
  bool head_resident;
};

}  // namespace decoder
}  // namespace fastgen
