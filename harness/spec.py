"""Layer specs: the one description of an architecture that both references are built from.

A spec is a tree of frozen dataclasses. Leaves are layers (``Conv2d``, ``ReLU`` ...);
``Sequential`` and ``Residual`` nest them. Every layer has a ``name``; the canonical
name of a parameter is the dotted path of its layer plus the parameter's local name,
exactly as in a PyTorch ``state_dict`` (``conv1.weight``, ``layer1.0.bn1.running_mean``).

Conventions are PyTorch's throughout: data NCHW, conv weight ``(out, in/groups, kh, kw)``,
cross-correlation, Linear weight ``(out, in)``, Flatten in C,H,W order.

Shapes always include the batch axis: ``Conv2d.output_shape((N, C, H, W))``.
Mistakes raise :class:`SpecError` with a one-line message that names the layer.

This module needs only numpy (for :func:`init_params`), so ``import harness`` stays light.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Iterator, Mapping, Union

import numpy as np

Shape = tuple[int, ...]
Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))
PaddingArg = Union[int, tuple[int, int], Pads, str]

_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]+$")


class SpecError(ValueError):
    """A mistake in a spec, its input shape or its parameters; the message names the layer."""


@dataclass(frozen=True)
class ParamInfo:
    """Shape of one parameter or buffer; ``trainable=False`` marks buffers (running stats,
    dropout masks), which have no gradient."""

    shape: Shape
    trainable: bool = True


# --------------------------------------------------------------------------- helpers


def _pair(value: Any, what: str, layer: str, minimum: int) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        pair = (int(value[0]), int(value[1]))
    else:
        raise SpecError(f"layer '{layer}': {what} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise SpecError(f"layer '{layer}': {what} must be >= {minimum}, got {value!r}")
    return pair


def _padding(value: Any, layer: str) -> Pads | str:
    """Normalise a conv padding to ``((top, bottom), (left, right))`` or 'same' / 'valid'."""
    if isinstance(value, str):
        if value not in ("same", "valid"):
            raise SpecError(f"layer '{layer}': padding string must be 'same' or 'valid', got {value!r}")
        return value
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (tuple, list)) for v in value)
    ):
        (t, b), (l, r) = _pair(value[0], "padding (top, bottom)", layer, 0), _pair(
            value[1], "padding (left, right)", layer, 0
        )
        return ((t, b), (l, r))
    ph, pw = _pair(value, "padding", layer, 0)
    return ((ph, ph), (pw, pw))


def _window_out(size: int, lo: int, hi: int, k: int, s: int, d: int) -> int:
    return (size + lo + hi - d * (k - 1) - 1) // s + 1


def _check_name(name: Any, kind: str, allow_empty: bool = False) -> None:
    if not isinstance(name, str) or (name == "" and not allow_empty) or (
        name and not _NAME_RE.match(name)
    ):
        raise SpecError(
            f"{kind} name {name!r} is not valid: use letters, digits, '_' or '-' "
            "(no dots; dotted paths are built from nesting)"
        )


def join_path(prefix: str, name: str) -> str:
    """Dotted path of child ``name`` under ``prefix``; an empty part adds nothing."""
    return f"{prefix}.{name}" if prefix and name else (prefix or name)


def _shape(input_shape: Any, path: str) -> Shape:
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError:
        raise SpecError(f"layer '{path}': input shape must be a tuple of ints, got {input_shape!r}") from None
    if any(s <= 0 for s in shape):
        raise SpecError(f"layer '{path}': input shape {shape} has a non-positive size")
    return shape


def _expect_rank(shape: Shape, ranks: tuple[int, ...], layout: str, path: str) -> None:
    if len(shape) not in ranks:
        raise SpecError(f"layer '{path}': expects input {layout}, got shape {shape} (rank {len(shape)})")


# --------------------------------------------------------------------------- base


class Layer:
    """Base of all specs. Subclasses are frozen dataclasses with a ``name`` field."""

    kind: ClassVar[str]
    name: str

    def output_shape(self, input_shape: Shape) -> Shape:
        """Shape of the output for an input of ``input_shape`` (batch axis included)."""
        return self._visit(_shape(input_shape, self.name or "<root>"), self.name, None)

    def _infer(self, shape: Shape, path: str) -> Shape:  # pragma: no cover - abstract
        raise NotImplementedError

    def _visit(self, shape: Shape, path: str, record: dict | None) -> Shape:
        """Infer the output shape; with ``record``, also store ``{path: (in, out)}`` for this
        layer and every layer inside it, in forward order."""
        out = self._infer(shape, path)
        if record is not None:
            record[path] = (shape, out)
        return out

    def local_params(self, input_shape: Shape) -> dict[str, ParamInfo]:
        """Parameters and buffers of this layer alone, by local name (``weight``, ``bias`` ...)."""
        return {}

    def children(self) -> tuple[Layer, ...]:
        """Direct sub-layers, in forward order (empty for leaves)."""
        return ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description; :func:`from_dict` inverts it."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, Layer):
                value = value.to_dict()
            elif isinstance(value, tuple) and value and all(isinstance(v, Layer) for v in value):
                value = [v.to_dict() for v in value]
            out[f.name] = _jsonable(value)
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


_ELEMENTWISE_DOC = "Elementwise; any input shape, output has the same shape."


# --------------------------------------------------------------------------- convolution


@dataclass(frozen=True)
class Conv2d(Layer):
    """2-D cross-correlation. Input ``(N, C_in, H, W)`` -> ``(N, C_out, H', W')``.

    weight ``(C_out, C_in/groups, kh, kw)``, bias ``(C_out,)``.
    ``padding``: int, ``(ph, pw)``, explicit ``((top, bottom), (left, right))``, ``"valid"``
    (no padding) or ``"same"`` (TensorFlow's rule: output size ``ceil(H/stride)``, the odd
    pixel of padding at the bottom/right; for stride 1 this is PyTorch's ``"same"``).
    """

    kind: ClassVar[str] = "Conv2d"
    name: str
    in_channels: int
    out_channels: int
    kernel_size: Any
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    bias: bool = True

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")
        n = self.name
        for attr in ("in_channels", "out_channels", "groups"):
            v = getattr(self, attr)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise SpecError(f"layer '{n}': {attr} must be a positive int, got {v!r}")
        object.__setattr__(self, "kernel_size", _pair(self.kernel_size, "kernel_size", n, 1))
        object.__setattr__(self, "stride", _pair(self.stride, "stride", n, 1))
        object.__setattr__(self, "dilation", _pair(self.dilation, "dilation", n, 1))
        object.__setattr__(self, "padding", _padding(self.padding, n))
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise SpecError(
                f"layer '{n}': groups={self.groups} must divide in_channels={self.in_channels} "
                f"and out_channels={self.out_channels}"
            )

    def pads(self, hw: tuple[int, int]) -> Pads:
        """Explicit ``((top, bottom), (left, right))`` padding for an input of spatial size ``hw``."""
        if self.padding == "valid":
            return ((0, 0), (0, 0))
        if self.padding == "same":
            out = []
            for size, k, s, d in zip(hw, self.kernel_size, self.stride, self.dilation):
                total = max((math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size, 0)
                out.append((total // 2, total - total // 2))
            return (out[0], out[1])
        return self.padding  # type: ignore[return-value]

    def _infer(self, shape: Shape, path: str) -> Shape:
        _expect_rank(shape, (4,), "(N, C, H, W)", path)
        if shape[1] != self.in_channels:
            raise SpecError(
                f"layer '{path}': in_channels={self.in_channels} but the input has {shape[1]} "
                f"channels (input shape {shape}, NCHW)"
            )
        pads = self.pads(shape[2:])
        hw = []
        for axis, size, (lo, hi), k, s, d in zip("HW", shape[2:], pads, self.kernel_size, self.stride, self.dilation):
            o = _window_out(size, lo, hi, k, s, d)
            if o < 1:
                raise SpecError(
                    f"layer '{path}': input {axis}={size} with padding ({lo}, {hi}) is smaller than "
                    f"the dilated kernel {d * (k - 1) + 1}"
                )
            hw.append(o)
        return (shape[0], self.out_channels, hw[0], hw[1])

    def local_params(self, input_shape: Shape) -> dict[str, ParamInfo]:
        p = {
            "weight": ParamInfo(
                (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
            )
        }
        if self.bias:
            p["bias"] = ParamInfo((self.out_channels,))
        return p


# --------------------------------------------------------------------------- pooling


@dataclass(frozen=True)
class _Pool2d(Layer):
    name: str
    kernel_size: Any
    stride: Any = None
    padding: Any = 0

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")
        n = self.name
        object.__setattr__(self, "kernel_size", _pair(self.kernel_size, "kernel_size", n, 1))
        stride = self.kernel_size if self.stride is None else self.stride
        object.__setattr__(self, "stride", _pair(stride, "stride", n, 1))
        object.__setattr__(self, "padding", _pair(self.padding, "padding", n, 0))
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise SpecError(
                f"layer '{n}': padding {self.padding} must be at most half the kernel "
                f"{self.kernel_size} (otherwise a window can lie wholly in the padding)"
            )

    def _dilation(self) -> tuple[int, int]:
        return (1, 1)

    def _infer(self, shape: Shape, path: str) -> Shape:
        _expect_rank(shape, (4,), "(N, C, H, W)", path)
        hw = []
        for axis, size, p, k, s, d in zip(
            "HW", shape[2:], self.padding, self.kernel_size, self.stride, self._dilation()
        ):
            o = _window_out(size, p, p, k, s, d)
            if o < 1:
                raise SpecError(
                    f"layer '{path}': input {axis}={size} with padding {p} is smaller than the window {d * (k - 1) + 1}"
                )
            # with dilation a window can skip every real pixel: its max is -inf, its gradient
            # undefined (PyTorch's CPU max_pool2d backward corrupts memory on it)
            taps = (np.arange(o) * s - p)[:, None] + np.arange(k) * d
            empty = np.flatnonzero(~((taps >= 0) & (taps < size)).any(axis=1))
            if empty.size:
                raise SpecError(
                    f"layer '{path}': the window at output {axis}={int(empty[0])} lies wholly in the "
                    f"padding (kernel {k}, dilation {d}, padding {p}, input {axis}={size}); "
                    "reduce the padding or the dilation"
                )
            hw.append(o)
        return (shape[0], shape[1], hw[0], hw[1])


@dataclass(frozen=True)
class MaxPool2d(_Pool2d):
    """Max pooling, ``(N, C, H, W)`` -> ``(N, C, H', W')``; padding counts as -inf.

    ``stride`` defaults to ``kernel_size``; a smaller stride gives overlapping windows.
    """

    kind: ClassVar[str] = "MaxPool2d"
    dilation: Any = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "dilation", _pair(self.dilation, "dilation", self.name, 1))

    def _dilation(self) -> tuple[int, int]:
        return self.dilation


@dataclass(frozen=True)
class AvgPool2d(_Pool2d):
    """Average pooling, ``(N, C, H, W)`` -> ``(N, C, H', W')``.

    ``count_include_pad=True`` divides by the full window (PyTorch's default); ``False``
    divides by the number of real (unpadded) pixels in the window.
    """

    kind: ClassVar[str] = "AvgPool2d"
    count_include_pad: bool = True


@dataclass(frozen=True)
class GlobalAvgPool2d(Layer):
    """Mean over H and W: ``(N, C, H, W)`` -> ``(N, C)``, or ``(N, C, 1, 1)`` with ``keepdims``."""

    kind: ClassVar[str] = "GlobalAvgPool2d"
    name: str
    keepdims: bool = False

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")

    def _infer(self, shape: Shape, path: str) -> Shape:
        _expect_rank(shape, (4,), "(N, C, H, W)", path)
        return (shape[0], shape[1], 1, 1) if self.keepdims else (shape[0], shape[1])


# --------------------------------------------------------------------------- activations


@dataclass(frozen=True)
class _Elementwise(Layer):
    name: str

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")

    def _infer(self, shape: Shape, path: str) -> Shape:
        return shape


@dataclass(frozen=True)
class ReLU(_Elementwise):
    """max(x, 0). Elementwise; any input shape, output has the same shape."""

    kind: ClassVar[str] = "ReLU"


@dataclass(frozen=True)
class LeakyReLU(_Elementwise):
    """x if x > 0 else negative_slope * x. Elementwise; any shape."""

    kind: ClassVar[str] = "LeakyReLU"
    negative_slope: float = 0.01


@dataclass(frozen=True)
class ELU(_Elementwise):
    """x if x > 0 else alpha * (exp(x) - 1). Elementwise; any shape."""

    kind: ClassVar[str] = "ELU"
    alpha: float = 1.0


@dataclass(frozen=True)
class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x)). Elementwise; any shape."""

    kind: ClassVar[str] = "Sigmoid"


@dataclass(frozen=True)
class Tanh(_Elementwise):
    """tanh(x). Elementwise; any shape."""

    kind: ClassVar[str] = "Tanh"


@dataclass(frozen=True)
class GELU(_Elementwise):
    """x * Phi(x) with ``approximate="none"`` (erf), or the tanh approximation with
    ``approximate="tanh"``. Elementwise; any shape."""

    kind: ClassVar[str] = "GELU"
    approximate: str = "none"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.approximate not in ("none", "tanh"):
            raise SpecError(
                f"layer '{self.name}': approximate must be 'none' or 'tanh', got {self.approximate!r}"
            )


@dataclass(frozen=True)
class Softmax(_Elementwise):
    """exp(x) / sum(exp(x)) along ``axis`` (default the last). Any shape; same shape out."""

    kind: ClassVar[str] = "Softmax"
    axis: int = -1

    def _infer(self, shape: Shape, path: str) -> Shape:
        if not -len(shape) <= self.axis < len(shape):
            raise SpecError(f"layer '{path}': axis {self.axis} is out of range for input shape {shape}")
        return shape


# --------------------------------------------------------------------------- shape layers


@dataclass(frozen=True)
class Flatten(Layer):
    """``(N, C, H, W)`` (or any ``(N, ...)``) -> ``(N, C*H*W)`` in C,H,W (row-major) order."""

    kind: ClassVar[str] = "Flatten"
    name: str

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")

    def _infer(self, shape: Shape, path: str) -> Shape:
        if len(shape) < 2:
            raise SpecError(f"layer '{path}': expects input (N, ...), got shape {shape}")
        return (shape[0], int(np.prod(shape[1:])))


@dataclass(frozen=True)
class Linear(Layer):
    """``(N, ..., in_features)`` -> ``(N, ..., out_features)``: y = x W^T + b.

    weight ``(out_features, in_features)``, bias ``(out_features,)``.
    """

    kind: ClassVar[str] = "Linear"
    name: str
    in_features: int
    out_features: int
    bias: bool = True

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")
        for attr in ("in_features", "out_features"):
            v = getattr(self, attr)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise SpecError(f"layer '{self.name}': {attr} must be a positive int, got {v!r}")

    def _infer(self, shape: Shape, path: str) -> Shape:
        if len(shape) < 2:
            raise SpecError(f"layer '{path}': expects input (N, in_features), got shape {shape}")
        if shape[-1] != self.in_features:
            hint = " (insert a Flatten before it?)" if len(shape) == 4 else ""
            raise SpecError(
                f"layer '{path}': in_features={self.in_features} but the input has "
                f"{shape[-1]} features (input shape {shape}){hint}"
            )
        return (*shape[:-1], self.out_features)

    def local_params(self, input_shape: Shape) -> dict[str, ParamInfo]:
        p = {"weight": ParamInfo((self.out_features, self.in_features))}
        if self.bias:
            p["bias"] = ParamInfo((self.out_features,))
        return p


# --------------------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class _BatchNorm(Layer):
    name: str
    num_features: int
    eps: float = 1e-5
    momentum: float = 0.1
    affine: bool = True
    training: bool = True
    over: str = "channel"

    _ranks: ClassVar[tuple[int, ...]] = ()
    _layout: ClassVar[str] = ""

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")
        if self.over not in ("channel", "feature"):
            raise SpecError(f"layer '{self.name}': over must be 'channel' or 'feature', got {self.over!r}")
        if not isinstance(self.num_features, (int, np.integer)) or self.num_features < 1:
            raise SpecError(f"layer '{self.name}': num_features must be a positive int, got {self.num_features!r}")
        if not self.eps > 0:
            raise SpecError(f"layer '{self.name}': eps must be > 0, got {self.eps!r}")

    def _infer(self, shape: Shape, path: str) -> Shape:
        _expect_rank(shape, self._ranks, self._layout, path)
        if shape[1] != self.num_features:
            raise SpecError(
                f"layer '{path}': num_features={self.num_features} but the input has "
                f"{shape[1]} channels (input shape {shape})"
            )
        if self.training and int(np.prod([shape[a] for a in self.reduce_axes(shape)])) < 2:
            raise SpecError(
                f"layer '{path}': training-mode batch norm needs more than one value per "
                f"{self.over}, input shape {shape}"
            )
        return shape

    def reduce_axes(self, shape: Shape) -> tuple[int, ...]:
        """Axes the batch statistics are taken over: all but the channel axis 1, or only the
        batch axis 0 with ``over="feature"``."""
        if self.over == "feature":
            return (0,)
        return tuple(a for a in range(len(shape)) if a != 1)

    def local_params(self, input_shape: Shape) -> dict[str, ParamInfo]:
        c = (self.num_features,) if self.over == "channel" else tuple(input_shape[1:])
        p = {"weight": ParamInfo(c), "bias": ParamInfo(c)} if self.affine else {}
        p["running_mean"] = ParamInfo(c, trainable=False)
        p["running_var"] = ParamInfo(c, trainable=False)
        return p


@dataclass(frozen=True)
class BatchNorm2d(_BatchNorm):
    """Per-channel batch norm over ``(N, C, H, W)``; shape preserved.

    ``training=True`` normalises with the batch mean and biased variance (and the
    references report updated running statistics, with the unbiased variance, in
    ``Result.state``); ``training=False`` uses ``running_mean`` / ``running_var``.
    weight, bias, running_mean, running_var: ``(C,)``.

    ``over="feature"`` is batch norm over flattened features, as code that applies a 1-D
    batch norm to conv maps computes it: every (c, h, w) has its own statistics (over N) and
    parameters of shape ``(C, H, W)``.
    """

    kind: ClassVar[str] = "BatchNorm2d"
    _ranks: ClassVar[tuple[int, ...]] = (4,)
    _layout: ClassVar[str] = "(N, C, H, W)"


@dataclass(frozen=True)
class BatchNorm1d(_BatchNorm):
    """Per-feature batch norm over ``(N, C)`` or ``(N, C, L)``; otherwise as BatchNorm2d."""

    kind: ClassVar[str] = "BatchNorm1d"
    _ranks: ClassVar[tuple[int, ...]] = (2, 3)
    _layout: ClassVar[str] = "(N, C) or (N, C, L)"


@dataclass(frozen=True)
class LayerNorm(Layer):
    """Normalise over the trailing ``normalized_shape`` axes (biased variance); shape preserved.

    weight, bias: ``normalized_shape``.
    """

    kind: ClassVar[str] = "LayerNorm"
    name: str
    normalized_shape: Any
    eps: float = 1e-5
    elementwise_affine: bool = True

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")
        ns = self.normalized_shape
        ns = (ns,) if isinstance(ns, (int, np.integer)) else ns
        if isinstance(ns, str) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in ns
        ):
            raise SpecError(
                f"layer '{self.name}': normalized_shape must be an int or a tuple of ints, "
                f"got {self.normalized_shape!r}"
            )
        ns = tuple(int(v) for v in ns)
        if not ns or min(ns) < 1:
            raise SpecError(f"layer '{self.name}': normalized_shape must be non-empty and positive, got {ns}")
        object.__setattr__(self, "normalized_shape", ns)

    def _infer(self, shape: Shape, path: str) -> Shape:
        k = len(self.normalized_shape)
        if len(shape) <= k or shape[-k:] != self.normalized_shape:
            raise SpecError(
                f"layer '{path}': normalized_shape={self.normalized_shape} must equal the trailing "
                f"axes of the input, got input shape {shape}"
            )
        return shape

    def local_params(self, input_shape: Shape) -> dict[str, ParamInfo]:
        if not self.elementwise_affine:
            return {}
        return {"weight": ParamInfo(self.normalized_shape), "bias": ParamInfo(self.normalized_shape)}


@dataclass(frozen=True)
class Dropout(Layer):
    """Inverted dropout with an explicit mask: y = x * mask / (1 - p); shape preserved.

    In training mode the 0/1 buffer ``mask`` has the full input shape (batch included)
    and is supplied with the parameters, so every witness drops the same units.
    ``training=False`` is the identity. ``inverted=False``: dropout that does not scale in
    training (y = x * mask) and scales by (1 - p) at test time instead.
    """

    kind: ClassVar[str] = "Dropout"
    name: str
    p: float = 0.5
    training: bool = True
    inverted: bool = True

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")
        if not 0.0 <= self.p < 1.0:
            raise SpecError(f"layer '{self.name}': p must be in [0, 1), got {self.p!r}")

    def _infer(self, shape: Shape, path: str) -> Shape:
        return shape

    def local_params(self, input_shape: Shape) -> dict[str, ParamInfo]:
        return {"mask": ParamInfo(tuple(input_shape), trainable=False)} if self.training else {}


# --------------------------------------------------------------------------- composites


def _layers(value: Any, what: str, owner: str) -> tuple[Layer, ...]:
    if isinstance(value, Layer):
        value = (value,)
    try:
        layers = tuple(value)
    except TypeError:
        raise SpecError(f"'{owner}': {what} must be a sequence of layers, got {value!r}") from None
    for layer in layers:
        if not isinstance(layer, Layer):
            raise SpecError(f"'{owner}': {what} holds {layer!r}, which is not a layer spec")
    seen: set[str] = set()
    for layer in layers:
        if layer.name and layer.name in seen:
            raise SpecError(f"'{owner}': two layers are named '{layer.name}'")
        seen.add(layer.name)
    return layers


@dataclass(frozen=True)
class Sequential(Layer):
    """Layers applied in order. ``name=""`` (the usual root) adds no prefix to its children's
    names, so a top-level ``Conv2d("conv1", ...)`` owns ``conv1.weight``."""

    kind: ClassVar[str] = "Sequential"
    layers: Any
    name: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name, "Sequential", allow_empty=True)
        object.__setattr__(self, "layers", _layers(self.layers, "layers", self.name or "<root>"))
        if not self.layers:
            raise SpecError(f"Sequential '{self.name or '<root>'}' has no layers")

    def children(self) -> tuple[Layer, ...]:
        return self.layers

    def _visit(self, shape: Shape, path: str, record: dict | None) -> Shape:
        if record is not None and path:
            record[path] = None  # reserve the pre-order slot; filled once the output is known
        first, prev = shape, None
        for layer in self.layers:
            try:
                new = layer._visit(shape, join_path(path, layer.name), record)
            except SpecError as e:
                if prev is None or "(after " in str(e):
                    raise
                # the usual cause is the layer before: say which one and what it produced
                raise SpecError(f"{e} (after '{join_path(path, prev.name)}', output {shape})") from None
            prev, shape = layer, new
        if record is not None and path:
            record[path] = (first, shape)
        return shape


