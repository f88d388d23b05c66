// The persistent WaveNet decoder spread over a thread-block cluster (sm_90+): the Q blocks of
// a cluster generate one sample together, each owning a 1/Q slice of every matrix's rows, with
// its slices of the weights in its own shared memory (Q times the on-chip capacity of the
// one-block decoder, and Q SMs streaming whatever does not fit). Values a block computes for
// everyone (z, the next layer's input, the skips, hidden units, logits) it writes into every
// block's shared memory (distributed shared memory) before the cluster barrier. Every block then
// holds the whole logits vector and draws the same code itself, so nothing waits on one block.
//
// Same Block interface as wavenet_decoder_body.h plus cluster_rank(), cluster_size(),
// cluster_sync() and map_shared(pointer, rank) (the address of the same shared-memory offset in
// block `rank`), so the CPU emulation (tests/native/decoder_emulator.cpp) runs it too.
//
// Per step (sync = cluster barrier):
//   load     x_0, every layer's past taps, cond_t (each block, all of them); own skips = 0 | sync
//   layer l  ring[t mod L] = own channels of x_l; own gate units -> z, to every block  | sync
//            own rows of [W_res; W_skip] z: x_{l+1} rows to every block; own skips accumulate
//            (after the last layer: relu, to every block)                            | sync
//   head     own hidden units, to every block | sync   own logits, to every block     | sync
//   draw     warp 0 of every block, the same code                            | block barrier
#pragma once
#include "wavenet_decoder_body.h"

