"""Glow's flow layers besides the couplings: ActNorm, invertible 1x1 convolution, squeeze, split.

Every layer: ``forward(x) -> (y, logdet)`` in the density direction, ``inverse(y) -> (x, logdet)``
(the log-determinant of the inverse, i.e. the negative). ``logdet`` is (N,), float32 for
float16/bfloat16 inputs.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.distributed as dist
from torch import nn

from fastgen import ops
from fastgen.nn._dtypes import full_precision, in_layer_dtype
from fastgen.ops._checks import check_flag
from fastgen.ops._dispatch import accumulation_dtype
from fastgen.ops.flows import check_factor


def _check_channels(num_channels: object) -> int:
    if isinstance(num_channels, bool) or not isinstance(num_channels, int) or num_channels < 1:
        raise ValueError(f"num_channels must be an int >= 1, got {num_channels!r}")
    return num_channels


def _for_input(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``matrix`` in the dtype invertible_conv1x1 computes ``x`` in: float32 stays float32 for a
    float16/bfloat16 ``x`` (rounding W or W^-1 to x's dtype would cost the inverse its
    accuracy), anything else takes x's dtype."""
    return matrix if matrix.dtype == accumulation_dtype(x.dtype) else matrix.to(x.dtype)


def _check_input(x: object, name: str, channels: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2 or x.shape[1] != channels:
        raise ValueError(f"{name} must have shape (N, {channels}, ...), got {tuple(x.shape)}")
    return x


class ActNorm(nn.Module):
    """Per-channel affine normalisation, ``y = (x + bias) * exp(log_scale)`` (Glow).

    Data-dependent initialisation: the first ``forward`` in training mode sets ``bias`` and
    ``log_scale`` so that its batch comes out with zero mean and unit variance per channel.
    Under ``torch.distributed`` the statistics are reduced across all ranks first, so every
    rank starts from the same parameters. Later steps check a Python flag only: no host
    synchronisation, and ``torch.compile`` sees no data-dependent branch. The flag is saved in
    the state dict (buffer ``initialized``), so a loaded model is not initialised again, nor one
    whose buffer was set otherwise (DDP broadcasting rank 0's loaded buffers to the other ranks).

    Parameters
    ----------
    num_channels : int
        C of the (N, C, *spatial) input.
    eps : float
        Added to the standard deviation at initialisation.
    """

    def __init__(self, num_channels: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.num_channels = _check_channels(num_channels)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
        self.eps = float(eps)
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.log_scale = nn.Parameter(torch.zeros(num_channels))
        self.register_buffer("initialized", torch.tensor(False))
        self._initialized = False  # mirrors the buffer without reading it on every step

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        key = prefix + "initialized"
        if key in state_dict:
            self._initialized = bool(state_dict[key])

    def _buffer_says_initialized(self) -> bool:
        """Whether the ``initialized`` buffer was set behind the mirror's back (DDP's broadcast of
        rank 0's buffers, a copy into ``buffers()``): read, a host sync, only while the mirror is
        still False, so at most until the first training step. Not under torch.compile, where
        the mirror alone decides (a data-dependent branch would break the graph)."""
        if torch.compiler.is_compiling() or self.initialized.is_meta or not bool(self.initialized):
            return False
        self._initialized = True
        return True

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Set the parameters from the batch ``x`` (all ranks' batches under torch.distributed)."""
        x = _check_input(x, "x", self.num_channels)
        flat = x.detach().transpose(0, 1).reshape(self.num_channels, -1).double()
        stats = torch.stack([flat.sum(1), (flat * flat).sum(1),
                             flat.new_full((self.num_channels,), flat.shape[1])])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(stats)
        # one check, once: bad statistics would stay in the parameters for the whole run
        if not bool(torch.isfinite(stats).all() & (stats[2] > 0).all()):
            raise ValueError("ActNorm initialises from its first training batch, which must be non-empty and finite "
                             f"(got shape {tuple(x.shape)}{'' if x.numel() == 0 else ' with non-finite values'})")
        count = stats[2]
        mean = stats[0] / count
        var = (stats[1] / count - mean * mean).clamp_min(0)
        flat_channels = (var == 0).nonzero().flatten().tolist()
        if flat_channels:  # e.g. a batch of one vector: scale 1/eps, almost surely not what was meant
            warnings.warn(f"ActNorm initialised from a batch in which channel(s) {flat_channels[:8]} have zero "
                          f"variance (shape {tuple(x.shape)}): their scale is 1/eps = {1 / self.eps:.3g}. "
                          "Initialise from a larger batch (call initialize(x)) or load trained parameters.",
                          stacklevel=3)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(var.sqrt() + self.eps))
        self.initialized.fill_(True)
        self._initialized = True

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, C, *spatial) -> (y, logdet (N,))."""
        _check_input(x, "x", self.num_channels)
        if not self._initialized and self.training and not self._buffer_says_initialized():
            self.initialize(x)
        return in_layer_dtype(lambda t: ops.actnorm(t, self.bias.to(t.dtype), self.log_scale.to(t.dtype)), x, self)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y -> (x, logdet (N,)) of the inverse."""
        _check_input(y, "y", self.num_channels)
        return in_layer_dtype(
            lambda t: ops.actnorm(t, self.bias.to(t.dtype), self.log_scale.to(t.dtype), reverse=True), y, self)

    def extra_repr(self) -> str:
        return f"{self.num_channels}"


class _CachedInverse(torch.autograd.Function):
    """A cached W^-1, differentiable in W again: d(W^-1) = -W^-1 dW W^-1."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inverse)
        return inverse.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (inverse,) = ctx.saved_tensors
        return -(inverse.mT @ grad @ inverse.mT), None


class _CachedLogabsdet(torch.autograd.Function):
    """A cached log|det W|, differentiable in W again: d log|det W| / dW = W^-T."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, logabsdet: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inverse)
        return logabsdet.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (inverse,) = ctx.saved_tensors
        return grad * inverse.mT, None, None


def _all_equal_one_wait(tensors: list[torch.Tensor], others: list[torch.Tensor]) -> bool:
    """Whether each pair is equal (same shapes), compared on the device with one wait for the
    answer: on a GPU each ``torch.equal`` would wait for the device by itself. NaN is unequal."""
    return not bool(torch.stack([torch.ne(a, b).any() for a, b in zip(tensors, others)]).any())


class InvConv1x1(nn.Module):
    """Glow's invertible 1x1 convolution, plain or LU-parameterised.

    ``lu=True`` (default): ``W = P @ L @ (U + diag(sign * exp(log_s)))`` with P a fixed
    permutation, L unit lower-triangular and U strictly upper-triangular, so
    ``log|det W| = sum(log_s)``: no ``slogdet`` while training, and W stays invertible.
    ``lu=False``: W is a free (C, C) parameter and ``log|det W|`` comes from ``slogdet``.
    Both start from a random rotation. In eval mode W, W^-1 and log|det W| are cached and
    recomputed only when a parameter or buffer changes (compared by value, so any kind of update
    is seen; not under ``torch.compile``, which recomputes them in the graph);
    with autograd on, the cached W^-1 and log|det W| stay differentiable in the parameters.

    Parameters
    ----------
    num_channels : int
        C of the (N, C, *spatial) input.
    lu : bool
        Use the LU parameterisation.
    """

    def __init__(self, num_channels: int, lu: bool = True) -> None:
        super().__init__()
        c = self.num_channels = _check_channels(num_channels)
        self.lu = check_flag(lu, "lu")
        q = torch.linalg.qr(torch.randn(c, c, dtype=torch.float64))[0]
        if not self.lu:
            self.weight = nn.Parameter(q.float())
        else:
            p, lower, upper = torch.linalg.lu(q)
            diag = torch.diagonal(upper)
            self.register_buffer("permutation", p.float())
            self.register_buffer("sign_s", torch.sign(diag).float())
            self.register_buffer("lower_mask", torch.tril(torch.ones(c, c), -1))
            self.lower = nn.Parameter((lower * torch.tril(torch.ones(c, c), -1)).float())
            self.upper = nn.Parameter(torch.triu(upper, 1).float())
            self.log_s = nn.Parameter(torch.log(diag.abs()).float())
        self._cache: tuple | None = None

    def _state(self) -> list[torch.Tensor]:
        """What W is made of: the parameters and (LU) the permutation, signs and mask buffers."""
        return [*self.parameters(recurse=False), *self.buffers(recurse=False)]

    def _unchanged(self, saved: list[torch.Tensor]) -> bool:
        """Whether the parameters and buffers equal the copies the cache was built from. Compared by
        value: an in-place edit through ``.data`` does not move a parameter's version counter."""
        state = self._state()
        if len(state) != len(saved) or any(p.dtype != q.dtype or p.device != q.device or p.shape != q.shape
                                           for p, q in zip(state, saved)):
            return False
        if state[0].device.type == "cpu":
            return all(torch.equal(p, q) for p, q in zip(state, saved))
        return _all_equal_one_wait(state, saved)

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(L unit-lower, U upper with diagonal sign * exp(log_s)) of the LU parameterisation."""
        lower_param, upper_param, log_s = map(full_precision, (self.lower, self.upper, self.log_s))
        dtype = log_s.dtype  # the buffers follow the parameters' dtype under module.to(); float32 here
        # Only saved buffers here (the strictly-upper mask is lower_mask.T): a layer built on the
        # meta device and then loaded (to_empty + load_state_dict, or assign=True) is whole.
        strictly_lower = lower_param * self.lower_mask.to(dtype)
        lower = strictly_lower + torch.diag(torch.ones_like(log_s))
        upper = torch.addcmul(torch.diag(self.sign_s.to(dtype) * torch.exp(log_s)), upper_param,
                              self.lower_mask.T.to(dtype))
        return lower, upper

    def _compute_weight(self) -> torch.Tensor:
        """W (C, C)."""
        if not self.lu:
            return full_precision(self.weight)
        lower, upper = self._factors()
        return self.permutation.to(lower.dtype) @ (lower @ upper)

    def _compute(self, with_inverse: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(W, log|det W| 0-dim, W^-1 or None), with autograd."""
        weight = self._compute_weight()
        logabsdet = self._lu_logabsdet() if self.lu else torch.linalg.slogdet(weight).logabsdet
        return weight, logabsdet, self._compute_inverse(weight) if with_inverse else None

    def _lu_logabsdet(self) -> torch.Tensor:
        """log|det W| = sum(log_s) of the LU parameterisation (0-dim)."""
        return full_precision(self.log_s).sum()

    def _compute_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.lu:
            return torch.linalg.inv(weight)
        lower, upper = self._factors()
        # W^-1 = U^-1 L^-1 P^T, by triangular solves (torch.linalg, no deprecated torch.lu).
        lower_inv_pt = torch.linalg.solve_triangular(lower, self.permutation.T.to(lower.dtype), upper=False,
                                                     unitriangular=True)
        return torch.linalg.solve_triangular(upper, lower_inv_pt, upper=True)

    def _cached(self, with_inverse: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(W, log|det W|, W^-1 or None) without autograd, from the cache (rebuilt when a parameter
        changed, or W^-1 is asked for and not there yet)."""
        cache = self._cache
        if cache is None or not self._unchanged(cache[0]) or (with_inverse and cache[3] is None):
            # Built outside inference mode even when asked for inside it (sampling under
            # torch.inference_mode): an inference tensor in the cache could not be saved for a
            # backward pass later.
            with torch.inference_mode(False), torch.no_grad():
                # The plain parameterisation keeps W^-1 anyway: its log|det W| gradient is W^-T.
                values = self._compute(with_inverse or not self.lu)
                cache = self._cache = ([p.detach().clone() for p in self._state()], *values)
        return cache[1], cache[2], cache[3]

    def weights(self, *, with_inverse: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(W, log|det W|, W^-1 or None) in the parameters' dtype (float32 for float16/bfloat16
        parameters), also under autocast.

        In eval mode W^-1 (and log|det W| of the plain parameterisation, a ``slogdet``) come from
        a cache, rebuilt only when a parameter changes (compared by value); with autograd on they
        are still differentiable in the parameters (d W^-1 = -W^-1 dW W^-1, d log|det W| = W^-T dW).
        In training mode everything is recomputed.
        """
        # Full precision also under autocast: a W rounded to bfloat16 would no longer have the
        # log-determinant sum(log_s), nor be the inverse of the W^-1 solved for.
        device_type = next(self.parameters()).device.type
        with torch.autocast(device_type, enabled=False):
            # Under torch.compile no cache: its by-value check is data-dependent (a graph break,
            # an error with fullgraph=True), and the compiled graph recomputes W cheaply anyway.
            if self.training or torch.compiler.is_compiling():
                return self._compute(with_inverse)
            weight, logabsdet, inverse = self._cached(with_inverse)
            if not (torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters(recurse=False))):
                return weight, logabsdet, inverse if with_inverse else None
            weight = self._compute_weight()  # a few small products: cheaper than any cache check
            if self.lu:
                logabsdet = self._lu_logabsdet()
            else:
                logabsdet = _CachedLogabsdet.apply(weight, logabsdet, inverse)
            return weight, logabsdet, _CachedInverse.apply(weight, inverse) if with_inverse else None

    def train(self, mode: bool = True) -> "InvConv1x1":
        self._cache = None
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, C, *spatial) -> (y, logdet (N,))."""
        _check_input(x, "x", self.num_channels)
        weight, logabsdet, _ = self.weights()
        return ops.invertible_conv1x1(x, _for_input(weight, x), logabsdet=logabsdet)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y -> (x, logdet (N,)) of the inverse."""
        _check_input(y, "y", self.num_channels)
        weight, logabsdet, inverse = self.weights(with_inverse=True)
        return ops.invertible_conv1x1(y, _for_input(weight, y), reverse=True, logabsdet=logabsdet,
                                      weight_inverse=_for_input(inverse, y))

    def extra_repr(self) -> str:
        return f"{self.num_channels}, lu={self.lu}"