@dataclass(frozen=True)
class Residual(Layer):
    """``post(block(x) + shortcut(x))``; ``shortcut=None`` is the identity.

    ``name=""`` is allowed for a root residual (its children's names then have no prefix).

    ``block`` and ``post`` are sequences of layers named under this layer
    (``layer1.0.conv1``); ``shortcut`` is one layer, typically a 1x1 ``Conv2d`` or a
    ``Sequential`` named ``downsample`` holding conv + batch norm (torchvision's naming).
    The block's and the shortcut's output shapes must be equal.
    """

    kind: ClassVar[str] = "Residual"
    name: str
    block: Any
    shortcut: Any = None
    post: Any = ()

    def __post_init__(self) -> None:
        _check_name(self.name, "Residual", allow_empty=True)
        object.__setattr__(self, "block", _layers(self.block, "block", self.name))
        if not self.block:
            raise SpecError(f"Residual '{self.name}' has an empty block")
        object.__setattr__(self, "post", _layers(self.post, "post", self.name))
        if self.shortcut is not None and not isinstance(self.shortcut, Layer):
            raise SpecError(f"Residual '{self.name}': shortcut must be a layer spec or None, got {self.shortcut!r}")
        _layers(self.children(), "children", self.name)  # names unique across block, shortcut, post

    def children(self) -> tuple[Layer, ...]:
        sc = (self.shortcut,) if self.shortcut is not None else ()
        return (*self.block, *sc, *self.post)

    def _visit(self, shape: Shape, path: str, record: dict | None) -> Shape:
        if record is not None and path:
            record[path] = None  # pre-order slot
        main = Sequential(self.block)._visit(shape, path, record)
        side = shape
        if self.shortcut is not None:
            side = self.shortcut._visit(shape, join_path(path, self.shortcut.name), record)
        if main != side:
            what = f"shortcut '{join_path(path, self.shortcut.name)}'" if self.shortcut else "identity shortcut"
            raise SpecError(
                f"layer '{path}': the block's output shape {main} differs from the {what}'s "
                f"{side}; a 1x1 Conv2d shortcut with the block's stride and channels fixes it"
            )
        out = Sequential(self.post)._visit(main, path, record) if self.post else main
        if record is not None and path:
            record[path] = (shape, out)
        return out


