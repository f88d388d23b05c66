"""CUDA implementation of ``wavenet_generate``: the persistent decoder of kernels/wavenet/.

One CUDA block per sample runs every step, layer, the head and the draw in one launch, with its
running vectors and as many weights as fit in shared memory: whole layers in order, then the head
once every layer fits (one SM's shared memory holds 3 of the 30 layers of the 2 x 15-layer
64/128/256 benchmark model in float16; the rest are read from global memory, which L2 holds).
This module packs the weights into the kernel's layout (``pack_weights``, layers first so that
the resident part is a prefix), plans the shared memory
(``plan``, mirroring kernels/wavenet/wavenet_decoder_layout.h; a test checks the two agree) and
calls the internal op ``fastgen::wavenet_decoder_cuda``, which exists in CUDA builds only.

``FASTGEN_DECODER_THREADS`` (a multiple of 32 up to 512, default 512) sets the threads per block
(at most 256 in the cluster kernel).

``FASTGEN_DECODER_CLUSTER=Q`` (2 to 16; default 0, off) spreads each sample over a thread-block
cluster of Q blocks instead (sm_90+, kernels/wavenet/wavenet_decoder_cluster.h): each block owns
1/Q of every matrix's rows, with its slices in its own shared memory (on a 227 KB-per-block GPU
the 2 x 15-layer 64/128/256 model keeps 22 of its 30 layers on chip at Q = 16 in float32, all of
them and the head in float16; ``plan_cluster``), at the cost of two cluster barriers per layer. Off by default until a GPU run has measured it against the one-block
kernel; on GPUs below sm_90 the one-block kernel runs, with a log line.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import torch

_log = logging.getLogger(__name__)

DEFAULT_THREADS = 512
MAX_THREADS = 512  # the kernels' launch bound (128 registers a thread)
MAX_CLUSTER_THREADS = 256  # the cluster kernel's (it owns 1/Q of the rows; 255 registers a thread)
DEFAULT_SMEM_LIMIT = 48 * 1024  # what every CUDA GPU gives a block without opting in


@dataclass(frozen=True)
class Shape:
    """Channel counts of a model, in the order of ``fastgen::decoder::Shape``."""

    layers: int
    kernel_size: int
    residual: int
    gate: int
    skip: int
    hidden: int
    levels: int
    cond: int

    def as_list(self) -> list[int]:
        return [self.layers, self.kernel_size, self.residual, self.gate, self.skip, self.hidden, self.levels,
                self.cond]

    def head_elems(self) -> int:
        return self.hidden * self.skip + self.hidden + self.levels * self.hidden + self.levels

    def layer_elems(self) -> int:
        rows_rs = self.residual + self.skip
        gate_inputs = self.kernel_size * self.residual + self.cond
        return 2 * self.gate * gate_inputs + 2 * self.gate + rows_rs * self.gate + rows_rs

    def head_offset(self) -> int:
        return self.layers * self.layer_elems()

    def weight_elems(self) -> int:
        return self.head_offset() + self.head_elems()

    def vector_elems(self) -> int:
        return (self.layers * self.kernel_size * self.residual + self.cond + self.skip + self.hidden + self.levels
                + self.gate)


@dataclass(frozen=True)
class SliceShape:
    """Rows of one cluster block's slices (the largest slice), as ``fastgen::decoder::SliceShape``."""

    gate_units: int
    rs_rows: int
    hidden_rows: int
    level_rows: int

    @staticmethod
    def of(shape: Shape, cluster: int) -> SliceShape:
        return SliceShape(math.ceil(shape.gate / cluster), math.ceil((shape.residual + shape.skip) / cluster),
                          math.ceil(shape.hidden / cluster), math.ceil(shape.levels / cluster))

    def layer_elems(self, shape: Shape) -> int:
        gate_inputs = shape.kernel_size * shape.residual + shape.cond
        return 2 * self.gate_units * gate_inputs + 2 * self.gate_units + self.rs_rows * shape.gate + self.rs_rows

    def head_elems(self, shape: Shape) -> int:
        return self.hidden_rows * shape.skip + self.hidden_rows + self.level_rows * shape.hidden + self.level_rows


