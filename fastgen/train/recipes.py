"""How a model plugs into ``fastgen train``, ``fastgen sample`` and ``fastgen evaluate``.

A :class:`Recipe` says how to build the model for some data, which optimizers it trains with,
what one training step does, how it is evaluated on the test split and how it draws images.
Recipes register themselves by name with :func:`register`; the commands look them up with
:func:`get`. VAE and DCGAN register in this package; later models do the same from theirs.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from fastgen.data import ImageData, load_images
from fastgen.train.step_context import StepContext

_RECIPES: dict[str, "Recipe"] = {}
# Modules whose import registers recipes (kept lazy so `fastgen --help` stays fast).
RECIPE_MODULES: tuple[str, ...] = ("fastgen.train.vae_recipe", "fastgen.train.gan_recipe", "fastgen.train.flow_recipe",
                                   "fastgen.train.autoregressive_recipe")


class UnknownModelError(ValueError):
    """A model name no recipe is registered for."""


class Recipe(ABC):
    """Base class; subclasses set the class attributes and implement the abstract methods.

    Attributes
    ----------
    name : str
        The name on the command line (``fastgen train NAME``).
    model_class : type
        The ``nn.Module`` class; it must have ``config() -> dict`` of constructor kwargs.
    test_metric : str
        The key of :meth:`evaluate`'s dict printed as the final test metric.
    epochs, batch_size, lr : defaults for the command line.
    quick_epochs : epochs of the ``--quick`` run (a few minutes on 2 CPU cores).
    validation_fraction : float
        When > 0, this share of the training split is held out as a validation split, scored
        by :meth:`validation_score` after every epoch; the best epoch is kept as ``best.pt``
        and the final test metrics are those of that checkpoint (early stopping without
        looking at the test split).
    """

    name: str = ""
    model_class: type = nn.Module
    test_metric: str = "loss"
    epochs: int = 20
    quick_epochs: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    validation_fraction: float = 0.0
    default_data: str = "digits"
    sample_suffix: str = ".png"
    max_epoch_samples: int | None = None
    sample_temperature: float | None = None  # the flows': latents scaled by it (None: no such knob)
    sample_seconds: float | None = None  # audio: length of a generated clip (None: images)

    def load_data(self, spec: str, sample_rate: int | None = None) -> ImageData:
        """The dataset ``spec`` (``--data``) names: images unless the recipe says otherwise.
        ``sample_rate`` (``--sample-rate``) is for audio recipes."""
        if sample_rate is not None:
            raise ValueError(f"--sample-rate is for audio models (wavenet), not {self.name}")
        return load_images(spec, seed=0)

    @abstractmethod
    def build(self, data: ImageData) -> nn.Module:
        """A fresh model sized for ``data``."""

    def rebuild(self, config: dict[str, Any]) -> nn.Module:
        """The model from a checkpoint's ``config``."""
        return self.model_class(**config)

    def trained_parts(self, model: nn.Module) -> dict[str, nn.Module]:
        """The submodules each optimizer trains (each is wrapped in DDP when distributed)."""
        return {"model": model}

    def optimizers(self, parts: dict[str, nn.Module], lr: float) -> dict[str, torch.optim.Optimizer]:
        return {name: torch.optim.Adam(part.parameters(), lr=lr) for name, part in parts.items()}

    @abstractmethod
    def train_step(self, model: nn.Module, parts: dict[str, nn.Module],
                   optimizers: dict[str, torch.optim.Optimizer], batch: torch.Tensor, levels: int,
                   ctx: StepContext, amp: "Amp") -> dict[str, float]:
        """One optimisation step on this rank's ``batch`` (uint8 levels); returns its losses.

        ``parts`` are :meth:`trained_parts` (DDP-wrapped when distributed): run forward passes
        through them so gradients are synchronised; ``model`` is the plain model, for its
        attributes and loss functions.
        """

    @abstractmethod
    def evaluate(self, model: nn.Module, data: ImageData, device: torch.device, *, quick: bool = False,
                 seed: int = 0) -> dict[str, float]:
        """Test-split metrics (and sample quality where it applies); called under no_grad."""

    def validation_score(self, model: nn.Module, validation: ImageData, device: torch.device, seed: int) -> float:
        """Lower is better: what picks ``best.pt`` when ``validation_fraction`` > 0. ``validation``
        holds the validation split as its test split. Default: :meth:`evaluate`'s ``test_metric``
        (quick); recipes override it with something cheaper. Called under no_grad."""
        return float(self.evaluate(model, validation, device, quick=True, seed=seed)[self.test_metric])

    @torch.no_grad()
    def sample(self, model: nn.Module, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` images in [0, 1], shape (n, C, H, W)."""
        return model.sample(n, generator=generator)

    def save_samples(self, model: nn.Module, samples: torch.Tensor, path) -> None:
        """Write :meth:`sample`'s output to ``path`` (suffix :attr:`sample_suffix`): a PNG grid."""
        from fastgen.train.plots import save_image_grid

        save_image_grid(samples.float().cpu(), path)


class Amp:
    """Mixed precision for a training step: autocast plus, for float16, a gradient scaler."""

    def __init__(self, mode: str | None, device: torch.device) -> None:
        self.dtype = {None: None, "none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type) if self.dtype == torch.float16 else None
        self._skipped: set[int] = set()  # ids of the optimizers whose last step the scaler skipped

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None)

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)  # waits for its inf/NaN check: reading the scale now stalls nothing
            scale = self.scaler.get_scale()
            self.scaler.update()
            # The scaler lowers its scale exactly when it skipped the step (inf/NaN gradients).
            if self.scaler.get_scale() < scale:
                self._skipped.add(id(optimizer))
            else:
                self._skipped.discard(id(optimizer))

    def stepped(self, optimizer: torch.optim.Optimizer) -> bool:
        """Whether ``optimizer``'s last step ran (float16's scaler skips those with inf/NaN
        gradients): its learning-rate schedule advances only then."""
        return id(optimizer) not in self._skipped

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def register(recipe: Recipe) -> Recipe:
    """Make ``recipe`` available as ``fastgen train <recipe.name>``."""
    _RECIPES[recipe.name] = recipe
    return recipe


def _import_all() -> None:
    for module in RECIPE_MODULES:
        importlib.import_module(module)


def names() -> list[str]:
    _import_all()
    return sorted(_RECIPES)


def get(name: str) -> Recipe:
    _import_all()
    if name not in _RECIPES:
        raise UnknownModelError(f"unknown model '{name}' (choose from: {', '.join(sorted(_RECIPES))})")
    return _RECIPES[name]