# --------------------------------------------------------------------------- losses


@dataclass(frozen=True)
class Loss:
    """Base of the loss specs: ``loss(output, target) -> scalar``."""

    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **{f.name: getattr(self, f.name) for f in fields(self)}}

    def _check_reduction(self) -> None:
        if getattr(self, "reduction", "mean") not in ("mean", "sum"):
            raise SpecError(f"{self.kind}: reduction must be 'mean' or 'sum', got {self.reduction!r}")  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SoftmaxCrossEntropy(Loss):
    """Cross-entropy of softmax(logits ``(N, K)``) with integer labels ``(N,)`` or
    probabilities ``(N, K)``; ``reduction`` "mean" divides by N. ``log_eps``: the epsilon
    some code adds inside the log of its loss value, -log(p + log_eps); the gradient is the
    textbook one, (p - target) (/ N), as such code computes it."""

    kind: ClassVar[str] = "SoftmaxCrossEntropy"
    reduction: str = "mean"
    log_eps: float = 0.0

    def __post_init__(self) -> None:
        self._check_reduction()
        if not 0.0 <= self.log_eps < 1.0:
            raise SpecError(f"SoftmaxCrossEntropy: log_eps must be in [0, 1), got {self.log_eps!r}")


@dataclass(frozen=True)
class MSE(Loss):
    """Squared error sum((output - target)**2), divided by the element count if "mean"."""

    kind: ClassVar[str] = "MSE"
    reduction: str = "mean"

    def __post_init__(self) -> None:
        self._check_reduction()


