"""The JSON form of specs: :func:`from_dict` rebuilds a layer or loss spec from
:meth:`Layer.to_dict <harness.spec.base.Layer.to_dict>` / ``Loss.to_dict`` output, reading
the kind registry below.

The registry is filled from the families: each family module lists its classes in a
``KINDS`` tuple, and :data:`LAYER_FAMILIES` names the family modules, one a line. A new
family (recurrent layers, say) is one new module with its ``KINDS`` and one line in
:data:`LAYER_FAMILIES` (plus its re-export in ``harness/spec/__init__.py``); fields that hold
sub-layers are declared on the class (``child_fields``), so nothing else here changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

from . import (
    activations,
    attention,
    captioning,
    containers,
    convolution,
    dropout,
    embedding,
    linear,
    losses,
    normalization,
    pooling,
    recurrent,
)
from .base import Layer, SpecError
from .losses import Loss

# The layer families, in the order their kinds are listed (the order of LAYER_KINDS).
LAYER_FAMILIES: tuple[ModuleType, ...] = (
    convolution,
    pooling,
    activations,
    linear,
    normalization,
    dropout,
    embedding,
    attention,
    containers,
    recurrent,
    captioning,
)


def _registry(families: tuple[ModuleType, ...]) -> dict[str, Any]:
    """``{kind: class}`` over every family's ``KINDS``; two classes claiming one kind is a
    programming error, caught at import."""
    kinds: dict[str, Any] = {}
    for family in families:
        for cls in family.KINDS:
            if cls.kind in kinds:
                raise TypeError(f"spec kind {cls.kind!r} is registered twice: {kinds[cls.kind]} and {cls}")
            kinds[cls.kind] = cls
    return kinds


LAYER_KINDS: dict[str, type[Layer]] = _registry(LAYER_FAMILIES)
LOSS_KINDS: dict[str, type[Loss]] = _registry((losses,))


def _tuplify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


def _children(value: Any, arity: str) -> Any:
    """A field that holds sub-layers: ``"many"``, a list of spec dicts -> a tuple of specs;
    ``"one"``, a spec dict or None -> a spec or None."""
    if arity == "many":
        return tuple(from_dict(v) for v in value)
    return None if value is None else from_dict(value)


def from_dict(data: Mapping[str, Any]) -> Layer | Loss:
    """Rebuild a layer or loss spec from :meth:`Layer.to_dict` / :meth:`Loss.to_dict` output."""
    data = dict(data)
    kind = data.pop("kind", None)
    cls: Any = LAYER_KINDS.get(kind) or LOSS_KINDS.get(kind)
    if cls is None:
        raise SpecError(f"unknown spec kind {kind!r}; known: {sorted(LAYER_KINDS) + sorted(LOSS_KINDS)}")
    child_fields: Mapping[str, str] = getattr(cls, "child_fields", {})
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _children(value, child_fields[key]) if key in child_fields else _tuplify(value)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise SpecError(f"{kind}: {e}") from None
