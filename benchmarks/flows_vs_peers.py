"""fastgen's flow layers and Glow next to the peer libraries normflows and nflows, in one run.

1. Drop-in check. Each fastgen flow layer (ActNorm, InvConv1x1 plain and LU, AffineCoupling,
   AdditiveCoupling, Squeeze) and a whole Glow takes the weights of the peer's layer (copied, never
   retrained); both run the same input in the density direction x -> z and back, and the report
   gives the max abs differences of outputs and log-determinants, in float32 and float64. Where the
   peer's formula differs from fastgen's, fastgen's ``conditioner=`` argument takes an adapter: a
   module that wraps a copy of the peer's conditioner network and returns fastgen's (shift, raw)
   layout (the ``*Adapter`` classes; the report says which and why).
2. Speed. The same Glow (2 levels x 8 steps of ActNorm -> LU 1x1 convolution -> affine coupling,
   conditioner conv3x3 -> ReLU -> conv1x1 -> ReLU -> conv3x3 with 64 hidden channels, a squeeze per
   level, a split between levels) on batches of 64 dequantized 8x8 digits, built in fastgen,
   normflows and nflows: the training step (forward, backward, Adam step) and sampling 64 images,
   float32; medians over interleaved rounds (every implementation is timed in every round, so a
   drift of the machine's speed hits all of them alike). A "floor" row times the conditioner
   networks and Adam alone: the work all three share, which bounds any speed-up from the flow layers.

Install the peers (no dependencies: they need nothing that fastgen does not already bring)::

    pip install --no-deps normflows==1.7.3 nflows==0.14

Run::

    python benchmarks/flows_vs_peers.py              # full run (about a minute on 2 idle cores)
    python benchmarks/flows_vs_peers.py --quick      # smoke run
    python benchmarks/flows_vs_peers.py --threads 2 --out PATH.md

Timings are only meaningful on otherwise idle cores: the report records the load average.
``tests/test_flow_peers.py`` loads this file by path and reuses the equivalence helpers.
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib
import importlib.metadata
import logging
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fastgen import nn as fnn
from fastgen.bench.report import cpu_ticks, steal_share
from fastgen.data import dequantize, load_images
from fastgen.models import Glow

DEFAULT_OUT = Path("bench-results") / "flows_vs_peers.md"  # git-ignored: published reports are passed with --out
INSTALL = "pip install --no-deps normflows==1.7.3 nflows==0.14"
TARGET = 1.5  # the target: fastgen's Glow training step >= 1.5x the faster peer's

# The benchmark Glow (the configuration) and its data.
DATA_SHAPE = (1, 8, 8)
LEVELS = 17  # intensity levels of the digits
NUM_LEVELS, STEPS, HIDDEN, BATCH = 2, 8, 64, 64
FLOW_OPS = ("affine_coupling", "additive_coupling", "actnorm", "invertible_conv1x1", "conv_conditioner")

# Equivalence.worst_relative() must stay under these.
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-10}


# ================================================================ the peers
class PeersMissing(ImportError):
    """normflows or nflows is not installed."""


@dataclass(frozen=True)
class Peers:
    nf: Any  # the normflows package
    nflows: Any  # the nflows package, with .transforms, .distributions and .flows imported


def load_peers() -> Peers:
    """Import normflows and nflows; PeersMissing names what is missing and how to install it."""
    missing = []
    for name in ("normflows", "nflows"):
        try:
            importlib.import_module(name)
        except ImportError as error:
            missing.append(f"{name} ({type(error).__name__}: {error})")
    if missing:
        raise PeersMissing(f"missing peer librar{'y' if len(missing) == 1 else 'ies'}: "
                           f"{'; '.join(missing)}. Install them with `{INSTALL}`.")
    for sub in ("transforms", "distributions", "flows"):
        importlib.import_module(f"nflows.{sub}")
    return Peers(sys.modules["normflows"], sys.modules["nflows"])


def peer_versions() -> dict[str, str]:
    out = {}
    for name in ("normflows", "nflows"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# ================================================================ conditioners and adapters
class ConvConditioner(nn.Module):
    """Glow's conditioner conv3x3 -> ReLU -> conv1x1 -> ReLU -> conv3x3 (last zero-initialised) as
    an nflows user writes it: plain ``nn.Conv2d`` layers run one by one (the layers and parameter
    names of :func:`fastgen.nn.conv_conditioner`, without its fused op), callable as nflows calls
    its ``transform_net(x, context)``."""

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(*fnn.conv_conditioner(in_channels, out_channels, hidden_channels))

    def forward(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        return self.net(x)


class NormflowsAffineAdapter(nn.Module):
    """A copy of a normflows coupling's ``param_map``, returning fastgen's (shift, raw) layout.

    normflows' density direction (its ``inverse``) reads the conditioner output interleaved,
    t = p[:, 0::2], r = p[:, 1::2], and subtracts the shift *before* scaling:

    - ``scale_map="sigmoid"``: z = (x - t) * sigmoid(r + 2): fastgen's ``scale="sigmoid"``
      (y = x * sigmoid(raw + 2) + shift) with shift = -t * sigmoid(r + 2), raw = r;
    - ``scale_map="exp"``: z = (x - t) * exp(-r): fastgen's ``scale="exp"`` with
      shift = -t * exp(-r), raw = -r.
    """

    FASTGEN_SCALE = {"sigmoid": "sigmoid", "exp": "exp"}

    def __init__(self, param_map: nn.Module, scale_map: str) -> None:
        super().__init__()
        if scale_map not in self.FASTGEN_SCALE:
            raise ValueError(f"scale_map must be one of {tuple(self.FASTGEN_SCALE)}, got {scale_map!r}")
        self.param_map = copy.deepcopy(param_map)
        self.scale_map = scale_map

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.param_map(x)
        t, r = p[:, 0::2], p[:, 1::2]
        if self.scale_map == "sigmoid":
            return torch.cat([-t * torch.sigmoid(r + 2.0), r], dim=1)
        return torch.cat([-t * torch.exp(-r), -r], dim=1)


class NormflowsAdditiveAdapter(nn.Module):
    """normflows' additive coupling (``scale=False``) runs z = x - p in the density direction:
    fastgen's y = x + shift with shift = -p."""

    def __init__(self, param_map: nn.Module) -> None:
        super().__init__()
        self.param_map = copy.deepcopy(param_map)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.param_map(x)


class NflowsAffineAdapter(nn.Module):
    """A copy of an nflows 0.14 ``AffineCouplingTransform``'s ``transform_net``, in fastgen's layout.

    nflows 0.14 has no ``scale_activation`` argument: its scale is fixed at sigmoid(u + 2) + 1e-3
    (y = x * scale + t; t = the first half of the output channels, u the second: fastgen's order).
    fastgen's ``scale="exp"`` with raw = log(sigmoid(u + 2) + 1e-3) is that map exactly, for every
    u; ``scale="sigmoid"`` would need raw = logit(sigmoid(u + 2) + 1e-3) - 2, undefined once
    sigmoid(u + 2) > 0.999.
    """

    def __init__(self, transform_net: nn.Module, transform_channels: int) -> None:
        super().__init__()
        self.transform_net = copy.deepcopy(transform_net)
        self.transform_channels = transform_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.transform_net(x, None)
        t, u = p[:, :self.transform_channels], p[:, self.transform_channels:]
        return torch.cat([t, torch.log(torch.sigmoid(u + 2.0) + 1e-3)], dim=1)


