"""What every layer spec shares: :class:`SpecError`, :class:`ParamInfo`, the :class:`Layer` base,
and the argument and shape helpers the layer families use to validate themselves.

Shapes always include the batch axis. Argument helpers normalise what a user may write
(``3``, ``(3, 3)``, ``"same"``) to one form and raise :class:`SpecError` naming the layer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np

Shape = tuple[int, ...]
Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))
PaddingArg = int | tuple[int, int] | Pads | str

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
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, (tuple, list)) for v in value):
        (t, b), (l, r) = (
            _pair(value[0], "padding (top, bottom)", layer, 0),
            _pair(value[1], "padding (left, right)", layer, 0),
        )
        return ((t, b), (l, r))
    ph, pw = _pair(value, "padding", layer, 0)
    return ((ph, ph), (pw, pw))


def _window_out(size: int, lo: int, hi: int, k: int, s: int, d: int) -> int:
    return (size + lo + hi - d * (k - 1) - 1) // s + 1


def _check_name(name: Any, kind: str, allow_empty: bool = False) -> None:
    if not isinstance(name, str) or (name == "" and not allow_empty) or (name and not _NAME_RE.match(name)):
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
    """Base of all specs. Subclasses are frozen dataclasses with a ``name`` field.

    ``kind`` names the class in the JSON form (:meth:`to_dict`). ``index_input``: the layer
    takes integer indices (not differentiable) rather than activations. ``child_fields`` names the
    fields that hold sub-layer specs, each ``"one"`` (a layer or None) or ``"many"`` (a
    sequence of layers), so that :func:`~harness.spec.serial.from_dict` rebuilds them.
    """

    kind: ClassVar[str]
    child_fields: ClassVar[Mapping[str, str]] = {}
    # True for a layer whose input is integer indices (an Embedding): not differentiable, no
    # input gradient; only a network's first leaf may be one (see harness.spec.tree.index_layer)
    index_input: ClassVar[bool] = False
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

    def no_grad(self, local: str, shape: Shape) -> np.ndarray | None:
        """A bool mask over parameter ``local`` (of ``shape``): the entries whose gradient the
        spec defines as zero although the forward reads them (an Embedding's padding row);
        None when there are none. Finite differences hold them still."""
        return None

    def children(self) -> tuple[Layer, ...]:
        """Direct sub-layers, in forward order (empty for leaves)."""
        return ()

    def value_problem(self, input_shape: Shape, value: Any, path: str) -> str | None:
        """What is wrong with the values (not the shapes) of this layer's buffers, or None;
        ``value(local)`` gives one by local name. An attention's padding mask hiding every key is one."""
        return None

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