@dataclass(frozen=True)
class Projection(Loss):
    """<output, g>: the target is the cotangent g itself (same shape as the output), so the
    gradient arriving at the output is exactly g."""

    kind: ClassVar[str] = "Projection"


def check_target(loss: Loss, output_shape: Shape, target: np.ndarray) -> None:
    """Raise :class:`SpecError` if ``target`` does not fit ``loss`` for this output shape."""
    t = np.asarray(target)
    if isinstance(loss, SoftmaxCrossEntropy):
        if len(output_shape) != 2:
            raise SpecError(f"SoftmaxCrossEntropy expects logits (N, K), the network outputs {output_shape}")
        n, k = output_shape
        if t.shape == (n,):
            if not np.issubdtype(t.dtype, np.integer) or t.min() < 0 or t.max() >= k:
                raise SpecError(f"SoftmaxCrossEntropy: labels must be integers in [0, {k}), got dtype {t.dtype}, range [{t.min()}, {t.max()}]")
            return
        if t.shape != (n, k):
            raise SpecError(f"SoftmaxCrossEntropy: target must be labels ({n},) or probabilities ({n}, {k}), got shape {t.shape}")
        return
    if t.shape != tuple(output_shape):
        raise SpecError(f"{loss.kind}: target shape {t.shape} must equal the output shape {tuple(output_shape)}")