class Squeeze(nn.Module):
    """Space-to-depth by ``factor`` (N, C, H, W) -> (N, C f^2, H/f, W/f); a permutation, logdet 0."""

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        self.factor = check_factor(factor)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = ops.squeeze2d(x, self.factor)
        return y, y.new_zeros(y.shape[0], dtype=accumulation_dtype(y.dtype))

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = ops.unsqueeze2d(y, self.factor)
        return x, x.new_zeros(x.shape[0], dtype=accumulation_dtype(x.dtype))

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class Split(nn.Module):
    """Factor out half of the channels (Glow's multi-scale split), with a learned Gaussian prior.

    ``forward(x) -> ((x1, z2), logdet)``: x1 = the first ``C - C // 2`` channels continue
    through the flow; the other half x2 is standardised under a Gaussian whose mean and
    log-scale a zero-initialised 3x3 convolution (or linear layer, for vectors) computes from
    x1: ``z2 = (x2 - mean) * exp(-log_scale)``, ``logdet = -sum(log_scale)``. z2 then has a
    standard normal prior, so ``log p(x2 | x1) = log N(z2) + logdet``. ``inverse((x1, z2))``
    rebuilds x. With ``learned_prior=False`` z2 = x2 and logdet = 0.

    Parameters
    ----------
    num_channels : int
        C of the input (>= 2).
    learned_prior : bool
        Learn the conditional prior of the factored-out half.
    vector : bool
        Inputs are (N, D) vectors instead of images.
    """

    factors_out = True  # forward returns (kept, z): models collect z as a latent

    def __init__(self, num_channels: int, *, learned_prior: bool = True, vector: bool = False) -> None:
        super().__init__()
        self.num_channels = _check_channels(num_channels)
        if num_channels < 2:
            raise ValueError(f"num_channels must be >= 2 to split, got {num_channels}")
        self.keep = num_channels - num_channels // 2
        self.out = num_channels // 2
        self.vector = bool(vector)
        self.prior: nn.Module | None = None
        if learned_prior:
            layer = nn.Linear(self.keep, 2 * self.out) if vector else nn.Conv2d(self.keep, 2 * self.out, 3, padding=1)
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
            self.prior = layer

    def _mean_log_scale(self, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_scale = self.prior(x1).to(x1.dtype).chunk(2, dim=1)
        return mean.contiguous(), log_scale.contiguous()

    def _check(self, x: object, name: str, channels: int) -> torch.Tensor:
        """The prior is a Linear (vector=True) or a 3x3 Conv2d: (N, C) or (N, C, H, W) inputs."""
        x = _check_input(x, name, channels)
        if self.prior is not None and x.dim() != (2 if self.vector else 4):
            layout = f"(N, {channels})" if self.vector else f"(N, {channels}, H, W)"
            other = "images: Split(..., vector=False)" if self.vector else "vectors: Split(..., vector=True)"
            raise ValueError(f"{name} must have shape {layout}, got {tuple(x.shape)} (for {other})")
        return x

    def forward(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        self._check(x, "x", self.num_channels)
        if self.prior is None:
            return ops.split_channels(x, self.keep), x.new_zeros(x.shape[0], dtype=accumulation_dtype(x.dtype))
        return in_layer_dtype(self._standardise, x, self.prior)

    def _standardise(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        x1, x2 = ops.split_channels(x, self.keep)
        mean, log_scale = self._mean_log_scale(x1)
        z2, logdet = ops.affine_coupling(x2.contiguous(), mean, log_scale, reverse=True, scale="exp")
        return (x1, z2), logdet

    def inverse(self, y: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """y = (kept half x1, factored-out z2) -> (x, logdet (N,))."""
        if not isinstance(y, (tuple, list)) or len(y) != 2:
            raise TypeError(f"y must be the pair (x1, z2) that forward returns, got {type(y).__name__}")
        x1, z2 = y
        self._check(x1, "x1", self.keep)
        self._check(z2, "z2", self.out)
        if x1.shape[0] != z2.shape[0] or x1.shape[2:] != z2.shape[2:] or x1.dtype != z2.dtype:
            raise ValueError(f"x1 and z2 must share the batch, spatial size and dtype, got {tuple(x1.shape)} "
                             f"{x1.dtype} and {tuple(z2.shape)} {z2.dtype}")
        if self.prior is None:
            return ops.merge_channels(x1, z2), x1.new_zeros(x1.shape[0], dtype=accumulation_dtype(x1.dtype))
        return in_layer_dtype(self._destandardise, (x1, z2), self.prior)

    def _destandardise(self, y: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x1, z2 = y
        mean, log_scale = self._mean_log_scale(x1)
        x2, logdet = ops.affine_coupling(z2, mean, log_scale, scale="exp")
        return ops.merge_channels(x1, x2), logdet

    def extra_repr(self) -> str:
        return f"{self.num_channels}, learned_prior={self.prior is not None}"