namespace fastgen {
namespace decoder {

// Copies rows [r0, r1) of the row-major matrix `from` (cols wide) to `to`, block-strided.
template <typename S, typename Block>
FASTGEN_DEVICE void copy_rows(Block& block, const S* from, int64_t r0, int64_t r1, int64_t cols, S* to) {
  for (int64_t i = block.thread(); i < (r1 - r0) * cols; i += block.threads()) to[i] = from[r0 * cols + i];
}

// value written at `local` (an address in this block's shared memory) in every block of the cluster.
template <typename A, typename Block>
FASTGEN_DEVICE void broadcast(Block& block, A* local, A value) {
  for (int rank = 0; rank < block.cluster_size(); ++rank) *block.map_shared(local, rank) = value;
}

template <typename S, typename A, typename Block>
FASTGEN_DEVICE void decode_sample_cluster(const Args<S>& a, const ClusterPlan& plan, int64_t n, Block& block,
                                          unsigned char* smem) {
  const Shape& d = a.shape;
  const int64_t K = d.kernel_size, R = d.residual, G = d.gate, S_ = d.skip, H = d.hidden;
  const int64_t levels = d.levels, C = d.cond, KR = K * R, in_gate = gate_inputs(d), rows_rs = R + S_;
  const int64_t Q = plan.cluster, q = block.cluster_rank();
  const int tid = block.thread(), threads = block.threads();
  const int warp = tid / 32, lane = tid % 32;
  const SliceShape shape_q = slice_shape(d, Q);
  // This block's rows of each matrix.
  const int64_t g0 = slice_begin(G, q, Q), g1 = slice_begin(G, q + 1, Q);
  const int64_t j0 = slice_begin(rows_rs, q, Q), j1 = slice_begin(rows_rs, q + 1, Q);
  const int64_t h0 = slice_begin(H, q, Q), h1 = slice_begin(H, q + 1, Q);
  const int64_t o0 = slice_begin(levels, q, Q), o1 = slice_begin(levels, q + 1, Q);
  const int64_t c0 = slice_begin(R, q, Q), c1 = slice_begin(R, q + 1, Q);

  const SharedLayout<S, A> v = shared_layout<S, A>(d, smem);
  A *windows = v.windows, *cond_t = v.cond, *z = v.z, *skips = v.skips, *hidden = v.hidden, *logits = v.logits;
  int64_t* code = v.code;
  S* resident = v.resident;
  const int64_t layer_slice = layer_slice_elems(d, shape_q);

  // ---- this block's weight slices into shared memory (local only: the first load barrier
  // orders them before use)
  for (int64_t l = 0; l < plan.resident_layers; ++l) {
    const S* w = a.weights + l * layer_elems(d);
    const S* b_gate = w + 2 * G * in_gate;
    const S* w_rs = b_gate + 2 * G;
    S* slot = resident + l * layer_slice;
    copy_rows(block, w, g0, g1, in_gate, slot);                                      // a rows
    copy_rows(block, w, G + g0, G + g1, in_gate, slot + shape_q.gate_units * in_gate);  // b rows
    S* slot_bias = slot + 2 * shape_q.gate_units * in_gate;
    copy_rows(block, b_gate, g0, g1, 1, slot_bias);
    copy_rows(block, b_gate, G + g0, G + g1, 1, slot_bias + shape_q.gate_units);
    S* slot_rs = slot_bias + 2 * shape_q.gate_units;
    copy_rows(block, w_rs, j0, j1, G, slot_rs);
    copy_rows(block, w_rs + rows_rs * G, j0, j1, 1, slot_rs + shape_q.rs_rows * G);
  }
  S* head_slot = resident + plan.resident_layers * layer_slice;
  const S* head = a.weights + head_offset(d);
  if (plan.head_resident) {
    copy_rows(block, head, h0, h1, S_, head_slot);
    copy_rows(block, head + H * S_, h0, h1, 1, head_slot + shape_q.hidden_rows * S_);
    S* out_slot = head_slot + shape_q.hidden_rows * (S_ + 1);
    copy_rows(block, head + H * S_ + H, o0, o1, H, out_slot);
    copy_rows(block, head + H * S_ + H + levels * H, o0, o1, 1, out_slot + shape_q.level_rows * H);
  }
  // The head's matrices and biases in the resident slice (indexed by the local row, h - h0 or
  // o - o0) or in the packed buffer (by the row itself).
  const bool head_local = plan.head_resident;
  const S* w_hidden = head_local ? head_slot : head;
  const S* b_hidden = head_local ? head_slot + shape_q.hidden_rows * S_ : head + H * S_;
  const S* w_out = head_local ? head_slot + shape_q.hidden_rows * (S_ + 1) : head + H * S_ + H;
  const S* b_out = head_local ? head_slot + shape_q.hidden_rows * (S_ + 1) + shape_q.level_rows * H
                              : head + H * S_ + H + levels * H;
  const int64_t h_first = head_local ? h0 : 0, o_first = head_local ? o0 : 0;
  const int64_t past = (K - 1) * R;

  for (int64_t t = 0; t < a.steps; ++t) {
    const int64_t p = a.start + t;
    // ---- load (every block: the whole input, taps and cond; its own skips)
    load_step(a, n, t, code, block, windows, cond_t);
    for (int64_t j = j0 + tid; j < j1; j += threads)
      if (j >= R) skips[j - R] = A(0);
    block.cluster_sync();
    // ---- layers
    for (int64_t l = 0; l < d.layers; ++l) {
      const A* window = windows + l * KR;
      const A* x = window + past;
      store_ring(a, n, l, p, x, c0, c1, block);  // this block's channels
      // Layer l's gate rows, biases and [W_res; W_skip] rows: in this block's resident slice
      // (indexed by the local row: g - g0, j - j0) or in the packed layer (by the row itself).
      const bool local = l < plan.resident_layers;
      const S* slot = local ? resident + l * layer_slice : a.weights + l * layer_elems(d);
      const int64_t units = local ? shape_q.gate_units : G, rs_rows = local ? shape_q.rs_rows : rows_rs;
      const int64_t g_first = local ? g0 : 0, j_first = local ? j0 : 0;
      const S* b_gate = slot + 2 * units * in_gate;
      const S* w_rs = b_gate + 2 * units;
      const S* b_rs = w_rs + rs_rows * G;
      gate_units(
          block, g0, g1, [&](int64_t g) { return slot + (g - g_first) * in_gate; },
          [&](int64_t g) { return slot + (units + g - g_first) * in_gate; }, window, KR, cond_t, C,
          [&](int64_t g, A pre_a, A pre_b) {
            const int64_t u = g - g_first;
            broadcast(block, z + g, gate(pre_a + to_acc(b_gate[u]), pre_b + to_acc(b_gate[units + u])));
          });
      block.cluster_sync();
      const bool last = l + 1 == d.layers;
      A* x_next = last ? nullptr : windows + (l + 1) * KR + past;
      matvec_rows(block, last ? (j0 > R ? j0 : R) : j0, j1, [&](int64_t j) { return w_rs + (j - j_first) * G; }, z, G,
                  [&](int64_t j, A sum) {
                    const A out = sum + to_acc(b_rs[j - j_first]);
                    if (j < R) {
                      broadcast(block, x_next + j, x[j] + out);
                    } else if (last) {  // the skips are complete: the head's relu, then to every block
                      const A total = skips[j - R] + out;
                      broadcast(block, skips + (j - R), total > A(0) ? total : A(0));
                    } else {
                      skips[j - R] += out;
                    }
                  });
      block.cluster_sync();
    }
    // ---- head
    matvec_rows(block, h0, h1, [&](int64_t h) { return w_hidden + (h - h_first) * S_; }, skips, S_,
                [&](int64_t h, A sum) {
                  const A pre = sum + to_acc(b_hidden[h - h_first]);
                  broadcast(block, hidden + h, pre > A(0) ? pre : A(0));
                });
    block.cluster_sync();
    matvec_rows(block, o0, o1, [&](int64_t o) { return w_out + (o - o_first) * H; }, hidden, H,
                [&](int64_t o, A sum) { broadcast(block, logits + o, sum + to_acc(b_out[o - o_first])); });
    block.cluster_sync();
    // ---- draw: every block the same code from the same logits
    if (warp == 0) {
      const int64_t drawn = draw(block, logits, levels, to_acc(a.uniforms[n * a.steps + t]));
      if (lane == 0) {
        *code = drawn;
        if (q == 0) a.codes[n * a.steps + t] = drawn;
      }
    }
    block.sync();
  }
  block.cluster_sync();  // no block leaves while another may still write into its shared memory
}

}  // namespace decoder
}  // namespace fastgen