# --------------------------------------------------------------------------- the tree


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
    """A small input that fits ``spec`` when its first layer tells the sizes (a Conv2d, a
    Linear, a per-channel batch norm or a layer norm: every layer whose parameters fix the
    input's channels or features), else None: batch 2 (3 for a Linear), H != W so the two
    cannot be confused, and room for the dilated kernel. A per-feature batch norm's
    parameters (and a dropout's mask) have the input's shape, which its spec does not tell."""
    first = next((layer for _, layer in walk(spec) if not layer.children()), spec)
    if isinstance(first, Conv2d):
        (dh, dw), (kh, kw) = first.dilation, first.kernel_size
        return (2, first.in_channels, max(7, dh * (kh - 1) + 3), max(6, dw * (kw - 1) + 2))
    if isinstance(first, Linear):
        return (3, first.in_features)
    if isinstance(first, BatchNorm2d) and first.over == "channel":
        return (2, first.num_features, 7, 6)
    if isinstance(first, BatchNorm1d):  # (N, C): over="feature" is the same there
        return (4, first.num_features)
    if isinstance(first, LayerNorm):
        return (3, *first.normalized_shape)
    return None


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


def init_params(spec: Layer, input_shape: Shape, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float64 parameters for ``spec`` (PyTorch-like fan-in scaling), deterministic in
    ``seed``. Batch-norm weights and running statistics are randomised too (not 1 and 0), so a
    check cannot pass by accident; dropout masks are random 0/1 with the layer's rate."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, info in named_params(spec, input_shape).items():
        local = name.rsplit(".", 1)[1]
        shape = info.shape
        if local == "mask":
            layer = dict(walk(spec))[name.rsplit(".", 1)[0]]
            out[name] = (rng.random(shape) >= layer.p).astype(np.float64)
        elif local == "running_var":
            out[name] = rng.uniform(0.5, 2.0, shape)
        elif local == "running_mean":
            out[name] = rng.normal(0.0, 0.5, shape)
        elif len(shape) == 1 or local == "bias":
            base = 1.0 if local == "weight" else 0.0  # norm-layer scales near 1
            out[name] = base + rng.uniform(-0.5, 0.5, shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            bound = 1.0 / math.sqrt(fan_in)
            out[name] = rng.uniform(-bound, bound, shape) * math.sqrt(3.0)
    return out


# --------------------------------------------------------------------------- serialisation

LAYER_KINDS: dict[str, type[Layer]] = {
    cls.kind: cls
    for cls in (
        Conv2d, MaxPool2d, AvgPool2d, GlobalAvgPool2d, ReLU, LeakyReLU, ELU, Sigmoid, Tanh,
        GELU, Softmax, Flatten, Linear, BatchNorm2d, BatchNorm1d, LayerNorm, Dropout,
        Sequential, Residual,
    )
}
LOSS_KINDS: dict[str, type[Loss]] = {c.kind: c for c in (SoftmaxCrossEntropy, MSE, Projection)}


def _tuplify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


def from_dict(data: Mapping[str, Any]) -> Layer | Loss:
    """Rebuild a layer or loss spec from :meth:`Layer.to_dict` / :meth:`Loss.to_dict` output."""
    data = dict(data)
    kind = data.pop("kind", None)
    cls: Any = LAYER_KINDS.get(kind) or LOSS_KINDS.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise SpecError(f"unknown spec kind {kind!r}; known: {sorted(LAYER_KINDS) + sorted(LOSS_KINDS)}")
    kwargs = {}
    for key, value in data.items():
        if key in ("layers", "block", "post"):
            value = tuple(from_dict(v) for v in value)
        elif key == "shortcut" and value is not None:
            value = from_dict(value)
        else:
            value = _tuplify(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise SpecError(f"{kind}: {e}") from None


__all__ = [
    "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "Dropout", "ELU", "Flatten", "GELU",
    "GlobalAvgPool2d", "Layer", "LayerNorm", "LeakyReLU", "Linear", "Loss", "MSE", "MaxPool2d",
    "ParamInfo", "Projection", "ReLU", "Residual", "Sequential", "Sigmoid", "Softmax",
    "SoftmaxCrossEntropy", "SpecError", "Tanh", "check_params", "check_target", "from_dict",
    "example_input_shape", "init_params", "join_path", "layer_shapes", "named_params", "walk",
]
