"""WaveNet (van den Oord et al. 2016) on mu-law audio codes, with cached (fast-wavenet) sampling."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fastgen.models import _autoregressive as ar
from fastgen.models._modes import evaluating
from fastgen.nn import WaveNetLayer
from fastgen.ops import _dispatch
from fastgen.ops._checks import MAX_REACH
from fastgen.ops.wavenet_generate import decoder_limits, wavenet_generate
from fastgen.ops.wavenet_step import wavenet_layer_step, wavenet_state
from fastgen.reference import steps as reference_steps

__all__ = ["WaveNet"]

_log = logging.getLogger(__name__)


class WaveNet(nn.Module):
    """WaveNet over ``levels``-valued audio codes (mu-law 256 by default): exact likelihood, fast sampling.

    The previous sample's code is embedded (a learned vector per code; zeros before the first
    sample), then ``stacks`` stacks of ``layers_per_stack`` :class:`~fastgen.nn.WaveNetLayer`
    with dilations 1, 2, ..., 2^(layers_per_stack - 1) each; the skip outputs are summed and
    go through ReLU - 1x1 conv - ReLU - 1x1 conv to the distribution of the next code:
    ``levels`` logits ("categorical") or a discretized logistic mixture over the codes
    ("logistic_mixture").

    Conditioning (both optional, added before every layer's gate):

    * local: ``cond_channels`` features per time step, given at the sample rate, or at a frame
      rate of one frame per ``cond_hop`` samples (repeated to the sample rate), e.g. mel
      features. A ``cond`` at least as long as the audio is read at the sample rate, a shorter
      one as frames (it needs ``ceil(T / cond_hop)`` of them); the surplus at the end is unused;
    * global: a class id in [0, ``num_classes``) (e.g. the instrument), embedded in
      ``class_embedding`` features.

    Parameters
    ----------
    levels : int
        Values of a code. Default 256 (8-bit mu-law).
    residual_channels, gate_channels, skip_channels : int
        Channel counts of the layers (gate_channels even: tanh half, sigmoid half). Defaults
        32, 64, 64 (the embedded "notes" default); the paper-sized model is 64, 128, 256.
    kernel_size : int
        Taps of the dilated convolutions. Default 2.
    layers_per_stack, stacks : int
        Dilations 1 .. 2^(layers_per_stack - 1), repeated ``stacks`` times. Defaults 8, 2.
    head_channels : int or None
        Hidden width of the output head; default ``skip_channels``.
    output : {"categorical", "logistic_mixture"}
    mixtures : int
        Components of the logistic mixture. Default 5.
    cond_channels : int or None
        Local conditioning features; None: none.
    cond_hop : int
        Samples per conditioning frame (1: cond is given at the sample rate).
    num_classes : int or None
        Global conditioning classes; None: none.
    class_embedding : int
        Size of the class embedding. Default 16.
    sample_rate : int
        Recorded with the model (for writing WAV files); does not change the computation.

    Shapes
    ------
    x: (N, T) or (N, 1, T) integer codes in [0, levels); cond: (N, cond_channels, T) at the
    sample rate, or (N, cond_channels, ceil(T / cond_hop)) frames; y: (N,) int64.
    """

    def __init__(
        self,
        *,
        levels: int = 256,
        residual_channels: int = 32,
        gate_channels: int = 64,
        skip_channels: int = 64,
        kernel_size: int = 2,
        layers_per_stack: int = 8,
        stacks: int = 2,
        head_channels: int | None = None,
        output: str = "categorical",
        mixtures: int = 5,
        cond_channels: int | None = None,
        cond_hop: int = 1,
        num_classes: int | None = None,
        class_embedding: int = 16,
        sample_rate: int = 16000,
    ) -> None:
        super().__init__()
        ar.check_levels(levels)
        for value, name in ((residual_channels, "residual_channels"), (gate_channels, "gate_channels"),
                            (skip_channels, "skip_channels"), (kernel_size, "kernel_size"),
                            (layers_per_stack, "layers_per_stack"), (stacks, "stacks"), (cond_hop, "cond_hop"),
                            (class_embedding, "class_embedding"), (sample_rate, "sample_rate")):
            ar.check_count(value, name)
        if gate_channels % 2:
            raise ValueError(f"gate_channels must be even (tanh half, sigmoid half), got {gate_channels}")
        # the last layer's dilation 2**(layers_per_stack - 1) times (K - 1) must fit the kernels' int64 offsets
        if layers_per_stack > 62 or (kernel_size - 1) * 2 ** (layers_per_stack - 1) >= MAX_REACH:
            raise ValueError(f"layers_per_stack = {layers_per_stack} with kernel_size = {kernel_size}: the last "
                             "dilation, 2**(layers_per_stack - 1), times (kernel_size - 1) must stay below 2**62")
        ar.check_output(output, mixtures)
        if cond_channels is not None:
            ar.check_count(cond_channels, "cond_channels")
        if num_classes is not None:
            ar.check_count(num_classes, "num_classes")
        head_channels = skip_channels if head_channels is None else ar.check_count(head_channels, "head_channels")
        self._config = dict(levels=levels, residual_channels=residual_channels, gate_channels=gate_channels,
                            skip_channels=skip_channels, kernel_size=kernel_size, layers_per_stack=layers_per_stack,
                            stacks=stacks, head_channels=head_channels, output=output, mixtures=mixtures,
                            cond_channels=cond_channels, cond_hop=cond_hop, num_classes=num_classes,
                            class_embedding=class_embedding, sample_rate=sample_rate)
        self.levels, self.output, self.mixtures = levels, output, mixtures
        self.cond_channels, self.cond_hop, self.num_classes = cond_channels, cond_hop, num_classes
        self.sample_rate = sample_rate
        layer_cond = (cond_channels or 0) + (class_embedding if num_classes is not None else 0)
        self.embed = nn.Embedding(levels, residual_channels)
        self.class_embed = None if num_classes is None else nn.Embedding(num_classes, class_embedding)
        self.layers = nn.ModuleList(
            WaveNetLayer(residual_channels, gate_channels, skip_channels, kernel_size, dilation=2 ** i,
                         cond_channels=layer_cond or None)
            for _ in range(stacks) for i in range(layers_per_stack))
        self.params_per_dim = ar.params_per_dim(output, levels, mixtures)
        self.head_hidden = nn.Conv1d(skip_channels, head_channels, 1)
        self.head_out = nn.Conv1d(head_channels, self.params_per_dim, 1)

    def config(self) -> dict[str, Any]:
        """Constructor kwargs, to rebuild the model from a checkpoint."""
        return dict(self._config)

    @property
    def receptive_field(self) -> int:
        """Past samples one prediction sees: ``sum(dilations) * (kernel_size - 1) + 1``."""
        return sum(layer.receptive_field - 1 for layer in self.layers) + 1

    # ------------------------------------------------------------------ inputs
    def _check_codes(self, x: object) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"x must be an integer tensor of codes in [0, {self.levels}), got "
                            f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
        x = x.long()  # before comparing: levels (256) does not fit a uint8
        if x.dim() == 3 and x.shape[1] == 1:
            x = x[:, 0]
        if x.dim() != 2 or x.shape[1] == 0:
            raise ValueError(f"x must have shape (N, T) or (N, 1, T) with T >= 1, got {tuple(x.shape)}")
        if bool(((x < 0) | (x >= self.levels)).any()):
            raise ValueError(f"x must hold codes in [0, {self.levels - 1}]")
        return x

    def _default_length(self, length: object, uniforms: object, cond: object) -> object:
        """``length``, or when it is None what :meth:`sample` documents."""
        if length is not None:
            return length
        if isinstance(uniforms, torch.Tensor) and uniforms.dim() == 2:
            return uniforms.shape[1]
        if self.cond_channels is not None and isinstance(cond, torch.Tensor) and cond.dim() == 3:
            return cond.shape[2] * self.cond_hop
        return self.sample_rate

    def _conditioning(self, cond: object, y: object, n: int, length: int, like: torch.Tensor) -> torch.Tensor | None:
        """Local + global conditioning at the sample rate, (n, C_cond, length), or None."""
        parts = []
        if self.cond_channels is None:
            if cond is not None:
                raise ValueError("cond must be None: this WaveNet was built without cond_channels")
        else:
            if not isinstance(cond, torch.Tensor) or not cond.is_floating_point() or cond.dim() != 3:
                raise ValueError(f"cond is required: a float tensor (N, {self.cond_channels}, T) at the sample rate "
                                 f"or (N, {self.cond_channels}, frames) with cond_hop={self.cond_hop}")
            frames = math.ceil(length / self.cond_hop)
            if cond.shape[0] != n or cond.shape[1] != self.cond_channels or cond.shape[2] < frames:
                raise ValueError(f"cond must have shape ({n}, {self.cond_channels}, >= {frames}) for {length} samples "
                                 f"with cond_hop={self.cond_hop} (or ({n}, {self.cond_channels}, >= {length}) "
                                 f"at the sample rate), got {tuple(cond.shape)}")
            cond = cond.to(like.dtype)
            # At least `length` steps: given at the sample rate. Fewer: frames of cond_hop samples.
            if self.cond_hop > 1 and cond.shape[2] < length:
                cond = cond.repeat_interleave(self.cond_hop, dim=2)
            parts.append(cond[:, :, :length])
        if self.class_embed is not None:
            one_hot = ar.class_one_hot(y, n, self.num_classes, like.device, like.dtype)
            parts.append((one_hot @ self.class_embed.weight)[:, :, None].expand(-1, -1, length))
        elif y is not None:
            raise ValueError("y must be None: this WaveNet was built without num_classes")
        return torch.cat(parts, dim=1) if parts else None

    def _shifted_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """Input at time t = embedding of x[t - 1] (zeros at t = 0): (N, R, T)."""
        e = self.embed(x).transpose(1, 2)
        return F.pad(e, (1, 0))[:, :, :-1]

    def _head(self, skips: torch.Tensor) -> torch.Tensor:
        return self.head_out(F.relu(self.head_hidden(F.relu(skips))))

    def _trunk(self, s: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        skips = 0
        for layer in self.layers:
            s, skip = layer(s, cond)
            skips = skips + skip
        return self._head(skips)

    # ------------------------------------------------------------------ density
    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """Output parameters (N, T, P) predicting every code of ``x`` from the codes before it."""
        x = self._check_codes(x)
        weight = self.head_out.weight
        c = self._conditioning(cond, y, x.shape[0], x.shape[1], weight)
        return self._trunk(self._shifted_embedding(x.to(weight.device)), c).transpose(1, 2)

    def log_prob(self, x: torch.Tensor, cond: torch.Tensor | None = None, y: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """Exact log-likelihood (nats) of the code sequences ``x``: shape (N,)."""
        params = self.forward(x, cond, y)
        target = self._check_codes(x).to(params.device)
        return ar.log_prob_of(params, target, self.output, self.levels).sum(1)

    def bits_per_dim(self, x: torch.Tensor, cond: torch.Tensor | None = None, y: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """-log2 p(x) / T per sequence (bits per audio sample), (N,)."""
        return -self.log_prob(x, cond, y) / (self._check_codes(x).shape[1] * math.log(2.0))

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, n: int, length: int | None = None, *, cond: torch.Tensor | None = None,
               y: torch.Tensor | int | None = None,
               method: str = "cached", uniforms: torch.Tensor | None = None,
               generator: torch.Generator | None = None, fused: bool | None = None,
               cuda_graph: bool = False) -> torch.Tensor:
        """Generate ``n`` sequences of ``length`` codes, int64 (n, length).

        Parameters
        ----------
        n : int
            Batch.
        length : int or None
            Number of samples to generate. None (default): the width of ``uniforms`` when
            given, else what ``cond`` covers (frames x ``cond_hop``), else one second
            (``sample_rate`` samples).
        cond, y
            Conditioning, as in :meth:`forward` (``cond`` covering ``length`` samples).
        method : {"cached", "naive"}
            "cached" (default): each layer keeps a ring buffer of its last
            ``dilation * (kernel_size - 1)`` inputs (:func:`fastgen.ops.wavenet_layer_step`),
            so a sample costs one time step per layer. "naive": for every sample the network
            runs again over its receptive field (what public PyTorch WaveNets do); the reference.
        uniforms : torch.Tensor or None
            (n, length) uniforms, one per draw; the same uniforms give the same codes with both
            methods. Default: drawn from ``generator``.
        generator : torch.Generator or None
            Source of the uniforms when they are not given (unused when they are).
        fused : bool or None
            For "cached": run the whole network for every step inside one kernel call
            (:func:`fastgen.ops.wavenet_generate`) instead of one step-op call per layer and
            step. None (default): fused where it is available (categorical output; the C++
            kernel on the CPU; on CUDA the persistent CUDA decoder in builds with CUDA, where its
            running vectors fit in shared memory, else the persistent Triton decoder for channel
            counts up to 1024), else the step ops, with a log line saying why.
            True where it is not available raises.
        cuda_graph : bool
            On a CUDA device, with the step ops: capture one whole step (every layer, the head,
            the draw, the next input) in a CUDA graph and replay it for every sample, so the
            host launches one graph per sample instead of a kernel per op. The position lives
            on the device, so one captured step serves every step. If capture fails the loop
            runs uncaptured, with a log line. Default False (new: checked by the CUDA tests of
            ``scripts/gpu_check.sh``).

        Decode the codes to a waveform with :func:`fastgen.data.mu_law_decode`.
        """
        ar.check_count(n)
        length = self._default_length(length, uniforms, cond)
        ar.check_count(length, "length")
        ar.check_method(method, fused=fused, cuda_graph=cuda_graph)
        weight = self.head_out.weight
        u = ar.uniforms_for(uniforms, (n, length), weight.device, weight.dtype, generator)
        c = self._conditioning(cond, y, n, length, weight)
        with evaluating(self):
            if method == "naive":
                return self._sample_naive(u, c)
            if cuda_graph:
                if u.device.type != "cuda":
                    raise ValueError(f"cuda_graph=True needs the model on a CUDA device, not {u.device.type}")
                if not _dispatch.use_kernel("wavenet_layer_step", u):
                    raise ValueError("cuda_graph=True needs the wavenet_layer_step kernel on CUDA (Triton)")
                return self._sample_cuda_graph(u, c)
            if ar.use_fused(fused, self._why_not_fused(u), "fused decoder", "WaveNet.sample", _log):
                return self._sample_fused(u, c)
            return self._sample_steps(u, c)

    def _draw(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return ar.draw(params, u, self.output, self.levels)

    def next_params(self, context: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Output parameters (N, P) of the code after ``context`` (N, L) (L >= 0 codes), from one
        network pass over the last ``receptive_field`` inputs: the naive sampler's step.

        ``cond`` (N, C_cond, L + 1) is the conditioning at the sample rate (local and global
        parts, as built by :meth:`sample`), None without conditioning.
        """
        if (not isinstance(context, torch.Tensor) or context.is_floating_point() or context.dim() != 2
                or context.dtype == torch.bool):
            raise TypeError(f"context must be an integer tensor of codes (N, L), got "
                            f"{context.dtype if isinstance(context, torch.Tensor) else type(context).__name__}")
        if context.numel() and bool(((context < 0) | (context >= self.levels)).any()):
            raise ValueError(f"context must hold codes in [0, {self.levels - 1}]")
        return self._next_params(context, cond)

    def _next_params(self, context: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """:meth:`next_params` without the checks (the naive sampler's own codes need none, and a
        range check per step would be a host sync inside the loop it times)."""
        n, length = context.shape
        start = max(0, length + 1 - self.receptive_field)
        # Input at position p is the embedding of code p - 1 (zeros at p = 0), p in [start, length].
        window = self._shifted_embedding(torch.cat([context[:, start:], context.new_zeros(n, 1)], 1))
        if start > 0:  # the first input is code start - 1, not the zeros of the sequence start
            window[:, :, 0] = self.embed(context[:, start - 1])
        window_cond = None if cond is None else cond[:, :, start:length + 1]
        return self._trunk(window, window_cond)[:, :, -1]

    def _sample_naive(self, u: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        n, length = u.shape
        codes = torch.zeros(n, length, dtype=torch.long, device=u.device)
        for t in range(length):
            codes[:, t] = self._draw(self._next_params(codes[:, :t], cond), u[:, t])
        return codes

    def _ring_buffers(self, u: torch.Tensor) -> list[torch.Tensor]:
        """A zeroed ring buffer per layer (wavenet_state) for a batch of uniforms ``u`` (n, length)."""
        return [wavenet_state(u.shape[0], layer.residual_channels, layer.dilation, layer.kernel_size, dtype=u.dtype,
                              device=u.device) for layer in self.layers]

    def _why_not_fused(self, u: torch.Tensor) -> str | None:
        """Why the fused decoder cannot sample this model here, or None when it can."""
        if self.output != "categorical":
            return f"the fused decoder draws from a categorical output, not {self.output!r}"
        if not _dispatch.use_kernel("wavenet_generate", u):
            return f"no fused decoder kernel for {u.device.type}"
        first = _layer_weights(self.layers[0])
        return decoder_limits(u.device, {
                "residual": first["w_dilated"].shape[1], "gate": first["w_dilated"].shape[0] // 2,
                "skip": first["w_skip"].shape[0], "hidden": self.head_hidden.weight.shape[0],
                "levels": self.head_out.weight.shape[0],
                "cond": 0 if first["w_cond"] is None else first["w_cond"].shape[1],
                "layers": len(self.layers), "kernel_size": first["w_dilated"].shape[2]}, u.dtype)

    def _sample_fused(self, u: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        n = u.shape[0]
        layers = [_layer_weights(layer) for layer in self.layers]
        states = self._ring_buffers(u)

        def column(key):
            return [w[key] for w in layers]

        return wavenet_generate(
            states, u.new_zeros(n, self.embed.embedding_dim), u, self.embed.weight, column("w_dilated"),
            column("b_dilated"), column("w_res"), column("b_res"), column("w_skip"), column("b_skip"),
            column("dilation"), self.head_hidden.weight.flatten(1), self.head_hidden.bias,
            self.head_out.weight.flatten(1), self.head_out.bias, cond=cond,
            w_cond=column("w_cond") if cond is not None else None)

    def _sample_cuda_graph(self, u: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """The step-op loop with one step captured in a CUDA graph and replayed (see ``sample``)."""
        n, length = u.shape
        layers = [_layer_weights(layer) for layer in self.layers]
        states = self._ring_buffers(u)
        position = torch.zeros(1, dtype=torch.long, device=u.device)  # the step, on the device
        codes = torch.zeros(n, length, dtype=torch.long, device=u.device)
        x_in = u.new_zeros(n, self.embed.embedding_dim)  # the first layer's input at this step

        def step() -> None:
            x, skips, t = x_in, 0, position[0]
            c_t = None if cond is None else cond.index_select(2, position)[:, :, 0]
            for w, state in zip(layers, states):
                x, skip = torch.ops.fastgen.wavenet_layer_step(
                    x, state, t, w["w_dilated"], w["b_dilated"], w["w_res"], w["b_res"], w["w_skip"], w["b_skip"],
                    w["dilation"], c_t, w["w_cond"])
                skips = skips + skip
            params = ar.head_on_vectors(self.head_hidden, self.head_out, skips)
            code = self._draw(params, u.index_select(1, position)[:, 0])
            codes.index_copy_(1, position, code[:, None])
            x_in.copy_(self.embed(code))
            position.add_(1)

        # Step 0 runs for real on a side stream (warm-up: kernels compiled, memory pools set up).
        side = torch.cuda.Stream(u.device)
        side.wait_stream(torch.cuda.current_stream(u.device))
        with torch.cuda.stream(side):
            step()
        torch.cuda.current_stream(u.device).wait_stream(side)
        if length == 1:
            return codes
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                step()
        except Exception as error:  # noqa: BLE001 - any capture failure falls back to the plain loop
            _log.info("WaveNet.sample: CUDA graph capture failed (%s); stepping without a graph", error)
            for _ in range(1, length):
                step()
            return codes
        for _ in range(1, length):
            graph.replay()
        return codes

    def _sample_steps(self, u: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        n, length = u.shape
        kernel = _dispatch.use_kernel("wavenet_layer_step", u)
        position = torch.zeros((), dtype=torch.long, device=u.device)
        layers = [_layer_weights(layer) for layer in self.layers]
        states = self._ring_buffers(u)
        codes = torch.zeros(n, length, dtype=torch.long, device=u.device)
        s = u.new_zeros(n, self.embed.embedding_dim)
        for t in range(length):
            c_t = None if cond is None else cond[:, :, t]
            skips = 0
            x = s
            position.fill_(t)
            for w, state in zip(layers, states):
                if not kernel:
                    x, skip = _reference_step(x, state, t, **w, cond=c_t)
                elif t == 0:  # checks every argument once
                    x, skip = wavenet_layer_step(x, state, position, **w, cond=c_t)
                else:  # the same arguments: straight to the kernel (which still checks shapes)
                    x, skip = torch.ops.fastgen.wavenet_layer_step(
                        x, state, position, w["w_dilated"], w["b_dilated"], w["w_res"], w["b_res"], w["w_skip"],
                        w["b_skip"], w["dilation"], c_t, w["w_cond"])
                skips = skips + skip
            params = ar.head_on_vectors(self.head_hidden, self.head_out, skips)
            codes[:, t] = self._draw(params, u[:, t])
            s = self.embed(codes[:, t])
        return codes

    def extra_repr(self) -> str:
        cfg = self._config
        return (f"levels={self.levels}, residual={cfg['residual_channels']}, gate={cfg['gate_channels']}, "
                f"skip={cfg['skip_channels']}, layers={cfg['stacks']}x{cfg['layers_per_stack']}, "
                f"receptive_field={self.receptive_field}, output={self.output!r}")


def _layer_weights(layer: WaveNetLayer) -> dict[str, Any]:
    """One layer's tensors in the step op's layout (1x1 weights as matrices)."""
    return dict(w_dilated=layer.dilated.weight, b_dilated=layer.dilated.bias, w_res=layer.res.weight.flatten(1),
                b_res=layer.res.bias, w_skip=layer.skip.weight.flatten(1), b_skip=layer.skip.bias,
                dilation=layer.dilation, w_cond=None if layer.cond is None else layer.cond.weight.flatten(1))


def _reference_step(x, state, t, *, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip, dilation, w_cond, cond):
    return reference_steps.wavenet_layer_step(x, state, t, w_dilated, b_dilated, w_res, b_res, w_skip, b_skip,
                                              dilation, cond, w_cond)
