"""The container family: :class:`Sequential` (layers in order) and :class:`Residual`
(``post(block(x) + shortcut(x))``). Containers name their children's paths and carry shape
inference through them, saying which layer's output did not fit the next."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .base import Layer, Shape, SpecError, _check_name, join_path


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
    child_fields: ClassVar[Mapping[str, str]] = {"layers": "many"}
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
    child_fields: ClassVar[Mapping[str, str]] = {"block": "many", "shortcut": "one", "post": "many"}
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


# The kinds this family adds to the registry that from_dict reads (serial.py).
KINDS: tuple[type[Layer], ...] = (Sequential, Residual)
