"""Whole spec trees: :func:`walk` (every layer by dotted path), :func:`layer_shapes`,
:func:`named_params` (canonical parameter names, as in a PyTorch ``state_dict``),
:func:`example_input_shape`, :func:`check_params` and :func:`init_params`.

Everything here works through the :class:`~harness.spec.base.Layer` interface (``children``,
``local_params``, shape inference), so a new layer family needs nothing here; only
:func:`example_input_shape` knows the families whose first layer tells an input's size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from . import attention
from .base import Layer, ParamInfo, Shape, SpecError, _shape, join_path
from .containers import Residual
from .convolution import Conv1d, Conv2d, ConvTranspose2d
from .dropout import Dropout
from .embedding import Embedding
from .linear import Linear
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm, RMSNorm
from .recurrent import STATE_NAMES, _Recurrent


def walk(spec: Layer, prefix: str = "") -> Iterator[tuple[str, Layer]]:
    """Every layer as ``(dotted path, layer)`` in pre-order (a composite before its children),
    which is forward order. The root ``Sequential`` named ``""`` is not yielded."""
    path = join_path(prefix, spec.name)
    if path:
        yield path, spec
    for child in spec.children():
        yield from walk(child, path)


def layer_shapes(spec: Layer, input_shape: Shape) -> dict[str, tuple[Shape, Shape]]:
    """``{path: (input shape, output shape)}`` for every layer, in forward order (as :func:`walk`).

    Raises :class:`SpecError` naming the first layer whose input does not fit.
    """
    record: dict[str, tuple[Shape, Shape]] = {}
    spec._visit(_shape(input_shape, spec.name or "<root>"), spec.name, record)
    return record


def named_params(spec: Layer, input_shape: Shape) -> dict[str, ParamInfo]:
    """Every parameter and buffer by canonical name (``conv1.weight``), in forward order."""
    shapes = layer_shapes(spec, input_shape)
    out: dict[str, ParamInfo] = {}
    for path, layer in walk(spec):
        for local, info in layer.local_params(shapes[path][0]).items():
            out[f"{path}.{local}"] = info
    return out


def example_input_shape(spec: Layer) -> Shape | None:
    """A small input that fits ``spec`` when its first layer tells the sizes (a Conv2d, Conv1d
    or ConvTranspose2d, a Linear, a per-channel batch norm, a group norm, a layer or RMS norm,
    a recurrent layer: every layer whose parameters fix the input's channels or features), else
    None: batch 2 (3 for a Linear or a recurrent layer; 5 time steps), H != W so the two cannot
    be confused, and room for the dilated kernel (and for a transposed conv's padding). A
    per-feature batch norm's parameters (and a dropout's mask) have the input's shape, which its
    spec does not tell."""
    first = next((layer for _, layer in walk(spec) if not layer.children()), spec)
    if isinstance(first, Conv2d):
        (dh, dw), (kh, kw) = first.dilation, first.kernel_size
        return (2, first.in_channels, max(7, dh * (kh - 1) + 3), max(6, dw * (kw - 1) + 2))
    if isinstance(first, Conv1d):
        return (2, first.in_channels, max(9, first.dilation * (first.kernel_size - 1) + 3))
    if isinstance(first, ConvTranspose2d):  # 2 * padding rows are cut from what the input spreads to
        return (2, first.in_channels, max(5, 2 * first.padding[0] + 2), max(4, 2 * first.padding[1] + 1))
    if isinstance(first, GroupNorm):
        return (2, first.num_channels, 5, 4)
    if isinstance(first, RMSNorm):
        return (3, *first.normalized_shape)
    if isinstance(first, Linear):
        return (3, first.in_features)
    if isinstance(first, BatchNorm2d) and first.over == "channel":
        return (2, first.num_features, 7, 6)
    if isinstance(first, BatchNorm1d):  # (N, C): over="feature" is the same there
        return (4, first.num_features)
    if isinstance(first, LayerNorm):
        return (3, *first.normalized_shape)
    if isinstance(first, Embedding):  # indices (N, T): room for a repeated token and the padding index
        return (3, 5)
    if isinstance(first, _Recurrent):  # batch 3, 5 steps: N != T, so time-first data cannot pass as batch-first
        return (3, first.input_size) if first.step else (3, 5, first.input_size)
    return attention.example_shape(first)


def index_layer(spec: Layer) -> Layer | None:
    """The layer whose input is integer indices (``index_input``, an :class:`Embedding`)
    when it is ``spec``'s first leaf (the whole input is then indices, not differentiable),
    else None. Such a layer anywhere else is a :class:`SpecError`: its input would be another
    layer's float output (or, first in a residual block, summed with indices)."""
    leaves = [(path, layer) for path, layer in walk(spec) if not layer.children()] or [(spec.name, spec)]
    late = [path for path, layer in leaves[1:] if layer.index_input]
    if late:
        raise SpecError(
            f"layer '{late[0]}': an {type(dict(leaves)[late[0]]).__name__} takes integer indices, so it must be "
            "the network's first layer; here its input is another layer's output"
        )
    path, first = leaves[0]
    if not first.index_input:
        return None
    blocks = [p for p, layer in walk(spec) if isinstance(layer, Residual) and path.startswith(p + ".")]
    if blocks:
        raise SpecError(
            f"layer '{path}': an {type(first).__name__} takes integer indices; it cannot open the residual "
            f"block '{blocks[0]}' (the block's input, indices, would be added to its output)"
        )
    return first


def read_input(spec: Layer, x: Any) -> np.ndarray:
    """The network input ``x`` as the references and the engine hold it: int64 indices,
    checked for dtype and range, when ``spec`` takes indices (:func:`index_layer`); else a
    float64 array."""
    layer = index_layer(spec)
    if layer is None:
        return np.asarray(x, dtype=np.float64)
    path = next(p for p, l in walk(spec) if l is layer)
    return layer.read_indices(x, path)  # type: ignore[attr-defined]


def no_grad_masks(spec: Layer, input_shape: Shape) -> dict[str, np.ndarray]:
    """``{canonical name: bool mask}`` of the trainable parameters with entries whose gradient
    the spec defines as zero although the forward reads them (:meth:`Layer.no_grad`: an
    Embedding's padding row); parameters without any are left out."""
    shapes = layer_shapes(spec, input_shape)
    out: dict[str, np.ndarray] = {}
    for path, layer in walk(spec):
        for local, info in layer.local_params(shapes[path][0]).items():
            mask = layer.no_grad(local, info.shape) if info.trainable else None
            if mask is not None:
                out[f"{path}.{local}"] = mask
    return out


def check_params(spec: Layer, input_shape: Shape, params: Mapping[str, Any]) -> None:
    """Raise :class:`SpecError` listing missing, unexpected and mis-shaped parameters."""
    expected = named_params(spec, input_shape)
    missing = [k for k in expected if k not in params]
    extra = [k for k in params if k not in expected]
    wrong = [
        f"{k}: expected {expected[k].shape}, found {tuple(np.shape(params[k]))}"
        for k in expected
        if k in params and tuple(np.shape(params[k])) != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {missing}")
    if extra:
        problems.append(f"unexpected {extra}")
    if wrong:
        problems.append("wrong shape " + "; ".join(wrong))
    if problems:
        raise SpecError("parameters do not fit the spec: " + ", ".join(problems))
    shapes = layer_shapes(spec, input_shape)
    for path, layer in walk(spec):
        problem = layer.value_problem(shapes[path][0], lambda local, path=path: params[f"{path}.{local}"], path)
        if problem:
            raise SpecError(problem)


def init_params(spec: Layer, input_shape: Shape, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float64 parameters for ``spec`` (PyTorch-like fan-in scaling), deterministic in
    ``seed``. Batch-norm weights and running statistics are randomised too (not 1 and 0), so a
    check cannot pass by accident; dropout masks are random 0/1 with the layer's rate, attention
    padding masks random 0/1 leaving every query a visible key; a recurrent layer's states
    (``h0``, ``c0``, a cell's ``h``, ``c``) uniform in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, info in named_params(spec, input_shape).items():
        local = name.rsplit(".", 1)[1]
        shape = info.shape
        if local == "mask":
            layer = dict(walk(spec))[name.rsplit(".", 1)[0]]
            assert isinstance(layer, Dropout)  # the only kind with a mask
            out[name] = (rng.random(shape) >= layer.p).astype(np.float64)
        elif local == "key_padding_mask":  # every query keeps a visible key (softmax over none is undefined)
            layer = dict(walk(spec))[name.rsplit(".", 1)[0]]
            out[name] = attention.padding_mask(rng, shape, causal=getattr(layer, "causal", False))
        elif local in ("key", "value") and isinstance(
            dict(walk(spec))[name.rsplit(".", 1)[0]], attention.ScaledDotProductAttention
        ):
            out[name] = rng.standard_normal(shape)  # inputs, not weights: scores q.k/sqrt(d) of order 1
        elif local == "running_var":
            out[name] = rng.uniform(0.5, 2.0, shape)
        elif local == "running_mean":
            out[name] = rng.normal(0.0, 0.5, shape)
        elif local in STATE_NAMES and isinstance(dict(walk(spec))[name.rsplit(".", 1)[0]], _Recurrent):
            out[name] = rng.uniform(-0.5, 0.5, shape)  # a recurrent layer's initial (or previous) state: small
        elif len(shape) == 1 or local == "bias":
            base = 1.0 if local == "weight" else 0.0  # norm-layer scales near 1
            out[name] = base + rng.uniform(-0.5, 0.5, shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            bound = 1.0 / math.sqrt(fan_in)
            out[name] = rng.uniform(-bound, bound, shape) * math.sqrt(3.0)
    return out
