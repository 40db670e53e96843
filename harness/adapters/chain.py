"""A network's wrapped layers chained in spec order (Sequential and Residual trees).

Without the user's own network passes (``mode="chain"``),
:class:`~harness.adapters.network.WrappedNetwork` runs its wrapped layers itself:
:func:`chain_forward` walks the spec tree in pre-order, each leaf's output feeding the next
(a Residual computes ``post(block(x) + shortcut(x))``), and :func:`chain_backward` walks it
back, a Residual's sum sending its gradient to both branches. Both keep what each path
(composites too) produced or received, as the references' ``Result.outputs`` /
``output_grads`` do. Arrays are canonical float64 (data NCHW, features (N, F)).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..spec import Layer, Residual, join_path
from .wrapped import WrappedLayer


def chain_forward(
    layers: Mapping[str, WrappedLayer], outputs: dict[str, np.ndarray], node: Layer, path: str, x: np.ndarray
) -> np.ndarray:
    """``node`` (at ``path``) applied to ``x`` by the wrapped ``layers`` at its leaves;
    ``outputs[path]`` set for every non-empty path, in pre-order (a composite's slot first)."""
    if path:
        outputs[path] = None  # type: ignore[assignment]  # pre-order slot
    if not node.children():
        y = layers[path].forward(x)
    elif isinstance(node, Residual):  # post(block(x) + shortcut(x))
        main = _seq_forward(layers, outputs, node.block, path, x)
        side = (
            chain_forward(layers, outputs, node.shortcut, join_path(path, node.shortcut.name), x)
            if node.shortcut
            else x
        )
        y = _seq_forward(layers, outputs, node.post, path, main + side)
    else:
        y = _seq_forward(layers, outputs, node.children(), path, x)
    if path:
        outputs[path] = y
    return y


def _seq_forward(
    layers: Mapping[str, WrappedLayer],
    outputs: dict[str, np.ndarray],
    nodes: tuple[Layer, ...],
    path: str,
    x: np.ndarray,
) -> np.ndarray:
    for n in nodes:
        x = chain_forward(layers, outputs, n, join_path(path, n.name), x)
    return x


def chain_backward(
    layers: Mapping[str, WrappedLayer], output_grads: dict[str, np.ndarray], node: Layer, path: str, g: np.ndarray
) -> np.ndarray | None:
    """The gradient of ``node`` (at ``path``) with respect to its input, given ``g`` at its
    output, after a :func:`chain_forward`; ``output_grads[path]``: the ``g`` each path
    received. None when the first layer is declared ``input_grad=False``."""
    if path:
        output_grads[path] = g
    if not node.children():
        return layers[path].backward(g)
    if isinstance(node, Residual):  # the sum sends g to both branches
        after = _seq_backward(layers, output_grads, node.post, path, g)
        assert after is not None  # the post layers follow the block: never the first layer
        dx = _seq_backward(layers, output_grads, node.block, path, after)
        side = (
            chain_backward(layers, output_grads, node.shortcut, join_path(path, node.shortcut.name), after)
            if node.shortcut
            else after
        )
        return None if dx is None or side is None else dx + side  # None: a first layer with input_grad=False
    return _seq_backward(layers, output_grads, node.children(), path, g)


def _seq_backward(
    layers: Mapping[str, WrappedLayer],
    output_grads: dict[str, np.ndarray],
    nodes: tuple[Layer, ...],
    path: str,
    g: np.ndarray,
) -> np.ndarray | None:
    out: np.ndarray | None = g
    for n in reversed(nodes):
        assert out is not None  # None comes only from the first layer (_input_grad: input_grad=False)
        out = chain_backward(layers, output_grads, n, join_path(path, n.name), out)
    return out


__all__ = ["chain_backward", "chain_forward"]
