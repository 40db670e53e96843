"""What the adapters need to know about the attention family (the spec:
:mod:`harness.spec.attention`): which of its parameters take their shape from the input
(a scaled dot-product attention's ``key`` and ``value``, both kinds' ``key_padding_mask``), a
made-up input to list its parameters with, and the input shape the arrays a user kept imply
(so a check needs no ``input_shape=``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..spec import Layer, MultiheadAttention, ScaledDotProductAttention
from .layouts import Layout, LayoutError
from .refs import AdapterError

_WEIGHTS = ("in_proj_weight", "out_proj_weight")  # (out, in) canonically; in_out code stores them transposed


def shape_dependent(leaf: Layer, local: str) -> bool:
    """Whether parameter ``local`` of ``leaf`` has a shape that depends on the input's."""
    if isinstance(leaf, ScaledDotProductAttention):
        return local in ("key", "value", "key_padding_mask")
    return isinstance(leaf, MultiheadAttention) and local == "key_padding_mask"


def input_sized(leaf: Layer) -> bool:
    """Whether any parameter of ``leaf`` takes its shape from the input."""
    return isinstance(leaf, ScaledDotProductAttention) or (isinstance(leaf, MultiheadAttention) and leaf.key_padding)


def dummy_input(leaf: Layer) -> tuple[int, ...] | None:
    """An input to list an attention layer's parameters with (their shapes then exact only
    when not :func:`input_sized`), else None."""
    if isinstance(leaf, MultiheadAttention):
        return (2, 4, leaf.embed_dim)
    if isinstance(leaf, ScaledDotProductAttention):
        return (2, 4, 4)
    return None


def implied_input(spec: Layer | None, peek: Callable[[str], Any]) -> tuple[int, ...] | None:
    """The canonical input shape the arrays kept for ``spec`` imply (``peek(local)``: the
    user's value or None), or None: a scaled dot-product attention's query has its key's
    shape ``(N, ..., S, d)`` with T = S (T = S + 1 when ``kv_len`` fixes S, so the two axes
    differ); a multi-head attention's padding mask ``(N, T)`` gives ``(N, T, E)``."""
    if isinstance(spec, ScaledDotProductAttention):
        key = peek("key")
        if key is None or np.ndim(key) < 3:
            return None
        *lead, s, d = np.shape(key)
        return (*lead, s + 1 if spec.kv_len else s, d)
    if isinstance(spec, MultiheadAttention) and spec.key_padding:
        mask = peek("key_padding_mask")
        return (*np.shape(mask), spec.embed_dim) if mask is not None and np.ndim(mask) == 2 else None
    return None


def _transposed(leaf: Layer, local: str, value: np.ndarray, layout: Layout) -> bool:
    return isinstance(leaf, MultiheadAttention) and local in _WEIGHTS and layout.linear == "in_out" and value.ndim == 2


def is_padding(leaf: Layer, local: str) -> bool:
    """Whether ``local`` is an attention layer's padding mask."""
    return isinstance(leaf, (MultiheadAttention, ScaledDotProductAttention)) and local == "key_padding_mask"


def from_user(leaf: Layer, local: str, value: np.ndarray, layout: Layout, expected: tuple[int, ...]) -> np.ndarray:
    """An attention parameter in the user's layout -> canonical (before the generic
    :func:`~.layouts.param_from_user`): a multi-head attention's projection weights stored
    ``(in, out)`` under ``Layout(linear="in_out")`` transposed; a padding mask that marks the
    keys to attend (``Layout(padding_mask="keep")``) flipped to 1 = ignore. Other values as
    they are. A weight that only fits transposed is a :class:`LayoutError` naming the fix."""
    if _transposed(leaf, local, value, layout):
        return value.T
    if is_padding(leaf, local):
        return 1.0 - value if layout.padding_mask == "keep" else value
    if isinstance(leaf, MultiheadAttention) and local in _WEIGHTS and value.shape == expected[::-1] != expected:
        raise LayoutError(
            f"layer '{leaf.name}': parameter '{local}' has shape {value.shape} in the declared {layout}; expected "
            f"{expected} there (out, in); looks transposed: pass Layout(linear='in_out')"
        )
    return value