def _align16(nbytes: int) -> int:
    return (nbytes + 15) // 16 * 16


def smem_bytes(shape: Shape, acc_bytes: int, scalar_bytes: int, resident_elems: int) -> int:
    """Shared memory of one block: running vectors, the code, the resident weights (16-byte aligned)."""
    return _align16(shape.vector_elems() * acc_bytes) + 16 + _align16(resident_elems * scalar_bytes)


def plan(shape: Shape, dtype: torch.dtype, smem_limit: int) -> int | str:
    """How many packed weights to keep in shared memory (whole layers in order, then the head, while
    they fit in ``smem_limit`` bytes), or why the decoder cannot run (a string)."""
    if shape.layers < 1:
        return "the model has no layers"
    scalar_bytes = torch.empty((), dtype=dtype).element_size()
    acc_bytes = 8 if dtype == torch.float64 else 4
    needed = smem_bytes(shape, acc_bytes, scalar_bytes, 0)
    if needed > smem_limit:
        return (f"its running vectors need {needed} bytes of shared memory per block, the GPU gives "
                f"{smem_limit}")
    resident = 0
    blocks = [shape.layer_elems()] * shape.layers + [shape.head_elems()]
    for count in blocks:
        if smem_bytes(shape, acc_bytes, scalar_bytes, resident + count) > smem_limit:
            break
        resident += count
    return resident


def cluster_smem_bytes(shape: Shape, cluster: int, acc_bytes: int, scalar_bytes: int, resident_layers: int,
                       head_resident: bool) -> int:
    """Shared memory of one block of the cluster decoder."""
    q = SliceShape.of(shape, cluster)
    elems = resident_layers * q.layer_elems(shape) + (q.head_elems(shape) if head_resident else 0)
    return smem_bytes(shape, acc_bytes, 0, 0) + _align16(elems * scalar_bytes)


def plan_cluster(shape: Shape, dtype: torch.dtype, smem_limit: int, cluster: int) -> tuple[int, bool] | str:
    """(resident layers, head resident) for the cluster decoder: whole layers' slices in order,
    then the head's once every layer's fit; or why it cannot run (a string)."""
    scalar_bytes = torch.empty((), dtype=dtype).element_size()
    acc_bytes = 8 if dtype == torch.float64 else 4
    if cluster_smem_bytes(shape, cluster, acc_bytes, scalar_bytes, 0, False) > smem_limit:
        return "its running vectors do not fit in one block's shared memory"
    layers = 0
    while layers < shape.layers and cluster_smem_bytes(shape, cluster, acc_bytes, scalar_bytes, layers + 1,
                                                       False) <= smem_limit:
        layers += 1
    head = layers == shape.layers and cluster_smem_bytes(shape, cluster, acc_bytes, scalar_bytes, layers,
                                                         True) <= smem_limit
    return layers, head


def cluster_size() -> int:
    """Blocks per sample for the cluster decoder: FASTGEN_DECODER_CLUSTER (0: the one-block kernel)."""
    value = os.environ.get("FASTGEN_DECODER_CLUSTER", "0")
    if not value.isdigit() or int(value) == 1 or int(value) > 16:
        raise ValueError(f"FASTGEN_DECODER_CLUSTER must be 0 (off) or 2 to 16 blocks per sample, got {value!r}")
    return int(value)


def smem_limit(device: torch.device) -> int:
    """Shared memory a block may use on ``device`` (opting in above 48 KB)."""
    properties = torch.cuda.get_device_properties(device)
    return int(getattr(properties, "shared_memory_per_block_optin", DEFAULT_SMEM_LIMIT))


def threads() -> int:
    """Threads per block: FASTGEN_DECODER_THREADS or the default."""
    value = os.environ.get("FASTGEN_DECODER_THREADS", str(DEFAULT_THREADS))
    if not value.isdigit() or not 32 <= int(value) <= MAX_THREADS or int(value) % 32:
        raise ValueError(f"FASTGEN_DECODER_THREADS must be a multiple of 32 in [32, {MAX_THREADS}], got {value!r}")
    return int(value)


