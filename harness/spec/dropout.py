"""The dropout family: :class:`Dropout` with its mask as an explicit buffer, so that every
witness of a check drops the same units."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import Layer, ParamInfo, Shape, SpecError, _check_name


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


# The kinds this family adds to the registry that from_dict reads (serial.py).
KINDS: tuple[type[Layer], ...] = (Dropout,)
