"""Where a composite object keeps its sub-layers.

``wrap_layer(block, Residual(...))`` / ``wrap_layer(stack, Sequential([...]))`` on an object
that holds one object per spec layer — as attributes named like the spec's layers
(``block.conv1``, ``block.bn1``, ``block.shortcut``), as a ``.layers`` list (or dict) in
forward order, or, for a nested composite child, as a list itself — finds each sub-layer's
parameters and gradients on its own object by the rules a single layer uses (``W`` /
``weight`` / ``params['W']`` ..., gradients ``dW`` / ``grads['W']`` ...). A wrapper's names
are relative to the span (``conv1.weight``, ``shortcut.conv.weight``); this module maps each
leaf's relative path to a :class:`~harness.adapters.refs.Ref` path of its object
(``"conv1"``, ``"layers[0]"``, ``"shortcut.layers[1]"``).

A ``.layers`` list maps onto the spec's layers in forward order: one object per layer, or
one per layer with parameters (a block that applies ReLU as a function), and for a
``Residual`` either of those without the shortcut (kept as an attribute).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..spec import Layer, Residual, join_path
from .refs import AdapterError

LISTS = ("layers",)  # attributes that hold a composite's sub-layers in forward order


def under(prefix: str, path: str) -> str:
    """The Ref path ``path`` (on a sub-object) seen from the root: ``under("conv1", "W")`` is
    ``"conv1.W"``, ``under("layers[0]", "params['W']")`` ``"layers[0].params['W']"``."""
    if not prefix:
        return path
    return prefix + path if path.startswith("[") else f"{prefix}.{path}"


def sub_objects(obj: Any, spec: Layer, names: list[str], owner: str) -> dict[str, str]:
    """``{leaf path relative to the span: Ref path of its object on obj}`` for the leaves that
    own some of ``names`` (parameter names relative to the span, ``"conv1.weight"``) and
    whose object is found; leaves not found are left out (their parameters are then looked
    for on ``obj`` itself, as in a fused span). Raises AdapterError when two places could
    hold the same layer, or a ``.layers`` list cannot be lined up with the spec's layers."""
    needed = {n.rpartition(".")[0] for n in names if "." in n}
    out: dict[str, str] = {}
    if needed and spec.children():
        _locate(obj, obj, "", spec, "", needed, owner, out)
    return out


def _owns(rel: str, needed: set[str]) -> bool:
    return any(n == rel or n.startswith(rel + ".") for n in needed)


def _locate(
    root: Any, holder: Any, where: str, node: Layer, rel: str, needed: set[str], owner: str, out: dict[str, str]
) -> None:
    kids = node.children()
    positions, listed = _positions(holder, where, node, rel, needed)
    for i, child in enumerate(kids):
        child_rel = join_path(rel, child.name)
        if not _owns(child_rel, needed):
            continue  # no parameter lives under it: its object does not matter
        by_name = _by_name(holder, where, child.name)
        by_position = positions.get(i)
        if by_name and by_position and by_name[1] is not by_position[1]:
            raise AdapterError(
                f"layer '{owner}': its layer '{child_rel}' could be {_shown(by_name)} or {_shown(by_position)}, two "
                f"different objects; pass params= to say where each parameter lives, e.g. "
                f"params={{'{child_rel}.weight': \"{by_name[0]}.W\"}}"
            )
        found = by_name or by_position
        if found is None:
            if listed is not None:  # a list is there, but it does not line up with the spec
                raise AdapterError(
                    f"layer '{owner}': cannot tell which object is '{child_rel}': {listed}; name the sub-objects "
                    f"like the spec's layers (e.g. self.{child.name} = ...), or pass params="
                )
            continue
        if child.children():
            _locate(root, found[1], found[0], child, child_rel, needed, owner, out)
        else:
            out[child_rel] = found[0]


def _shown(found: tuple[str, Any]) -> str:
    return f"{found[0]} (a {type(found[1]).__name__})"


def _is_layer_object(value: Any) -> bool:
    """A user object that can be a layer: not None, a number, a string or an array."""
    return (
        value is not None
        and not isinstance(value, (bool, int, float, str, bytes, np.ndarray, np.generic))
        and not hasattr(value, "__array__")
    )


def _by_name(holder: Any, where: str, name: str) -> tuple[str, Any] | None:
    """The object at ``holder.<name>`` (or ``holder[name]`` for a dict) and its Ref path."""
    if not name or isinstance(holder, (list, tuple)):
        return None
    if isinstance(holder, Mapping):
        value, path = holder.get(name), f"{where}[{name!r}]"
    elif name.isidentifier():
        value, path = getattr(holder, name, None), join_path(where, name)
    else:
        return None
    return (path, value) if _is_layer_object(value) and not callable(getattr(value, "__func__", None)) else None


def _positions(
    holder: Any, where: str, node: Layer, rel: str, needed: set[str]
) -> tuple[dict[int, tuple[str, Any]], str | None]:
    """``({child index: (Ref path, object)}, None)`` from the list holding ``node``'s layers
    in forward order (``holder`` itself, or its ``.layers``); when a list is there but its
    length fits no reading, ``({}, what was expected)``; without a list ``({}, None)``."""
    if isinstance(holder, (list, tuple)):
        items, path = holder, where
    else:
        attr = next((a for a in LISTS if isinstance(getattr(holder, a, None), (list, tuple, Mapping))), None)
        if attr is None or isinstance(holder, Mapping):
            return {}, None
        items, path = getattr(holder, attr), join_path(where, attr)
        if isinstance(items, Mapping):  # {name: layer}: by the spec's names
            found = {
                i: (f"{path}[{k.name!r}]", items[k.name])
                for i, k in enumerate(node.children())
                if k.name in items and _is_layer_object(items[k.name])
            }
            return found, None
    kids = node.children()
    every = list(range(len(kids)))
    owning = [i for i in every if _owns(join_path(rel, kids[i].name), needed)]
    readings = [every, owning]
    if isinstance(node, Residual) and node.shortcut is not None:
        skip = len(node.block)  # children(): block, shortcut, post
        readings += [[i for i in r if i != skip] for r in (every, owning)]
    fits = [r for k, r in enumerate(readings) if len(r) == len(items) and r not in readings[:k]]
    if len(fits) > 1:  # a reading that puts another object where an attribute of the layer's name is cannot be it
        named = {i: hit[1] for i in every if (hit := _by_name(holder, where, kids[i].name))}
        fits = [r for r in fits if all(named.get(i, items[k]) is items[k] for k, i in enumerate(r))] or fits
    if len(fits) == 1:
        return {i: (f"{path}[{k}]", items[k]) for k, i in enumerate(fits[0])}, None
    with_params = f" ({len(owning)} with parameters)" if len(owning) != len(every) else ""
    if fits:
        return {}, (
            f"{path} holds {len(items)} objects, which could be the layers {[kids[i].name for i in fits[0]]} "
            f"or {[kids[i].name for i in fits[1]]} of '{node.name or 'the span'}'"
        )
    return {}, (
        f"{path or 'the object'} holds {len(items)} objects, but '{node.name or 'the span'}' has "
        f"{len(kids)} layers{with_params}; it should hold them in forward order"
    )


__all__ = ["sub_objects", "under"]
