"""The example LeNet (correct or with one bug) wrapped for trigrad: spec, layout, loss, data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..adapters.layouts import Layout
from ..adapters.loss import WrappedLoss, wrap_loss
from ..adapters.network import WrappedNetwork, wrap_network
from ..spec import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential, SoftmaxCrossEntropy
from .lenet import LeNet, softmax_loss
from .variants import VARIANTS, Variant

IN_CHANNELS, SIZE, HIDDEN, CLASSES = 3, 16, 32, 10

# what the numpy code uses: TensorFlow's habits throughout
LAYOUT = Layout(data="NHWC", kernel="HWIO", linear="in_out", flatten="HWC")


def lenet_spec(
    in_channels: int = IN_CHANNELS, size: int = SIZE, hidden: int = HIDDEN, classes: int = CLASSES
) -> Sequential:
    """The spec of :class:`~harness.examples.lenet.LeNet` (canonical: input (N, C, H, W))."""
    side = (size // 2 - 4) // 2
    return Sequential(
        [
            Conv2d("conv1", in_channels, 6, 5, padding=2),
            ReLU("relu1"),
            MaxPool2d("pool1", 2),
            Conv2d("conv2", 6, 16, 5),
            ReLU("relu2"),
            MaxPool2d("pool2", 2),
            Flatten("flat"),
            Linear("fc1", 16 * side * side, hidden),
            ReLU("relu3"),
            Linear("fc2", hidden, classes),
        ]
    )


@dataclass
class Example:
    """A ready-to-check example.

    name:    ``"correct"`` or the variant's name; ``variant``: its :class:`Variant`, or None.
    net:     the user's network wrapped (:func:`harness.wrap_network`, the network's own
             forward/backward, declared layout ``LAYOUT``).
    spec:    the spec it implements; ``loss``: the user's softmax loss wrapped
             (:func:`harness.wrap_loss`); ``model``: the raw numpy :class:`LeNet`.
    x:       the input in the code's own layout, NHWC (N, H, W, C), float64 (what
             :func:`harness.check_network` takes, as it reads ``x`` in the declared layout);
             ``y``: integer labels (N,).
    """

    name: str
    variant: Variant | None
    net: WrappedNetwork
    spec: Sequential
    loss: WrappedLoss
    model: LeNet
    x: np.ndarray
    y: np.ndarray


def build(variant: str = "correct", *, batch: int = 4, seed: int = 0, dtype: Any = np.float64) -> Example:
    """The example LeNet, correct or with the bug ``variant`` (a key of :data:`VARIANTS`).

    Weights come from ``seed`` (He-scaled, identical across variants); ``x`` and ``y`` from
    an independent stream of the same seed. ``dtype``: what the numpy code computes in.
    At ``batch=1`` a mean is a sum, so the two batch-size mistakes (``fc1-bias-averaged``,
    ``loss-grad-not-averaged``) compute the right numbers and cannot be seen.
    """
    if variant != "correct" and variant not in VARIANTS:
        raise ValueError(f"unknown example variant {variant!r}; valid: {', '.join(['correct', *VARIANTS])}")
    bug = VARIANTS.get(variant)
    network = bug.network if bug else LeNet
    model = network(
        IN_CHANNELS, SIZE, HIDDEN, CLASSES, seed=seed, dtype=dtype, layers=dict(bug.layers) if bug else None
    )
    spec = lenet_spec()
    input_shape = (batch, SIZE, SIZE, IN_CHANNELS)  # NHWC, the declared LAYOUT's data order
    net = wrap_network(
        model.layers(), spec, forward=model.forward, backward=model.backward, layout=LAYOUT, input_shape=input_shape
    )
    loss = wrap_loss(
        (bug.loss if bug and bug.loss else softmax_loss), SoftmaxCrossEntropy(), style="function", dtype=dtype
    )
    data = np.random.default_rng([seed, 1])  # independent of the weights' stream
    # drawn in NCHW and transposed: the same values as when the example took canonical inputs
    x = np.ascontiguousarray(data.standard_normal((batch, IN_CHANNELS, SIZE, SIZE)).transpose(0, 2, 3, 1))
    y = data.integers(0, CLASSES, size=batch)
    return Example(name=variant, variant=bug, net=net, spec=spec, loss=loss, model=model, x=x, y=y)


__all__ = ["Example", "LAYOUT", "build", "lenet_spec"]
