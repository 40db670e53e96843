"""The options every calling style takes (object layers and function pairs alike), read and
checked in one place so :func:`~harness.adapters.object_layer.wrap_layer` and
:func:`~harness.adapters.function_layer.wrap_functions` cannot drift apart."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .effects import parse_inplace
from .refs import AdapterError
from .wrapped_params import _check_grad_scale

SHARED: dict[str, Any] = {
    "grad_scale": None,  # "batch" (gradients already divided by N) or a number to multiply by
    "dtype": None,  # dtype to hand the user's code when it has no parameters to tell
    "batched": True,  # False: the code takes one example at a time, (C, H, W) or (H, W, C)
    "channel_axis": True,  # False (with batched=False): single-channel examples as (H, W)
    "input_grad": True,  # False: the code computes no input gradient (a first layer); it is not compared
    "inplace": None,  # writes declared deliberate: {"input", "upstream", "params"} (see harness.adapters.effects)
    "array_type": None,  # "numpy" | "torch" | "jax" | "cupy": the arrays the code computes with (see .feed)
}


def _flag(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise AdapterError(f"{owner}: {name}= takes True or False, got {value!r}")
    return bool(value)


def apply_shared(layer: Any, options: Mapping[str, Any]) -> None:
    """Set the :data:`SHARED` options on ``layer`` (a WrappedLayer) from ``options`` (missing
    ones take their defaults); a value that cannot be right is an AdapterError naming the layer."""
    opts = {**SHARED, **{k: v for k, v in options.items() if k in SHARED}}
    owner = f"layer '{layer.name}'"
    layer.inplace = parse_inplace(opts["inplace"], owner)
    _check_grad_scale(layer.name, opts["grad_scale"])
    layer.grad_scale = opts["grad_scale"]
    layer._declare_types(opts["dtype"], opts["array_type"])  # dtype= may be a torch or jax dtype (see .feed)
    layer.batched = _flag(owner, "batched", opts["batched"])
    layer.channel_axis = _flag(owner, "channel_axis", opts["channel_axis"])
    # integer indices (an Embedding first) have no gradient, whatever was declared
    layer.input_grad = _flag(owner, "input_grad", opts["input_grad"]) and not getattr(layer, "indices", False)
    if not layer.channel_axis and layer.batched:
        raise AdapterError(f"{owner}: channel_axis=False is for single examples: pass batched=False too")
    if not layer.batched and getattr(layer, "replay", None) is not None:  # a training dropout (see .state.draws)
        raise AdapterError(
            f"{owner}: batched=False with a training-mode dropout is not supported: its mask is "
            "drawn per call, and the examples run one by one could not drop the units the references "
            "drop; check it on the batch (a dropout layer rarely needs batched=False)"
        )


def merged_kwargs(
    owner: str, kwargs: Mapping[str, Any] | None, forward_kwargs: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A function pair's ``kwargs=`` and ``forward_kwargs=`` are one option under two names
    (the second as :func:`wrap_layer` spells it): one of them, not both."""
    if kwargs is not None and forward_kwargs is not None:
        raise AdapterError(
            f"{owner}: kwargs= and forward_kwargs= are the same option (keyword arguments every "
            f"forward is called with); pass one of them, got kwargs={dict(kwargs)!r} and "
            f"forward_kwargs={dict(forward_kwargs)!r}"
        )
    chosen = kwargs if kwargs is not None else forward_kwargs
    if chosen is not None and not isinstance(chosen, Mapping):
        raise AdapterError(f"{owner}: forward_kwargs= takes a dict of keyword arguments, got {chosen!r}")
    return dict(chosen or {})


def call_hint(layer: Any, x_shape: tuple[int, ...]) -> str:
    """For code declared ``batched=False`` that crashed: what one example looked like, as a
    suffix for its message (``x_shape``: the canonical batch). Arguments missing at the call
    itself are :mod:`harness.hints`' (confirmed at the call boundary)."""
    from .layouts import user_data_shape

    out = ""
    if not getattr(layer, "batched", True) and len(x_shape) == 4:
        one = user_data_shape(x_shape, layer.layout)[1:]
        single = layer.channel_axis and x_shape[1] == 1
        out += f" (called once per example (batched=False), each of shape {one}" + (
            "; code that takes a single-channel image as (H, W)? declare channel_axis=False)" if single else ")"
        )
    return out


__all__ = ["SHARED", "apply_shared", "call_hint", "merged_kwargs"]
