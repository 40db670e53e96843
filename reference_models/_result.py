"""What a reference network returns, and the input checks both references share.

Only numpy and the spec are used here: the torch and jax references each import this
module, never each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.spec import Layer, Loss, SpecError, check_params, check_target, named_params, read_input


@dataclass
class Result:
    """One pass of a reference network, everything float64 numpy.

    ``inputs`` / ``outputs`` / ``output_grads`` are keyed by layer path (``layer1.0.conv1``)
    in forward order, as :func:`harness.spec.walk` yields them; ``output_grads[path]`` is the
    gradient of the scalar objective w.r.t. that layer's output, i.e. the upstream gradient
    the layer receives in backprop. ``param_grads`` holds trainable parameters only, by
    canonical name. ``state`` holds updated buffers (batch-norm running statistics after a
    training-mode step). Gradient fields are ``None`` / empty after a forward-only pass.
    ``input_grad`` is None too when the input is integer indices (a network opened by an
    ``Embedding``: not differentiable); ``inputs`` then keeps that layer's input int64.
    """

    output: np.ndarray
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    state: dict[str, np.ndarray] = field(default_factory=dict)
    loss: float | None = None
    cotangent: np.ndarray | None = None
    input_grad: np.ndarray | None = None
    param_grads: dict[str, np.ndarray] = field(default_factory=dict)
    output_grads: dict[str, np.ndarray] = field(default_factory=dict)


def prepare(
    spec: Layer, params: Mapping[str, Any], x: Any
) -> tuple[dict[str, np.ndarray], np.ndarray, tuple[int, ...]]:
    """Validate ``x`` against the spec and ``params`` against its parameter list.

    Returns copies ``(params, x, output_shape)``: float64, except ``x`` when the spec takes
    integer indices (:func:`harness.spec.read_input`: int64, checked in range); raises ``SpecError``.
    """
    x = read_input(spec, x)
    out_shape = spec.output_shape(x.shape)
    check_params(spec, x.shape, params)
    p = {k: np.asarray(params[k], dtype=np.float64) for k in named_params(spec, x.shape)}
    return p, x, out_shape


def prepare_cotangent(g: Any, out_shape: tuple[int, ...]) -> np.ndarray:
    """The upstream gradient for the output as float64; its shape must equal the output's."""
    g = np.asarray(g, dtype=np.float64)
    if g.shape != tuple(out_shape):
        raise SpecError(f"cotangent shape {g.shape} must equal the network's output shape {tuple(out_shape)}")
    return g


def prepare_target(loss: Loss, target: Any, out_shape: tuple[int, ...]) -> np.ndarray:
    """The loss target: integer labels stay integer, anything else becomes float64."""
    t = np.asarray(target)
    check_target(loss, out_shape, t)
    return t if np.issubdtype(t.dtype, np.integer) else t.astype(np.float64)
