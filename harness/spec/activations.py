"""The activation family: elementwise :class:`ReLU`, :class:`LeakyReLU`, :class:`ELU`,
:class:`Sigmoid`, :class:`Tanh`, :class:`GELU`, and :class:`Softmax` along one axis. None has
parameters; every one keeps its input's shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import Layer, Shape, SpecError, _check_name


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
            raise SpecError(f"layer '{self.name}': approximate must be 'none' or 'tanh', got {self.approximate!r}")


@dataclass(frozen=True)
class Softmax(_Elementwise):
    """exp(x) / sum(exp(x)) along ``axis`` (default the last). Any shape; same shape out."""

    kind: ClassVar[str] = "Softmax"
    axis: int = -1

    def _infer(self, shape: Shape, path: str) -> Shape:
        if not -len(shape) <= self.axis < len(shape):
            raise SpecError(f"layer '{path}': axis {self.axis} is out of range for input shape {shape}")
        return shape


# The kinds this family adds to the registry that from_dict reads (serial.py).
KINDS: tuple[type[Layer], ...] = (ReLU, LeakyReLU, ELU, Sigmoid, Tanh, GELU, Softmax)
