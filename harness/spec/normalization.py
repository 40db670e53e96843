"""The normalisation family: :class:`BatchNorm2d` and :class:`BatchNorm1d` (batch statistics
per channel, or per feature with ``over="feature"``; running statistics as buffers),
:class:`LayerNorm` and :class:`RMSNorm` over trailing axes, and :class:`GroupNorm` over
groups of channels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .base import Layer, ParamInfo, Shape, SpecError, _check_name, _expect_rank


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
        object.__setattr__(self, "normalized_shape", _normalized_shape(self.normalized_shape, self.name))
        _check_eps(self)

    def _infer(self, shape: Shape, path: str) -> Shape:
        return _trailing(self.normalized_shape, shape, path)

    def local_params(self, input_shape: Shape) -> dict[str, ParamInfo]:
        if not self.elementwise_affine:
            return {}
        return {"weight": ParamInfo(self.normalized_shape), "bias": ParamInfo(self.normalized_shape)}


def _normalized_shape(value: Any, name: str) -> tuple[int, ...]:
    ns = (value,) if isinstance(value, (int, np.integer)) else value
    if isinstance(ns, str) or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in ns):
        raise SpecError(f"layer '{name}': normalized_shape must be an int or a tuple of ints, got {value!r}")
    ns = tuple(int(v) for v in ns)
    if not ns or min(ns) < 1:
        raise SpecError(f"layer '{name}': normalized_shape must be non-empty and positive, got {ns}")
    return ns


def _trailing(normalized: tuple[int, ...], shape: Shape, path: str) -> Shape:
    k = len(normalized)
    if len(shape) <= k or shape[-k:] != normalized:
        raise SpecError(
            f"layer '{path}': normalized_shape={normalized} must equal the trailing "
            f"axes of the input, got input shape {shape}"
        )
    return shape


def _check_eps(layer: Any) -> None:
    eps = layer.eps
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)) or not eps > 0:
        raise SpecError(f"layer '{layer.name}': eps must be a number > 0, got {eps!r}")


@dataclass(frozen=True)
class RMSNorm(Layer):
    """Root-mean-square norm over the trailing ``normalized_shape`` axes; shape preserved:
    ``y = x / sqrt(mean(x**2) + eps) * weight`` (no mean subtracted, no bias).

    weight: ``normalized_shape`` (only with ``elementwise_affine``). PyTorch's ``eps=None``
    (``finfo(x.dtype).eps`` at run time) has no spec form: the spec's eps is a number, and
    the bridge maps None to the eps of the module's dtype.
    """

    kind: ClassVar[str] = "RMSNorm"
    name: str
    normalized_shape: Any
    eps: float = 1e-6
    elementwise_affine: bool = True

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")
        object.__setattr__(self, "normalized_shape", _normalized_shape(self.normalized_shape, self.name))
        _check_eps(self)

    def _infer(self, shape: Shape, path: str) -> Shape:
        return _trailing(self.normalized_shape, shape, path)

    def local_params(self, input_shape: Shape) -> dict[str, ParamInfo]:
        return {"weight": ParamInfo(self.normalized_shape)} if self.elementwise_affine else {}


@dataclass(frozen=True)
class GroupNorm(Layer):
    """Group norm over ``(N, C, *)``: the channels split into ``num_groups`` consecutive groups,
    each sample's group normalised over its channels and every position (biased variance),
    then a per-channel affine; shape preserved. weight, bias: ``(C,)`` (with ``affine``).
    """

    kind: ClassVar[str] = "GroupNorm"
    name: str
    num_groups: int
    num_channels: int
    eps: float = 1e-5
    affine: bool = True

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")
        for attr in ("num_groups", "num_channels"):
            v = getattr(self, attr)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise SpecError(f"layer '{self.name}': {attr} must be a positive int, got {v!r}")
        if self.num_channels % self.num_groups:
            raise SpecError(
                f"layer '{self.name}': num_groups={self.num_groups} must divide num_channels={self.num_channels}"
            )
        _check_eps(self)

    def _infer(self, shape: Shape, path: str) -> Shape:
        if len(shape) < 2:
            raise SpecError(f"layer '{path}': expects input (N, C, *), got shape {shape} (rank {len(shape)})")
        if shape[1] != self.num_channels:
            raise SpecError(
                f"layer '{path}': num_channels={self.num_channels} but the input has {shape[1]} "
                f"channels (input shape {shape})"
            )
        if self.num_channels // self.num_groups * int(np.prod(shape[2:])) < 2:
            raise SpecError(
                f"layer '{path}': each group holds one value ({self.num_channels // self.num_groups} channel(s) "
                f"per group, input shape {shape}): its variance is 0 and the output does not depend on the input"
            )
        return shape

    def local_params(self, input_shape: Shape) -> dict[str, ParamInfo]:
        c = (self.num_channels,)
        return {"weight": ParamInfo(c), "bias": ParamInfo(c)} if self.affine else {}


# The kinds this family adds to the registry that from_dict reads (serial.py).
KINDS: tuple[type[Layer], ...] = (BatchNorm2d, BatchNorm1d, LayerNorm, GroupNorm, RMSNorm)
