"""Why an object-style layer's parameter or gradient is not where it is looked for: the
declaration to name in the message, said only on evidence.

- A gradient is found nowhere after backward, and the backward changed that parameter
  itself: an SGD step inside backward (``sgd=``) — :func:`sgd_hint`.
- A parameter is found nowhere before the first forward: a layer that builds its weights
  in its first forward (``lazy=True``) — :func:`lazy_hint`: confirmed when a copy of the
  object, run forward once, has it; made likely when a usual place holds ``None``.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ..spec import example_input_shape
from .layouts import data_to_user
from .refs import Ref, _candidates
from .replay import kept_random_state


def sgd_hint(layer: Any, local: str) -> str:
    """``"backward changed 'weight' itself (an SGD step inside backward?): declare sgd=(None, lr) ..."``
    when the last backward of ``layer`` (an ObjectLayer) wrote into parameter ``local``, else
    ``""``. (``sgd=('step', lr)`` is for a step applied by another method: then the backward
    changes nothing, and there is no evidence to name it on.)"""
    if not any(e.side == "backward" and e.array == f"parameter '{local}'" for e in layer.effects):
        return ""
    return (
        f"backward changed '{local}' itself (an SGD step inside backward?): declare sgd=(None, lr) with its "
        "learning rate"
    )


def _after_one_forward(layer: Any, local: str) -> tuple[tuple[int, ...], str] | None:
    """(the user-layout input shape, where ``local`` is) when a deep copy of ``layer.obj``,
    run forward once on a small random input, has parameter ``local``; None otherwise (or
    when the object cannot be copied or run that way). The user's object is not touched."""
    shape = example_input_shape(layer.spec) if layer.spec is not None else None
    if shape is None or not getattr(layer, "batched", True):
        return None
    x = data_to_user(np.random.default_rng(0).normal(size=shape), layer.layout)
    with kept_random_state():
        try:
            twin = copy.deepcopy(layer.obj)
            getattr(twin, layer._forward_name)(x, *layer.forward_args, **layer.forward_kwargs)
        except Exception:  # the copy cannot be made or run: no confirmation from it
            return None
    from .wrapped import _is_array

    found = [c for c in _candidates(local) if Ref(c).exists(twin) and _is_array(Ref(c).get(twin))]
    return (tuple(x.shape), found[0]) if found else None


def lazy_hint(layer: Any, local: str) -> str:
    """``"; the layer creates its parameters in its first forward ...: declare lazy=True"``
    when parameter ``local`` of ``layer`` (an ObjectLayer, before its first forward) appears
    after one forward on a copy; a "likely cause" when a usual place for it holds None;
    else ``""``."""
    if getattr(layer, "_forwarded", False):
        return ""
    appears = _after_one_forward(layer, local)
    if appears is not None:
        return (
            f"; the layer creates its parameters in its first forward (a copy of it, run forward once on an input "
            f"of shape {appears[0]}, has '{local}' at {appears[1]}): declare lazy=True"
        )
    empty = [c for c in _candidates(local) if _holds_none(layer.obj, c)]
    if empty:
        return (
            f"; likely cause: the layer creates its parameters in its first forward ({empty[0]} is None until "
            "then); declare lazy=True if so"
        )
    return ""


def _holds_none(obj: Any, path: str) -> bool:
    ref = Ref(path)
    try:
        return ref.get(obj) is None
    except (AttributeError, KeyError, IndexError, TypeError):
        return False


__all__ = ["lazy_hint", "sgd_hint"]