class NflowsNetAdapter(nn.Module):
    """An nflows ``transform_net`` (called with a context) as a one-argument conditioner."""

    def __init__(self, transform_net: nn.Module) -> None:
        super().__init__()
        self.transform_net = copy.deepcopy(transform_net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform_net(x, None)


# ================================================================ copying weights, layer by layer
def _like(module: nn.Module, peer_tensor: torch.Tensor) -> nn.Module:
    return module.to(dtype=peer_tensor.dtype, device=peer_tensor.device)


def _actnorm(bias: torch.Tensor, log_scale: torch.Tensor) -> fnn.ActNorm:
    act = _like(fnn.ActNorm(bias.numel()), bias)
    # Loading initialized = True is the public way to skip the data-dependent initialisation.
    act.load_state_dict({"bias": bias.detach().reshape(-1), "log_scale": log_scale.detach().reshape(-1),
                         "initialized": torch.tensor(True)})
    return act


def actnorm_from_nflows(peer: nn.Module) -> fnn.ActNorm:
    """nflows: y = x * exp(log_scale) + shift; fastgen: y = (x + bias) * exp(log_scale),
    so bias = shift * exp(-log_scale)."""
    with torch.no_grad():
        return _actnorm(peer.shift * torch.exp(-peer.log_scale), peer.log_scale)


def actnorm_from_normflows(peer: nn.Module) -> fnn.ActNorm:
    """normflows' density direction (``inverse``): z = (x - t) * exp(-s): bias = -t, log_scale = -s."""
    with torch.no_grad():
        return _actnorm(-peer.t, -peer.s)


def _invconv_plain(weight: torch.Tensor) -> fnn.InvConv1x1:
    conv = _like(fnn.InvConv1x1(weight.shape[0], lu=False), weight)
    conv.load_state_dict({"weight": weight.detach()})
    return conv


def _invconv_lu_parts(p, lower, upper, sign, log_s) -> fnn.InvConv1x1:
    """fastgen's InvConv1x1(lu=True): W = P (tril(lower, -1) + I) (triu(upper, 1) + diag(sign exp(log_s)))."""
    conv = _like(fnn.InvConv1x1(p.shape[0], lu=True), log_s)
    state = conv.state_dict()
    state.update(permutation=p.detach(), lower=torch.tril(lower.detach(), -1),
                 upper=torch.triu(upper.detach(), 1), sign_s=sign.detach(), log_s=log_s.detach())
    conv.load_state_dict(state)
    return conv


def _invconv_lu(weight: torch.Tensor) -> fnn.InvConv1x1:
    """``weight`` in fastgen's LU form, by torch.linalg.lu (W = P L U)."""
    p, lower, upper = torch.linalg.lu(weight.detach())
    diag = torch.diagonal(upper)
    return _invconv_lu_parts(p, lower, upper, torch.sign(diag), torch.log(diag.abs()))


def nflows_conv_weight(peer: nn.Module) -> torch.Tensor:
    """The matrix of an nflows ``OneByOneConvolution`` (y = L U x[:, perm] + bias):
    W = (L U)[:, argsort(perm)]. Refuses a non-zero bias, which fastgen's layer cannot carry."""
    if peer.bias.detach().abs().max() > 0:
        raise ValueError("this nflows OneByOneConvolution has a non-zero bias: fastgen's InvConv1x1 (like "
                         "Glow's 1x1 convolution) has none, so the layer cannot be copied exactly")
    lower, upper = peer._create_lower_upper()
    return (lower @ upper)[:, torch.argsort(peer.permutation._permutation)]


def invconv_from_nflows(peer: nn.Module, lu: bool) -> fnn.InvConv1x1:
    """nflows' LU (L U after its own channel permutation, softplus diagonal) is not fastgen's P L U:
    its effective W is copied (``lu=False``) or LU-decomposed again (``lu=True``)."""
    with torch.no_grad():
        weight = nflows_conv_weight(peer)
        return _invconv_lu(weight) if lu else _invconv_plain(weight)


def invconv_from_normflows(peer: nn.Module, lu: bool) -> fnn.InvConv1x1:
    """normflows' density direction (``inverse``) applies W = P (tril(L, -1) + I)
    (triu(U, 1) + diag(sign_S exp(log_S))): fastgen's LU form, whose parts are copied as they are."""
    with torch.no_grad():
        if not peer.use_lu:
            return _invconv_lu(peer.W) if lu else _invconv_plain(peer.W)
        if not lu:
            return _invconv_plain(peer._assemble_W())
        return _invconv_lu_parts(peer.P, peer.L, peer.U, peer.sign_S, peer.log_S)


def _nflows_parity(peer: nn.Module) -> int:
    c, identity = peer.features, peer.identity_features.tolist()
    if identity == list(range(c // 2)):
        return 0
    if identity == list(range(c // 2, c)) and c % 2 == 0:
        return 1
    raise ValueError(f"fastgen's channel mask conditions on the first or the second half; this nflows "
                     f"mask keeps channels {identity} of {c}")


def coupling_from_nflows(peer: nn.Module) -> nn.Module:
    """fastgen's coupling equal to an nflows Affine/AdditiveCouplingTransform."""
    T = sys.modules["nflows.transforms"]
    if peer.unconditional_transform is not None:
        raise ValueError("nflows couplings with an unconditional transform have no fastgen equivalent")
    c, parity = peer.features, _nflows_parity(peer)
    if isinstance(peer, T.AdditiveCouplingTransform):
        layer = fnn.AdditiveCoupling(c, parity=parity, conditioner=NflowsNetAdapter(peer.transform_net))
    elif isinstance(peer, T.AffineCouplingTransform):
        adapter = NflowsAffineAdapter(peer.transform_net, peer.num_transform_features)
        layer = fnn.AffineCoupling(c, parity=parity, scale="exp", conditioner=adapter)
    else:
        raise TypeError(f"no fastgen equivalent of {type(peer).__name__}")
    return _like(layer, next(peer.parameters()))


def coupling_from_normflows(block: nn.Module) -> nn.Module:
    """fastgen's coupling equal to a normflows AffineCouplingBlock (split, coupling, merge)."""
    split, coupling = block.flows[0], block.flows[1]
    parities = {"channel": 0, "channel_inv": 1}
    if split.mode not in parities:
        raise ValueError(f"normflows split_mode={split.mode!r}: its checkerboard split packs half the "
                         f"pixels into a half-width image, which fastgen's checkerboard mask does not do")
    convs = [m for m in coupling.param_map.modules() if isinstance(m, nn.Conv2d)]
    c = convs[0].in_channels + convs[-1].out_channels // (2 if coupling.scale else 1)
    if c % 2:
        raise ValueError(f"{c} channels: for odd C normflows' chunk gives the extra channel to the first "
                         f"half, fastgen's split to the second")
    parity = parities[split.mode]
    if not coupling.scale:
        adapter = NormflowsAdditiveAdapter(coupling.param_map)
        layer = fnn.AdditiveCoupling(c, parity=parity, conditioner=adapter)
    elif coupling.scale_map in NormflowsAffineAdapter.FASTGEN_SCALE:
        adapter = NormflowsAffineAdapter(coupling.param_map, coupling.scale_map)
        scale = NormflowsAffineAdapter.FASTGEN_SCALE[coupling.scale_map]
        layer = fnn.AffineCoupling(c, parity=parity, scale=scale, conditioner=adapter)
    else:
        raise ValueError(f"normflows scale_map={coupling.scale_map!r} has no adapter here")
    return _like(layer, next(block.parameters()))


# ================================================================ whole Glows
def fastgen_glow(*, scale: str, learned_prior: bool) -> Glow:
    return Glow(DATA_SHAPE, LEVELS, num_levels=NUM_LEVELS, steps_per_level=STEPS, hidden_channels=HIDDEN,
                scale=scale, lu=True, learned_prior=learned_prior, preprocessing="shift")


def normflows_glow(peers: Peers, *, num_levels: int = NUM_LEVELS, steps_per_level: int = STEPS,
                   hidden: int = HIDDEN, base: str = "normal", num_classes: int = 10) -> nn.Module:
    """normflows' Glow as its example builds it (examples/glow_colab.ipynb, linked from the README),
    on DATA_SHAPE: GlowBlocks (coupling with scale_map="sigmoid", LU 1x1 convolution, ActNorm;
    conditioner ConvNet2d with kernels (3, 1, 3), LeakyReLU(0) = ReLU, last conv zero-initialised)
    and a Squeeze per level in a MultiscaleFlow, Merge between levels. ``base="normal"``: N(0, I)
    per level, as fastgen; ``base="class"``: the example's learned ClassCondDiagGaussian."""
    nf = peers.nf
    c, h, w = DATA_SHAPE
    q0, merges, flows = [], [], []
    for i in range(num_levels):
        level = [nf.flows.GlowBlock(c * 2 ** (num_levels + 1 - i), hidden, split_mode="channel", scale=True)
                 for _ in range(steps_per_level)]
        flows.append(level + [nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            f = 2 ** (num_levels - i)
            shape = (c * f, h // f, w // f)
        else:
            shape = (c * 2 ** (num_levels + 1), h // 2 ** num_levels, w // 2 ** num_levels)
        q0.append(nf.distributions.ClassCondDiagGaussian(shape, num_classes) if base == "class"
                  else nf.distributions.DiagGaussian(shape, trainable=False))
    return nf.MultiscaleFlow(q0, flows, merges, class_cond=base == "class")


def nflows_glow(peers: Peers, *, num_levels: int = NUM_LEVELS, steps_per_level: int = STEPS,
                hidden: int = HIDDEN, match_fastgen_split: bool = False) -> nn.Module:
    """The same Glow from nflows' transforms (nflows ships no Glow model), on DATA_SHAPE: per level a
    SqueezeTransform and K x (ActNorm, OneByOneConvolution, AffineCouplingTransform with the first
    half conditioning the second, fastgen's parity 0), in a MultiscaleCompositeTransform; N(0, I).

    nflows' multiscale split factors out the *first* half and continues with the second; fastgen
    and normflows keep the first. ``match_fastgen_split=True`` appends a swap of the halves to
    every level but the last (a permutation: log-det 0) so that nflows computes fastgen's function.
    """
    T, D, F = peers.nflows.transforms, peers.nflows.distributions, peers.nflows.flows
    c, h, w = DATA_SHAPE
    multiscale = T.MultiscaleCompositeTransform(num_levels)
    for level in range(num_levels):
        c, h, w = 4 * c, h // 2, w // 2
        mask = torch.cat([torch.zeros(c // 2), torch.ones(c - c // 2)])  # > 0: transformed
        steps: list[nn.Module] = [T.SqueezeTransform()]
        for _ in range(steps_per_level):
            coupling = T.AffineCouplingTransform(mask, lambda cin, cout: ConvConditioner(cin, cout, hidden))
            steps += [T.ActNorm(c), T.OneByOneConvolution(c), coupling]
        if match_fastgen_split and level < num_levels - 1:
            keep = c - c // 2
            steps.append(T.Permutation(torch.cat([torch.arange(keep, c), torch.arange(keep)])))
        hidden_shape = multiscale.add_transform(T.CompositeTransform(steps), (c, h, w))
        if hidden_shape is not None:
            c, h, w = hidden_shape
    return F.Flow(multiscale, D.StandardNormal([math.prod(DATA_SHAPE)]))


Step = tuple[nn.Module, nn.Module, nn.Module]  # (ActNorm, 1x1 convolution, coupling) of one Glow step


def _normflows_steps(model: nn.Module) -> list[list[Step]]:
    """Per fastgen level, in the density direction: normflows' last level and last block come first."""
    glow_block = sys.modules["normflows"].flows.GlowBlock
    levels = []
    for flows in reversed(model.flows):
        blocks = [f for f in flows if isinstance(f, glow_block)]
        levels.append([(b.flows[2], b.flows[1], b.flows[0]) for b in reversed(blocks)])
    return levels


def _nflows_steps(flow: nn.Module) -> list[list[Step]]:
    T = sys.modules["nflows.transforms"]
    levels = []
    for composite in flow._transform._transforms:
        parts = [t for t in composite._transforms if not isinstance(t, (T.SqueezeTransform, T.Permutation))]
        levels.append([tuple(parts[k:k + 3]) for k in range(0, len(parts), 3)])
    return levels


def glow_from_peer(peer: nn.Module, library: str, *, lu: bool = True) -> Glow:
    """A fastgen Glow computing the function of the peer's Glow (from :func:`normflows_glow`, or
    :func:`nflows_glow` with ``match_fastgen_split=True``), weights copied, learned_prior=False."""
    if library == "normflows":
        levels = _normflows_steps(peer)
        copiers = (actnorm_from_normflows, invconv_from_normflows, coupling_from_normflows)
        coupling = levels[0][0][2].flows[1]
        scale = NormflowsAffineAdapter.FASTGEN_SCALE[coupling.scale_map] if coupling.scale else "exp"
    elif library == "nflows":
        levels = _nflows_steps(peer)
        copiers = (actnorm_from_nflows, invconv_from_nflows, coupling_from_nflows)
        scale = "exp"  # see NflowsAffineAdapter
    else:
        raise ValueError(f"library must be 'normflows' or 'nflows', got {library!r}")
    model = Glow(DATA_SHAPE, LEVELS, num_levels=len(levels), steps_per_level=len(levels[0]), scale=scale,
                 lu=lu, learned_prior=False, preprocessing="shift")
    model.to(dtype=next(peer.parameters()).dtype)
    copy_act, copy_conv, copy_coupling = copiers
    level, step = -1, 0
    for index, layer in enumerate(model.layers):
        if isinstance(layer, fnn.Squeeze):
            level, step = level + 1, 0
        elif isinstance(layer, fnn.ActNorm):
            model.layers[index] = copy_act(levels[level][step][0])
        elif isinstance(layer, fnn.InvConv1x1):
            model.layers[index] = copy_conv(levels[level][step][1], lu)
        elif isinstance(layer, (fnn.AffineCoupling, fnn.AdditiveCoupling)):
            model.layers[index] = copy_coupling(levels[level][step][2])
            step += 1
    return model


# ================================================================ the equivalence check
def perturb_(module: nn.Module, generator: torch.Generator, std: float = 0.1) -> nn.Module:
    """Ready a peer module for the check: add N(0, std^2) noise to every parameter (so that the
    zero-initialised layers are not the identity), mark the ActNorm data-dependent initialisations
    done, keep nflows' 1x1-convolution bias at zero (fastgen's layer has none); eval mode."""
    nf_actnorm, T = sys.modules["normflows"].flows.ActNorm, sys.modules["nflows.transforms"]
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=generator, dtype=p.dtype))
        for m in module.modules():
            if isinstance(m, nf_actnorm):
                m.data_dep_init_done = torch.tensor(1.0)
            elif isinstance(m, T.ActNorm):
                m.initialized.fill_(True)
            elif isinstance(m, T.OneByOneConvolution):
                m.bias.zero_()
    return module.eval()


def flat(out: Any) -> torch.Tensor:
    """A tensor, or a list/tuple of tensors (a Glow's latents), as (N, D)."""
    if isinstance(out, torch.Tensor):
        return out.reshape(out.shape[0], -1)
    return torch.cat([flat(o) for o in out], dim=1)


def _per_sample(logdet: Any, like: torch.Tensor) -> torch.Tensor:
    """(N,) log-determinant: normflows returns 0-dim tensors, or the int 0, for some layers."""
    return torch.as_tensor(logdet, dtype=like.dtype, device=like.device).expand(like.shape[0])


Map = Callable[[Any], tuple[Any, torch.Tensor]]  # input -> (output, logdet), in fastgen's layout


@dataclass
class Pair:
    """A fastgen module and the peer module it copies, as four maps, on the input ``x``."""

    name: str
    peer: str
    how: str  # how the weights were carried over
    fast_forward: Map
    fast_inverse: Map
    peer_forward: Map
    peer_inverse: Map
    x: torch.Tensor


@dataclass
class Equivalence:
    """Max abs differences fastgen - peer: density direction (y, logdet), its gradient with respect
    to the input (through the backward kernels), and back from the peer's z (x, logdet)."""

    name: str
    peer: str
    how: str
    dtype: torch.dtype
    y: float
    logdet: float
    grad: float  # of sum(w * y) + sum(logdet), w fixed random weights
    x_back: float
    logdet_back: float
    y_size: float  # max |y|, max |logdet|, max |grad|: the scale of the differences
    logdet_size: float
    grad_size: float

    def worst_relative(self) -> float:
        """The largest difference relative to max(1, magnitude of what it differs in)."""
        return max(self.y / max(1.0, self.y_size), self.x_back / max(1.0, self.y_size),
                   self.logdet / max(1.0, self.logdet_size), self.logdet_back / max(1.0, self.logdet_size),
                   self.grad / max(1.0, self.grad_size))

    @property
    def ok(self) -> bool:
        return self.worst_relative() <= TOLERANCE[self.dtype]


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def _input_grad(forward: Map, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        y, logdet = forward(x)
        loss = (flat(y) * weights).sum() + _per_sample(logdet, x).sum()
        return torch.autograd.grad(loss, x)[0]


@torch.no_grad()
def check_pair(pair: Pair) -> Equivalence:
    """Run both on ``pair.x`` (values and input gradients), then both inverses on the peer's
    output; compare."""
    x = pair.x
    y_fast, ld_fast = pair.fast_forward(x)
    y_peer, ld_peer = pair.peer_forward(x)
    weights = torch.randn(flat(y_peer).shape, generator=torch.Generator().manual_seed(0)).to(x.dtype)
    grad_fast, grad_peer = (_input_grad(f, x, weights) for f in (pair.fast_forward, pair.peer_forward))
    x_fast, back_fast = pair.fast_inverse(y_peer)
    x_peer, back_peer = pair.peer_inverse(y_peer)
    ld_fast, ld_peer, back_fast, back_peer = (_per_sample(v, x)
                                              for v in (ld_fast, ld_peer, back_fast, back_peer))
    return Equivalence(pair.name, pair.peer, pair.how, x.dtype,
                       y=_max_abs(flat(y_fast), flat(y_peer)), logdet=_max_abs(ld_fast, ld_peer),
                       grad=_max_abs(grad_fast, grad_peer), x_back=_max_abs(flat(x_fast), flat(x_peer)),
                       logdet_back=_max_abs(back_fast, back_peer), y_size=float(flat(y_peer).abs().max()),
                       logdet_size=float(ld_peer.abs().max()), grad_size=float(grad_peer.abs().max()))


def _seeded(seed: int) -> torch.Generator:
    torch.manual_seed(seed)  # the peers draw initial weights and permutations from the global RNG
    return torch.Generator().manual_seed(seed)


def layer_pairs(peers: Peers, dtype: torch.dtype, *, seed: int = 0, channels: int = 8, hidden: int = 16,
                size: int = 4, batch: int = 4) -> list[Pair]:
    """One Pair per layer type and peer: the peer layer built in float32 (seeded), perturbed, cast
    to ``dtype``, copied into fastgen; input (batch, channels, size, size) Gaussian."""
    nf, T = peers.nf, peers.nflows.transforms
    c, half = channels, channels // 2
    pairs: list[Pair] = []

    def add(name: str, peer_name: str, how: str, make_peer: Callable[[], nn.Module],
            make_fast: Callable[[nn.Module], nn.Module]) -> None:
        g = _seeded(seed + len(pairs))
        peer = perturb_(make_peer(), g).to(dtype)
        fast = make_fast(peer).eval()
        x = torch.randn((batch, c, size, size), generator=g).to(dtype)
        # normflows runs the generative direction in ``forward``: its density direction is ``inverse``.
        if peer_name == "normflows":
            peer_forward, peer_inverse = peer.inverse, peer.forward
        else:
            peer_forward, peer_inverse = peer.forward, peer.inverse
        pairs.append(Pair(name, peer_name, how, fast.forward, fast.inverse, peer_forward, peer_inverse, x))

    def nf_block(scale: bool, scale_map: str = "sigmoid", mode: str = "channel") -> nn.Module:
        net = nf.nets.ConvNet2d((half, hidden, hidden, (2 if scale else 1) * half), (3, 1, 3), 0.0, True)
        return nf.flows.AffineCouplingBlock(net, scale, scale_map, mode)

    def nfl_coupling(kind, mask: torch.Tensor) -> Callable[[], nn.Module]:
        return lambda: kind(mask, lambda cin, cout: ConvConditioner(cin, cout, hidden))

    mask = torch.cat([torch.zeros(half), torch.ones(c - half)])  # nflows: > 0 is transformed
    add("ActNorm", "normflows", "bias = -t, log_scale = -s", lambda: nf.flows.ActNorm((c, 1, 1)),
        actnorm_from_normflows)
    add("ActNorm", "nflows", "bias = shift * exp(-log_scale)", lambda: T.ActNorm(c), actnorm_from_nflows)
    add("InvConv1x1(lu=True)", "normflows", "P, L, U, sign_S, log_S copied as they are",
        lambda: nf.flows.Invertible1x1Conv(c, use_lu=True), lambda p: invconv_from_normflows(p, True))
    add("InvConv1x1(lu=False)", "normflows", "W = P L U assembled",
        lambda: nf.flows.Invertible1x1Conv(c, use_lu=True), lambda p: invconv_from_normflows(p, False))
    add("InvConv1x1(lu=False)", "nflows", "W = (L U)[:, argsort(perm)]; bias 0",
        lambda: T.OneByOneConvolution(c), lambda p: invconv_from_nflows(p, False))
    add("InvConv1x1(lu=True)", "nflows", "that W LU-decomposed again (torch.linalg.lu)",
        lambda: T.OneByOneConvolution(c), lambda p: invconv_from_nflows(p, True))
    add("AffineCoupling(scale='sigmoid')", "normflows", "NormflowsAffineAdapter (scale_map='sigmoid')",
        lambda: nf_block(True), coupling_from_normflows)
    add("AffineCoupling(scale='exp')", "normflows", "NormflowsAffineAdapter (scale_map='exp')",
        lambda: nf_block(True, "exp"), coupling_from_normflows)
    add("AffineCoupling(parity=1, scale='sigmoid')", "normflows", "NormflowsAffineAdapter, channel_inv",
        lambda: nf_block(True, "sigmoid", "channel_inv"), coupling_from_normflows)
    add("AdditiveCoupling", "normflows", "NormflowsAdditiveAdapter (shift = -p)",
        lambda: nf_block(False), coupling_from_normflows)
    add("AffineCoupling(scale='exp')", "nflows", "NflowsAffineAdapter: raw = log(sigmoid(u + 2) + 1e-3)",
        nfl_coupling(T.AffineCouplingTransform, mask), coupling_from_nflows)
    add("AffineCoupling(parity=1, scale='exp')", "nflows", "NflowsAffineAdapter, first half transformed",
        nfl_coupling(T.AffineCouplingTransform, 1 - mask), coupling_from_nflows)
    add("AdditiveCoupling", "nflows", "the same network (NflowsNetAdapter)",
        nfl_coupling(T.AdditiveCouplingTransform, mask), coupling_from_nflows)
    add("Squeeze", "normflows", "none (channel order)", nf.flows.Squeeze, lambda p: fnn.Squeeze())
    add("Squeeze", "nflows", "none (channel order)", T.SqueezeTransform, lambda p: fnn.Squeeze())
    return pairs


def glow_pairs(peers: Peers, dtype: torch.dtype, *, seed: int = 0, num_levels: int = NUM_LEVELS,
               steps_per_level: int = STEPS, hidden: int = HIDDEN, batch: int = 16) -> list[Pair]:
    """A whole Glow per peer (perturbed weights) and the fastgen Glow it is copied into, on
    ``batch`` dequantized digits in [0, 1]; the peers get fastgen's preprocessing x - 1/2 by hand."""
    data = load_images("digits")
    x = dequantize(data.train[:batch], data.levels, generator=torch.Generator().manual_seed(seed)).to(dtype)
    name = f"Glow {num_levels}x{steps_per_level}, hidden {hidden}"
    kwargs = dict(num_levels=num_levels, steps_per_level=steps_per_level, hidden=hidden)

    nfm = perturb_(normflows_glow(peers, **kwargs), _seeded(seed)).to(dtype)
    fast_nf = glow_from_peer(nfm, "normflows").eval()

    def nf_forward(v):  # normflows lists the latents from the last level's to the first's
        z, logdet = nfm.inverse_and_log_det(v - 0.5)
        return list(reversed(z)), logdet

    def nf_inverse(latents):
        v, logdet = nfm.forward_and_log_det(list(reversed(latents)))
        return v + 0.5, logdet

    nfl = perturb_(nflows_glow(peers, match_fastgen_split=True, **kwargs), _seeded(seed + 1)).to(dtype)
    fast_nfl = glow_from_peer(nfl, "nflows").eval()
    with torch.no_grad():  # not fast_nfl.latent_shapes(): its probe is float32 whatever the model's dtype
        shapes = [tuple(z.shape[1:]) for z in fast_nfl(x[:1])[0]]

    def nfl_forward(v):  # nflows' latents come flat, (N, D), in fastgen's order
        return nfl._transform(v - 0.5)

    def nfl_inverse(latents):
        v, logdet = nfl._transform.inverse(flat(latents))
        return v + 0.5, logdet

    def fast_nfl_inverse(z):
        parts = z.split([math.prod(s) for s in shapes], dim=1)
        return fast_nfl.inverse([p.reshape(-1, *s) for p, s in zip(parts, shapes)])

    return [Pair(name, "normflows", "layer by layer as above; N(0, I) bases",
                 fast_nf.forward, fast_nf.inverse, nf_forward, nf_inverse, x),
            Pair(name, "nflows", "layer by layer as above; halves swapped before each split",
                 fast_nfl.forward, fast_nfl_inverse, nfl_forward, nfl_inverse, x)]


def run_equivalence(peers: Peers, dtypes=(torch.float32, torch.float64)) -> list[Equivalence]:
    return [check_pair(pair) for dtype in dtypes
            for pair in layer_pairs(peers, dtype) + glow_pairs(peers, dtype)]


# ================================================================ timing
@dataclass
class Stats:
    median: float
    q1: float
    q3: float
    n: int


def time_interleaved(fns: dict[str, Callable[[], Any]], *, warmup: int, repeats: int,
                     round_size: int) -> dict[str, Stats]:
    """Seconds per call of each function: ``warmup`` calls each, then rounds in which every function
    makes ``round_size`` timed calls (the order reversed every other round), ``repeats`` in all."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    gc.collect()
    gc.disable()  # as timeit does: no collection pause lands in one implementation's samples
    try:
        for r in range(math.ceil(repeats / round_size)):
            for name in names if r % 2 == 0 else reversed(names):
                fn = fns[name]
                for _ in range(round_size):
                    start = time.perf_counter()
                    fn()
                    samples[name].append(time.perf_counter() - start)
    finally:
        gc.enable()
    out = {}
    for name, values in samples.items():
        q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
        out[name] = Stats(median, q1, q3, len(values))
    return out


@dataclass
class Impl:
    key: str
    library: str
    label: str
    model: nn.Module
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x in [0, 1], labels) -> scalar
    sample: Callable[[int], torch.Tensor]  # n -> n samples, as a user calls it
    # n -> the inverse flow's output as it is (fastgen's sample replaces non-finite values by 0)
    raw_sample: Callable[[int], torch.Tensor]


def build_impls(peers: Peers, *, seed: int = 0) -> list[Impl]:
    impls = []

    def add(key, library, label, make, loss, sample, raw_sample=None):
        torch.manual_seed(seed)
        model = make()
        raw_sample = raw_sample or sample
        impls.append(Impl(key, library, label, model, lambda x, y: loss(model, x, y),
                          lambda n: sample(model, n), lambda n: raw_sample(model, n)))

    def fastgen_loss(m, x, y):
        return -m.log_prob(x).mean()

    def fastgen_sample(m, n):
        return m.sample(n)

    def fastgen_raw_sample(m, n):
        return m.inverse([torch.randn(n, *shape) for shape in m.latent_shapes()])[0]

    def normflows_sample(m, n):
        return m.sample(n)[0] + 0.5

    add("fastgen", "fastgen", "fastgen Glow, scale='sigmoid' (matched)",
        lambda: fastgen_glow(scale="sigmoid", learned_prior=False), fastgen_loss, fastgen_sample,
        fastgen_raw_sample)
    add("fastgen-tanh", "fastgen", "fastgen Glow, scale='tanh_clamp' (its default map)",
        lambda: fastgen_glow(scale="tanh_clamp", learned_prior=False), fastgen_loss, fastgen_sample,
        fastgen_raw_sample)
    add("fastgen-default", "fastgen", "fastgen Glow as it ships (tanh_clamp + learned-prior splits)",
        lambda: fastgen_glow(scale="tanh_clamp", learned_prior=True), fastgen_loss, fastgen_sample,
        fastgen_raw_sample)
    add("normflows", "normflows", "normflows GlowBlock/MultiscaleFlow, N(0, I) bases (matched)",
        lambda: normflows_glow(peers), lambda m, x, y: m.forward_kld(x - 0.5), normflows_sample)
    add("normflows-shipped", "normflows", "normflows as its Glow example ships it (ClassCondDiagGaussian)",
        lambda: normflows_glow(peers, base="class"), lambda m, x, y: m.forward_kld(x - 0.5, y),
        normflows_sample)
    add("nflows", "nflows", "nflows transforms in a MultiscaleCompositeTransform (matched)",
        lambda: nflows_glow(peers), lambda m, x, y: -m.log_prob(x - 0.5).mean(),
        lambda m, n: m.sample(n) + 0.5)
    return impls


def digit_batches(count: int, *, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``count`` batches of BATCH dequantized training digits, and their labels."""
    data = load_images("digits")
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(data.train.shape[0], generator=g)
    xs, ys = [], []
    for b in range(count):
        idx = order[(b * BATCH) % (len(order) - BATCH):][:BATCH]
        xs.append(dequantize(data.train[idx], data.levels, generator=g))
        ys.append(data.train_labels[idx])
    return xs, ys


def make_train_step(impl: Impl, xs: list[torch.Tensor], ys: list[torch.Tensor]
                    ) -> tuple[Callable[[], None], dict[str, Any]]:
    optimizer = torch.optim.Adam(impl.model.parameters(), lr=1e-3)
    state: dict[str, Any] = {"step": 0, "loss": math.nan}

    def step() -> None:
        i = state["step"] % len(xs)
        state["step"] += 1
        optimizer.zero_grad(set_to_none=True)
        loss = impl.loss(xs[i], ys[i])
        loss.backward()
        optimizer.step()
        state["loss"] = loss.detach()

    return step, state


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def conditioner_floor_step(*, fused: bool, seed: int = 0) -> tuple[Callable[[], None], int]:
    """The training step of the Glow's 16 conditioner networks alone, with Adam (same shapes, inputs
    that need their gradient as inside the flow, a cheap mean-of-squares loss): the same networks in
    all three libraries, hence a floor under each step. ``fused``: as fastgen runs them (its
    ConvConditioner, one op forward and one backward); else layer by layer, as the peers do."""
    torch.manual_seed(seed)
    nets, inputs = nn.ModuleList(), []
    c, h, w = DATA_SHAPE
    for _ in range(NUM_LEVELS):
        c, h, w = 4 * c, h // 2, w // 2
        for _ in range(STEPS):
            make = fnn.conv_conditioner if fused else ConvConditioner
            nets.append(make(c // 2, 2 * (c - c // 2), HIDDEN))
            inputs.append(torch.randn(BATCH, c // 2, h, w, requires_grad=True))
        c -= c // 2
    optimizer = torch.optim.Adam(nets.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = sum(net(x).square().mean() for net, x in zip(nets, inputs))
        loss.backward()
        optimizer.step()

    return step, count_parameters(nets)


@torch.no_grad()
def count_nonfinite(impls: list[Impl], *, batches: int = 10, seed: int = 1) -> dict[str, int]:
    """Samples with a non-finite value, out of ``batches`` x BATCH raw samples per implementation."""
    counts = {}
    for impl in impls:
        torch.manual_seed(seed)
        counts[impl.key] = sum(int((~torch.isfinite(flat(impl.raw_sample(BATCH)))).any(1).sum())
                               for _ in range(batches))
    return counts


def run_timing(peers: Peers, *, quick: bool) -> dict[str, Any]:
    impls = build_impls(peers)
    xs, ys = digit_batches(8)
    steps, states = {}, {}
    for impl in impls:
        impl.model.train()
        steps[impl.key], states[impl.key] = make_train_step(impl, xs, ys)
    steps["floor"], floor_params = conditioner_floor_step(fused=False)
    steps["floor-fastgen"], _ = conditioner_floor_step(fused=True)
    settings = dict(warmup=2, repeats=10, round_size=5, sample_warmup=1, sample_repeats=5) if quick else \
        dict(warmup=10, repeats=100, round_size=5, sample_warmup=5, sample_repeats=50)
    load_before, ticks_before = os.getloadavg(), cpu_ticks()
    train = time_interleaved(steps, warmup=settings["warmup"], repeats=settings["repeats"],
                             round_size=settings["round_size"])

    samplers: dict[str, Callable[[], Any]] = {}
    for impl in impls:
        impl.model.eval()
        samplers[impl.key] = lambda f=impl.sample: f(BATCH)
    # Train mode: fastgen's InvConv1x1 recomputes W and W^-1 on every call instead of caching them.
    uncached = copy.deepcopy(next(i.model for i in impls if i.key == "fastgen")).train()
    samplers["fastgen-nocache"] = lambda: uncached.sample(BATCH)
    # fastgen logs each overflowing batch (sigmoid's inverse divides by the scale); counted below instead.
    fastgen_log = logging.getLogger("fastgen")
    level = fastgen_log.level
    fastgen_log.setLevel(logging.ERROR)
    try:
        sample = time_interleaved(samplers, warmup=settings["sample_warmup"],
                                  repeats=settings["sample_repeats"], round_size=5)
    finally:
        fastgen_log.setLevel(level)
    load_after, steal = os.getloadavg(), steal_share(ticks_before, cpu_ticks())
    return dict(impls=impls, train=train, sample=sample, nonfinite=count_nonfinite(impls), settings=settings,
                losses={key: float(state["loss"]) for key, state in states.items()},
                params={impl.key: count_parameters(impl.model) for impl in impls}, floor_params=floor_params,
                load_before=load_before, load_after=load_after, steal=steal)


# ================================================================ the report
def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _sci(value: float) -> str:
    return "0" if value == 0 else f"{value:.1e}"


def _span(stats: Stats) -> str:
    return f"{_ms(stats.median)} ({_ms(stats.q1)}-{_ms(stats.q3)})"


def kernel_status() -> str:
    from fastgen.ops._dispatch import KERNEL_DEVICES

    missing = [op for op in FLOW_OPS if "cpu" not in KERNEL_DEVICES.get(op, frozenset())]
    if missing and os.environ.get("FASTGEN_FORCE_REFERENCE") == "1":
        return "switched off by FASTGEN_FORCE_REFERENCE=1: the flow ops ran the plain-PyTorch reference"
    if not missing:
        return "compiled CPU kernels for every flow op (" + ", ".join(FLOW_OPS) + ")"
    return (f"**not built**: fastgen._C lacks {', '.join(missing)}, so these ran the plain-PyTorch reference "
            f"(fastgen warned at import); re-run this script once the extension is rebuilt")


ADAPTATION_NOTES = [
    "- **Direction.** fastgen and nflows run the density direction x -> z in `forward`; normflows runs "
    "z -> x in `forward`, so its `inverse` / `inverse_and_log_det` is what is compared with fastgen's "
    "`forward`.",
    "- **normflows couplings** read the conditioner output interleaved (shift 0::2, scale 1::2) and "
    "subtract the shift before scaling: z = (x - t) * sigmoid(r + 2) (scale_map='sigmoid'; 'exp': "
    "(x - t) * exp(-r)). fastgen's `conditioner=` takes `NormflowsAffineAdapter`, which wraps a copy of "
    "normflows' `param_map` and returns shift = -t * sigmoid(r + 2), raw = r for fastgen's "
    "scale='sigmoid' (-t * exp(-r), -r for scale='exp'). Additive: shift = -p.",
    "- **nflows 0.14 couplings** take no `scale_activation` argument (later nflows versions do): the scale "
    "is fixed at sigmoid(u + 2) + 1e-3. `NflowsAffineAdapter` returns raw = log(sigmoid(u + 2) + 1e-3) for "
    "fastgen's scale='exp', which is that map exactly (scale='sigmoid' cannot express the + 1e-3). The "
    "timed nflows Glow keeps its own map; fastgen is timed with scale='sigmoid' (the same cost).",
    "- **ActNorm.** nflows: y = x * exp(log_scale) + shift, so bias = shift * exp(-log_scale); "
    "normflows (density direction): z = (x - t) * exp(-s), so bias = -t, log_scale = -s.",
    "- **1x1 convolution.** normflows' LU form is fastgen's (W = P L U, diagonal sign * exp(log_s)): "
    "copied as is. nflows parameterises W = L U applied after its own random channel permutation, with a "
    "softplus diagonal, and adds a learned bias (zero at init) that Glow's and fastgen's layer lack: its "
    "effective W = (L U)[:, argsort(perm)] is copied into InvConv1x1(lu=False), or LU-decomposed with "
    "torch.linalg.lu for lu=True. The check keeps that bias at zero; a trained non-zero bias cannot be "
    "carried over (`invconv_from_nflows` refuses it).",
    "- **Squeeze.** The same channel order in all three (channel 4c + 2i + j holds pixel (2h + i, 2w + j) "
    "of channel c): exact.",
    "- **Splits.** Neither peer has Glow's learned conditional prior for the factored-out half: normflows' "
    "MultiscaleFlow has a base distribution per level (its example's ClassCondDiagGaussian, or N(0, I)), "
    "nflows' MultiscaleCompositeTransform one N(0, I). The matched fastgen rows therefore use "
    "learned_prior=False; 'fastgen Glow as it ships' adds the learned prior (a 3x3 convolution per split). "
    "nflows factors out the *first* half and keeps the second, fastgen and normflows the reverse: for the "
    "equivalence check the nflows Glow gets a swap of the halves before each split; the timed one does "
    "not (the same cost).",
    "- **Preprocessing.** fastgen's Glow maps x to x - 1/2 (log-det 0); the peers are fed x - 1/2 and their "
    "samples shifted back by + 1/2, inside the timed calls.",
    "- **Sampling.** fastgen's `sample` also clamps and quantizes to the 17 levels (the peers return raw x). "
    "In eval mode it reuses W and W^-1 cached since the last parameter change; the row 'sampled in train "
    "mode' recomputes them on every call. normflows inverts L and U in float64 on every call; nflows "
    "solves triangular systems on the whole activation (with the deprecated torch.triangular_solve).",
    "- **Optimizer.** Adam(lr=1e-3) for all (normflows' example uses Adamax with weight decay: the same "
    "cost class).",
    "- **nflows as shipped.** nflows ships no Glow model or image example in its package: the matched "
    "build from its transforms is its only row.",
]


def format_report(env: dict, versions: dict, threads: int, quick: bool, command: str,
                  equivalence: list[Equivalence], timing: dict, deprecations: list[str]) -> str:
    train, sample = timing["train"], timing["sample"]
    impls = {impl.key: impl for impl in timing["impls"]}
    best = min(("normflows", "nflows"), key=lambda k: train[k].median)
    best_sample = min(("normflows", "nflows"), key=lambda k: sample[k].median)
    floor = train["floor"].median
    fused_floor = train["floor-fastgen"].median

    def ratio(table, other, key):
        return table[other].median / table[key].median

    def verdict(value):
        return "met" if value >= TARGET else "not met"

    load = "; after: ".join(", ".join(f"{v:.2f}" for v in timing[k]) for k in ("load_before", "load_after"))
    lines = [f"# Flows: fastgen vs normflows and nflows ({env['device_name']}, {threads} threads)", "",
             f"- device: {env['device_name']} (cpu); torch threads: {threads} "
             f"(machine: {env['cpu_threads']})",
             f"- fastgen {env['fastgen']}, torch {env['torch']}, normflows {versions['normflows']}, "
             f"nflows {versions['nflows']}, python {env['python']}",
             f"- fastgen fused flow kernels: {kernel_status()}",
             f"- host: {env['host']} ({env['platform']}), date: {env['date']}",
             f"- load average (1, 5, 15 min) before timing: {load} "
             f"(above {threads}: other work shared the cores)",
             "- CPU time taken by other guests of the host while timing (steal): "
             + ("unknown" if timing.get("steal") is None else f"{timing['steal']:.0%}"),
             f"- command: `{command}`" + (" (quick mode: few repeats, rough numbers)" if quick else ""), ""]

    fast_ms, best_ms = train["fastgen"].median, train[best].median
    speed = best_ms / fast_ms
    lines += ["## Verdict", "",
              f"- Drop-in: {sum(e.ok for e in equivalence)} of {len(equivalence)} copied-weight checks "
              f"agree (section 1).",
              f"- Glow training step, fastgen with the matched architecture (scale='sigmoid'): "
              f"{_ms(fast_ms)} ms vs {_ms(best_ms)} ms for the faster peer ({best}): **{speed:.2f}x**; "
              f"target {TARGET}x: **{verdict(speed)}**.",
              f"- The conditioner networks and Adam alone, run layer by layer as the peers run them "
              f"(nn.Conv2d), take {_ms(floor)} ms, {floor / best_ms:.0%} of {best}'s step; the same "
              f"networks (same layers and parameters) through fastgen's fused `conv_conditioner` op take "
              f"{_ms(fused_floor)} ms (**{floor / fused_floor:.2f}x**). Beyond its floor fastgen spends "
              f"{_ms(fast_ms - fused_floor)} ms per step in the flow layers, {best} {_ms(best_ms - floor)} ms.",
              ""]

    lines += ["## 1. Drop-in check: copied weights, same outputs", "", " ".join([
        "Peer layer built (seeded), every parameter perturbed by N(0, 0.1^2) so that no layer is the",
        "identity, cast to the dtype, then copied into the fastgen layer. Density direction x -> z",
        "(fastgen `forward`, nflows `forward`, normflows `inverse`) on the same input, then back from the",
        "peer's z (fastgen `inverse`, nflows `inverse`, normflows `forward`). Max abs differences;",
        "`d(grad x)`: of the gradient of sum(w * z) + sum(logdet) with respect to x (fixed random w),",
        "which runs the backward kernels; `max abs y`, `max abs logdet`: the largest magnitudes, for",
        "scale. Layers: (4, 8, 4, 4) Gaussian",
        "input, conditioners with 16 hidden channels. Glow: 16 dequantized digits (1, 8, 8),",
        f"{NUM_LEVELS} levels x {STEPS} steps, hidden {HIDDEN}."]), "",
        "| layer | peer | weights carried over | dtype | max abs dy | max abs dlogdet | d(grad x) | "
        "back: dx | back: dlogdet | max abs y | max abs logdet | ok |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for e in equivalence:
        dtype = str(e.dtype).replace("torch.", "")
        lines.append(f"| {e.name} | {e.peer} | {e.how} | {dtype} | {_sci(e.y)} | {_sci(e.logdet)} | "
                     f"{_sci(e.grad)} | {_sci(e.x_back)} | {_sci(e.logdet_back)} | {e.y_size:.3g} | "
                     f"{e.logdet_size:.3g} | "
                     f"{'yes' if e.ok else '**NO**'} |")
    lines += ["", f"ok: every difference <= {TOLERANCE[torch.float32]:g} (float32) or "
              f"{TOLERANCE[torch.float64]:g} (float64) times max(1, magnitude).", ""]

    st = timing["settings"]
    lines += ["## 2. Speed", "", " ".join([
        f"Glow of {NUM_LEVELS} levels x {STEPS} steps, hidden {HIDDEN}, LU 1x1 convolutions, affine",
        f"couplings (first half conditions the second), on ({BATCH}, {', '.join(map(str, DATA_SHAPE))})",
        f"dequantized digits cycling over 8 fixed batches, float32, {threads} threads. Training step =",
        "zero_grad + forward (negative log-likelihood, mean over the batch) + backward + Adam(lr=1e-3)",
        f"step. Median (quartiles) of {st['repeats']} steps per implementation in interleaved rounds of",
        f"{st['round_size']} (Python's GC paused), after {st['warmup']} warm-up steps. Sampling:",
        f"{BATCH} images, no_grad, eval mode, {st['sample_repeats']} calls after {st['sample_warmup']}",
        "warm-up. Speed-ups: peer median / fastgen median (> 1: fastgen faster); the faster peer is",
        f"{best} for training and {best_sample} for sampling in this run. 'Beyond the floor': step",
        "minus the floor row of its library (fastgen's fused conditioners, or the peers' layer-by-layer",
        "ones)."]), "",
        "| implementation | trainable params | train step ms (q1-q3) | beyond the floor ms | vs normflows "
        f"| vs nflows | vs faster peer (target {TARGET}x) | sample 64 ms (q1-q3) | sampling vs faster peer "
        f"| non-finite samples of {10 * BATCH} | final loss |", "|---" + "|---:" * 10 + "|"]
    for key, impl in impls.items():
        t = train[key]
        if impl.library == "fastgen":
            vs = (f"{ratio(train, 'normflows', key):.2f}x | {ratio(train, 'nflows', key):.2f}x | "
                  f"**{ratio(train, best, key):.2f}x** ({verdict(ratio(train, best, key))})")
            sample_vs = f"{ratio(sample, best_sample, key):.2f}x"
        else:
            vs, sample_vs = "- | - | -", "-"
        own_floor = fused_floor if impl.library == "fastgen" else floor
        lines.append(f"| {impl.label} | {timing['params'][key]:,} | {_span(t)} | {_ms(t.median - own_floor)} | "
                     f"{vs} | {_span(sample[key])} | {sample_vs} | {timing['nonfinite'][key]} | "
                     f"{timing['losses'][key]:.4g} |")
    lines.append("| fastgen Glow, scale='sigmoid', sampled in train mode (W, W^-1 recomputed per call) | - | "
                 f"- | - | - | - | - | {_span(sample['fastgen-nocache'])} | "
                 f"{ratio(sample, best_sample, 'fastgen-nocache'):.2f}x | - | - |")
    lines.append(f"| floor: the 16 conditioner networks + Adam alone (no flow layers), layer by layer | "
                 f"{timing['floor_params']:,} | {_span(train['floor'])} | 0 | - | - | - | - | - | - | - |")
    lines.append(f"| floor, fastgen: the same networks through its fused conv_conditioner op | "
                 f"{timing['floor_params']:,} | {_span(train['floor-fastgen'])} | 0 | "
                 f"{floor / fused_floor:.2f}x vs layer by layer | - | - | - | - | - | - |")
    lines += ["", "Non-finite samples: after the timed training steps, 10 batches of raw samples (the "
              "inverse flow's output; fastgen's `sample` itself replaces non-finite values by 0 and logs a "
              "warning). "
              "Final loss: the last timed step's loss (nats per image, the x - 1/2 shift included in all, so "
              "comparable across rows; a sanity check, not a result).", ""]
    lines += ["## What was adapted, and why", "", *ADAPTATION_NOTES, ""]
    if deprecations:
        lines += ["## Deprecation warnings raised in this run", "", *(f"- {d}" for d in deprecations), "",
                  "(torch emits each once per process: normflows' Invertible1x1Conv(use_lu=True) calls "
                  "torch.lu when built, nflows' OneByOneConvolution torch.triangular_solve in its inverse, "
                  "i.e. when sampling; fastgen's flow code uses torch.linalg only.)", ""]
    return "\n".join(lines)


# ================================================================ main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few repeats (a smoke run)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"where the markdown report goes (default: ./{DEFAULT_OUT}, git-ignored)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    return args


def _first_line(w: warnings.WarningMessage) -> str:
    return f"{w.category.__name__}: {str(w.message).splitlines()[0]}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        peers = load_peers()
    except PeersMissing as error:
        print(f"flows_vs_peers: {error}", file=sys.stderr)
        return 2
    from fastgen.bench.report import collect_environment

    torch.set_num_threads(args.threads)
    command = " ".join(["python benchmarks/flows_vs_peers.py", *(sys.argv[1:] if argv is None else argv)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        print("equivalence (copied weights) ...", file=sys.stderr, flush=True)
        equivalence = run_equivalence(peers)
        print("timing ...", file=sys.stderr, flush=True)
        timing = run_timing(peers, quick=args.quick)
    deprecations = sorted({f"{_first_line(w)} ({Path(w.filename).name}:{w.lineno})"
                           for w in caught if "deprecated" in str(w.message)})
    report = format_report(collect_environment("cpu"), peer_versions(), args.threads, args.quick, command,
                           equivalence, timing, deprecations)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report + "\n", encoding="utf-8")
    print(report)
    for message in sorted({_first_line(w) for w in caught if "deprecated" not in str(w.message)}):
        print(f"warning during the run: {message}", file=sys.stderr)
    print(f"wrote {args.out}", file=sys.stderr)
    bad = [e for e in equivalence if not e.ok]
    if bad:
        print(f"flows_vs_peers: {len(bad)} equivalence check(s) out of tolerance", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