def shape_of(states, w_dilated, w_skip, w_hidden, w_out, cond) -> Shape:
    """The Shape of a wavenet_generate call's arguments."""
    c_gate, residual, kernel_size = w_dilated[0].shape
    return Shape(layers=len(states), kernel_size=kernel_size, residual=residual, gate=c_gate // 2,
                 skip=w_skip[0].shape[0], hidden=w_hidden.shape[0], levels=w_out.shape[0],
                 cond=0 if cond is None else cond.shape[1])


def pack_weights(shape: Shape, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, w_cond, w_hidden, b_hidden,
                 w_out, b_out) -> torch.Tensor:
    """The weights as one 1-D tensor in the kernel's layout (wavenet_decoder_layout.h)."""
    like = w_hidden

    def flat(t, count):
        return like.new_zeros(count) if t is None else t.reshape(-1)

    parts = []
    rows = 2 * shape.gate
    for layer in range(shape.layers):
        # w_dilated (2G, R, K) -> (2G, K, R): row j multiplies [tap_0 | ... | tap_{K-1} | cond].
        w_gate = w_dilated[layer].permute(0, 2, 1).reshape(rows, -1)
        if shape.cond:
            w_gate = torch.cat([w_gate, w_cond[layer].reshape(rows, shape.cond)], 1)
        w_rs = torch.cat([w_res[layer].reshape(shape.residual, shape.gate),
                          w_skip[layer].reshape(shape.skip, shape.gate)])
        b_rs = torch.cat([flat(b_res[layer], shape.residual), flat(b_skip[layer], shape.skip)])
        parts += [w_gate.reshape(-1), flat(b_dilated[layer], rows), w_rs.reshape(-1), b_rs]
    parts += [w_hidden.reshape(-1), flat(b_hidden, shape.hidden), w_out.reshape(-1), flat(b_out, shape.levels)]
    packed = torch.cat(parts).contiguous()
    assert packed.numel() == shape.weight_elems()
    return packed


def why_not(device: torch.device, shape: Shape, dtype: torch.dtype) -> str | None:
    """Why the CUDA decoder cannot run this model on ``device`` (None when it can)."""
    outcome = plan(shape, dtype, smem_limit(device))
    return outcome if isinstance(outcome, str) else None


def wavenet_generate(states, first_input, uniforms, embedding, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip,
                     w_cond, dilations, w_hidden, b_hidden, w_out, b_out, cond, start):
    """int64 codes (N, T); ``states`` updated in place (see fastgen.ops.wavenet_generate)."""
    shape = shape_of(states, w_dilated, w_skip, w_hidden, w_out, cond)
    limit = smem_limit(first_input.device)
    resident = plan(shape, first_input.dtype, limit)  # also says whether the running vectors fit
    if isinstance(resident, str):
        raise ValueError(f"wavenet_generate on the GPU: {resident}; sample with the step ops")
    rings = [state.contiguous() for state in states]  # the kernel updates these in place
    weights = pack_weights(shape, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, w_cond, w_hidden, b_hidden,
                           w_out, b_out)
    cond_steps = None if cond is None else cond.transpose(1, 2).contiguous()  # (N, T, C): a step's vector
    common = (rings, first_input.contiguous(), uniforms.contiguous(), embedding.contiguous(), weights, cond_steps,
              list(dilations), shape.as_list(), start)
    cluster = cluster_size()
    if cluster and torch.cuda.get_device_capability(first_input.device)[0] < 9:
        _log.info("wavenet_generate: FASTGEN_DECODER_CLUSTER=%d needs thread-block clusters (sm_90+); "
                  "decoding with one block per sample", cluster)
        cluster = 0
    if cluster:
        cluster_plan = plan_cluster(shape, first_input.dtype, limit, cluster)
        if isinstance(cluster_plan, str):
            raise ValueError(f"wavenet_generate on the GPU with FASTGEN_DECODER_CLUSTER={cluster}: {cluster_plan}")
        codes = torch.ops.fastgen.wavenet_decoder_cluster_cuda(*common, cluster, *cluster_plan,
                                                               min(threads(), MAX_CLUSTER_THREADS))
    else:
        codes = torch.ops.fastgen.wavenet_decoder_cuda(*common, resident, threads())
    for state, ring in zip(states, rings):
        if ring.data_ptr() != state.data_ptr():
            state.copy_(ring)
    return codes
