"""What the network wrappers share (:func:`~harness.adapters.network.wrap_network`,
:func:`~harness.adapters.loss_model.wrap_loss_model`, :func:`~harness.adapters.loss.wrap_loss`):
the spec's parameter table and the shapes it is listed at, whether the network computes
its input gradient, a value the user's code returned read as canonical float64
(refusing None, integer and non-finite values as the findings they are), and
:func:`~harness.adapters.network.wrap_network`'s checks of its arguments' types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..spec import Dropout, Flatten, Layer, ParamInfo, named_params, walk
from . import state
from .arrays import ArrayError, is_float_dtype, nonfinite, to_float64
from .layouts import Layout, data_from_user
from .refs import AdapterError, ValueFinding
from .wrapped import WrappedLayer

Shape = tuple[int, ...]
CHW = tuple[int, int, int]


def _needs_input_shape(spec: Layer, layouts: list[Layout]) -> bool:
    """An HWC flatten reorders features, and which order depends on (C, H, W)."""
    return any(lay.flatten == "HWC" for lay in layouts) and any(isinstance(l, Flatten) for _, l in walk(spec))


def _dummy_input(layer: Layer) -> Shape:
    return state.dummy_input(layer)[0]  # parameter shapes of conv / linear / norm layers do not depend on N, H, W


def _input_grad(layers: Mapping[str, WrappedLayer], first: str | None) -> bool:
    """Whether the network's input gradient is computed: not when its first layer is declared
    ``input_grad=False``, which no other layer may be (the layer before it needs it)."""
    late = [p for p, w in layers.items() if not w.input_grad and p != first]
    if late:
        raise AdapterError(
            f"wrap_network: '{late[0]}' is declared input_grad=False, but only the network's first "
            f"layer ('{first}') may compute no input gradient: the layer before '{late[0]}' needs it"
        )
    return first not in layers or layers[first].input_grad  # type: ignore[index]


def _param_table(spec: Layer, input_shape: Shape | None) -> dict[str, tuple[str, Layer, str, ParamInfo]]:
    """``{full name: (layer path, layer, local name, info)}`` in forward order; without an
    input shape, shape-dependent buffers (a training dropout's mask) are left out."""
    tree = dict(walk(spec))
    if input_shape is not None:
        infos = named_params(spec, input_shape)
    else:
        infos = {}
        for path, layer in tree.items():
            if layer.children() or (isinstance(layer, Dropout) and layer.training):
                continue
            infos.update({f"{path}.{k}": v for k, v in layer.local_params(_dummy_input(layer)).items()})
    out = {}
    for name, info in infos.items():
        path, _, local = name.rpartition(".")
        out[name] = (path, tree[path], local, info)
    return out


def _returned(value: Any, what: str) -> tuple[np.ndarray, np.dtype]:
    """The user's code's value -> (float64 copy, its dtype); :class:`ValueFinding` if None, not real, or integer."""
    if value is None:
        raise ValueFinding(f"{what} is None; it must return an array")
    try:
        v, kind = to_float64(value, what)
    except ArrayError as e:
        raise ValueFinding(str(e)) from None
    if not is_float_dtype(kind.dtype):
        raise ValueFinding(
            f"{what} is {kind.dtype}: integer values cannot carry a gradient (likely cause: an array "
            "allocated with an integer dtype, or an astype(int))"
        )
    return v, kind.dtype


def _user_output(
    value: Any,
    what: str,
    layout: Layout,
    features: CHW | None,
    returned: dict[str, np.dtype] | None = None,
    name: str = "output",
) -> np.ndarray:
    """The user's activation -> canonical float64, refusing None, integer and non-finite
    values (:class:`ValueFinding`); its dtype is recorded in ``returned[name]``."""
    v, dtype = _returned(value, what)
    if returned is not None:
        returned[name] = dtype
    bad = nonfinite(v)
    if bad:
        raise ValueFinding(
            f"{what} has a non-finite value {bad.value} at {list(bad.index)} (user layout; "
            f"{bad.count} of {bad.size} NaN or Inf)"
        )
    return data_from_user(v, layout, features)


def _check_arguments(layers: Any, spec: Any, layout: Any, forward: Any, backward: Any) -> None:
    """Refuse arguments of the wrong type before anything is wrapped."""
    if not isinstance(spec, Layer):
        raise AdapterError(f"wrap_network: spec must be a layer spec (e.g. harness.spec.Sequential), got {spec!r}")
    if not isinstance(layout, Layout):
        raise AdapterError(f"wrap_network: layout must be a harness.Layout, got {layout!r}")
    if not isinstance(layers, Mapping):
        raise AdapterError(
            f"wrap_network: layers must be a mapping {{spec path: layer}} in forward order, got {type(layers).__name__}"
        )
    if (forward is None) != (backward is None):
        raise AdapterError("wrap_network: pass both forward= and backward= (the network's own passes) or neither")
    for what, fn in (("forward", forward), ("backward", backward)):
        if fn is not None and not callable(fn):
            raise AdapterError(f"wrap_network: {what}= must be callable, got {fn!r}")
