"""The dense family: :class:`Linear` (y = x W^T + b over the last axis) and :class:`Flatten`
(``(N, ...)`` -> ``(N, features)`` in row-major order), the usual way from conv maps to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import Layer, ParamInfo, Shape, SpecError, _check_name


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


# The kinds this family adds to the registry that from_dict reads (serial.py).
KINDS: tuple[type[Layer], ...] = (Flatten, Linear)
