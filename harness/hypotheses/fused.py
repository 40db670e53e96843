"""A forward that applies an activation the spec does not have: a layer with the activation
fused into it (a Keras-style ``Dense(activation="relu")``) checked against the bare layer.
The hint names the span to check it as."""

from __future__ import annotations

from dataclasses import MISSING, fields

from ..spec import ELU, GELU, Layer, LeakyReLU, ReLU, Sequential, Sigmoid, Softmax, Tanh, _Elementwise
from .point import Point, _vjp

# the activations real code fuses, with their usual parameters (Keras' LeakyReLU is 0.3)
ACTIVATIONS: tuple[_Elementwise, ...] = (
    ReLU("relu"),
    LeakyReLU("act", 0.01),
    LeakyReLU("act", 0.1),
    LeakyReLU("act", 0.2),
    LeakyReLU("act", 0.3),
    Tanh("tanh"),
    Sigmoid("sigmoid"),
    ELU("elu"),
    GELU("gelu"),
    GELU("gelu", approximate="tanh"),
    Softmax("softmax", axis=1),
)


def fused_activation(p: Point) -> list[str]:
    """``"output: the forward matches Linear followed by ReLU ...: check it as a span ..."``
    for the first activation that, applied to the reference's output (at the user's
    parameters), reproduces the user's output within its tolerance (and differs from the
    reference). Never for a spec that is itself an activation."""
    if isinstance(p.spec, _Elementwise) or "output" not in p.user:
        return []
    for act in ACTIVATIONS:
        span = Sequential([p.spec, act])  # unnamed: the parameters keep the checked layer's full names
        got = _vjp(span, p, forward_only=True)
        if got and p.fits("output", got["output"]):
            shown = f"Sequential([{_show(p.spec)}, {_show(act)}], name='{p.spec.name or 'span'}_{act.name}')"
            return [
                f"output: the forward matches {type(p.spec).__name__} followed by {_show(act, named=False)}: the "
                f"code fuses an activation into the layer; check it as a span {shown}"
            ]
    return []


def _show(layer: Layer, named: bool = True) -> str:
    """``Linear('fc', 6, 4)``, ``LeakyReLU('act', negative_slope=0.1)``: the spec as it is
    written (required fields by position, the others only where they differ from what the
    layer has without them)."""
    required = {
        f.name: getattr(layer, f.name)
        for f in fields(layer)  # type: ignore[arg-type]
        if f.default is MISSING and f.default_factory is MISSING
    }
    try:
        plain = type(layer)(**required)
    except Exception:  # a layer that cannot be built from its required fields alone: show every field
        plain = None
    parts = [repr(v) for k, v in required.items() if named or k != "name"]
    parts += [
        f"{f.name}={getattr(layer, f.name)!r}"
        for f in fields(layer)  # type: ignore[arg-type]
        if f.name not in required and (plain is None or getattr(plain, f.name) != getattr(layer, f.name))
    ]
    return f"{type(layer).__name__}({', '.join(parts)})" if parts or named else type(layer).__name__


__all__ = ["ACTIVATIONS", "fused_activation"]
