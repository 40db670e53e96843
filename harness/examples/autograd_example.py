"""The custom-autograd example (correct or with one bug) wrapped for trigrad: each layer of
:class:`~harness.examples.autograd_model.CustomNet`, a module calling its own
``torch.autograd.Function``, wrapped as it is (its gradients come from torch's autograd,
through the Function's handwritten backward), then its spec and data. Mirrors
:mod:`harness.examples.example` (the LeNet).

Imports torch (the model is torch code): :mod:`harness.examples` reaches this module only
when the example is built."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..adapters.autograd import wrap_autograd
from ..adapters.network import WrappedNetwork, wrap_network
from ..spec import GELU, Conv2d, Flatten, LayerNorm, LeakyReLU, Linear, Sequential
from .autograd_model import CHANNELS, HIDDEN, IN_CHANNELS, NAMES, SIZE, SLOPE, CustomNet
from .autograd_variants import AUTOGRAD_VARIANTS, AutogradVariant

BATCH = 4


def autograd_spec() -> Sequential:
    """The spec of :class:`~harness.examples.autograd_model.CustomNet`: (N, 3, 6, 6) -> (N, 16)."""
    return Sequential(
        [
            Conv2d("conv", IN_CHANNELS, CHANNELS, 3, padding=1),
            LeakyReLU("act1", SLOPE),
            Flatten("flat"),
            Linear("fc1", CHANNELS * SIZE * SIZE, HIDDEN),
            LayerNorm("norm", HIDDEN),
            GELU("act2", approximate="tanh"),
            Linear("fc2", HIDDEN, HIDDEN),
        ]
    )


@dataclass
class AutogradExample:
    """A ready-to-check example (the custom-autograd counterpart of
    :class:`~harness.examples.Example`).

    name:    ``"correct"`` or the variant's name; ``variant``: its :class:`AutogradVariant`, or None.
    net:     each layer's module wrapped (:func:`harness.wrap_autograd`, its parameters found on
             it), chained in spec order; no loss (``loss`` and ``y`` are None).
    spec:    the spec it implements; ``model``: the raw torch :class:`CustomNet`.
    x:       the input (N, 3, 6, 6), float64 numpy.
    """

    name: str
    variant: AutogradVariant | None
    net: WrappedNetwork
    spec: Sequential
    model: CustomNet
    x: np.ndarray
    y: None = None
    loss: None = None


def build_autograd(variant: str = "correct", *, batch: int = BATCH, seed: int = 0) -> AutogradExample:
    """The custom-autograd example, correct or with the bug ``variant`` (a key of
    :data:`AUTOGRAD_VARIANTS`). Parameters come from ``seed`` (identical across variants);
    ``x`` from an independent stream of the same seed. At ``batch=1`` a mean is a sum, so
    ``fc1-bias-grad-mean`` computes the right numbers and cannot be seen."""
    if variant != "correct" and variant not in AUTOGRAD_VARIANTS:
        raise ValueError(f"unknown example variant {variant!r}; valid: {', '.join(['correct', *AUTOGRAD_VARIANTS])}")
    bug = AUTOGRAD_VARIANTS.get(variant)
    model = CustomNet(seed=seed, functions=dict(bug.layers) if bug else None)
    spec = autograd_spec()
    net = wrap_network({layer.name: wrap_autograd(getattr(model, layer.name), layer) for layer in spec.layers}, spec)
    x = np.random.default_rng([seed, 1]).standard_normal((batch, IN_CHANNELS, SIZE, SIZE))
    return AutogradExample(name=variant, variant=bug, net=net, spec=spec, model=model, x=x)


__all__ = ["BATCH", "NAMES", "AutogradExample", "autograd_spec", "build_autograd"]