def refuse_bad_masks(wrapped: Any, input_shape: tuple[int, ...]) -> None:
    """Raise :class:`~harness.spec.SpecError` (a configuration error, before any user code
    runs) when an attention's padding mask the user's layer keeps is not 0/1 or hides every key
    from a query: the softmax has nothing to normalise and every witness would give NaN."""
    from ..spec import SpecError, layer_shapes, walk

    spec = wrapped.spec
    padded = [(path, leaf) for path, leaf in walk(spec) if getattr(leaf, "key_padding", False)] if spec else []
    if not padded:
        return
    params = wrapped.get_params()  # by the wrapper's names: local for one layer, relative to a span
    shapes = layer_shapes(spec, input_shape)
    prefix = f"{spec.name}." if spec.name else ""
    for path, leaf in padded:
        local = "" if leaf is spec else path[len(prefix) :] + "."
        problem = leaf.value_problem(shapes[path][0], lambda k, local=local: params[local + k], path)
        if problem:
            raise SpecError(problem + " (the mask the code is given, read in the declared " + str(wrapped.layout) + ")")


def join_axis(leaf: Layer, local: str, layout: Layout) -> int:
    """The axis along which a parameter kept in parts (``in_proj_weight`` as query, key and
    value projections; a recurrent layer's stacked gate blocks as one array per gate) is
    joined, in the user's layout: the output axis, last for an ``(in, out)`` weight and for a
    bias (``(H,)``, or numpy-ml's ``(1, H)``)."""
    if local.startswith("bias") or local.endswith("_bias"):
        return -1
    weights = local in _WEIGHTS if isinstance(leaf, MultiheadAttention) else local in ("weight_ih", "weight_hh")
    return -1 if weights and layout.linear == "in_out" else 0


def to_user(leaf: Layer, local: str, value: np.ndarray, layout: Layout) -> np.ndarray:
    """A canonical attention parameter -> the user's layout; the inverse of :func:`from_user`
    (applied before the generic :func:`~.layouts.param_to_user`)."""
    if _transposed(leaf, local, value, layout):
        return np.ascontiguousarray(value.T)
    if is_padding(leaf, local) and layout.padding_mask == "keep":
        return 1.0 - value
    return value


def repeated_input(owner: str, value: Any) -> int:
    """The ``repeat_input=`` option: how many times the forward takes the input (1, or 3 for
    an attention's ``forward(query, key, value)`` checked as self-attention)."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise AdapterError(
            f"layer '{owner}': repeat_input= takes how many times the forward takes the input (3 for "
            f"forward(query, key, value) checked as self-attention), got {value!r}"
        )
    return int(value)


def summed_inputs(owner: str, result: Any, n: int) -> Any:
    """A backward's return with its first ``n`` input gradients (dquery, dkey, dvalue of the
    same input) summed into one: ``(dq, dk, dv)`` -> ``dq + dk + dv``, ``(dq, dk, dv, grads)``
    -> ``(dq + dk + dv, grads)``; ``n = 1``: as returned."""
    if n == 1:
        return result
    parts = list(result[:n]) if isinstance(result, (tuple, list)) else []
    if len(parts) < n or len({np.shape(p) for p in parts}) != 1 or any(p is None for p in parts):
        raise AdapterError(
            f"layer '{owner}': with repeat_input={n} the backward must return {n} input gradients of the input's "
            f"shape first (dquery, dkey, dvalue), got {type(result).__name__}"
            + (f" of {len(result)}" if isinstance(result, (tuple, list)) else "")
        )
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    rest = list(result[n:])
    return (total, *rest) if rest else total


__all__ = [
    "dummy_input",
    "from_user",
    "join_axis",
    "repeated_input",
    "summed_inputs",
    "implied_input",
    "input_sized",
    "shape_dependent",
    "to_user",
]
