"""Hypotheses about a wrong forward: the reference at another stride, padding or dilation
(a norm's eps: :mod:`.conventions`); the bias left out or added twice; the kernel rotated or read in another axis order; an
activation fused into the layer (:mod:`.fused`)."""

from __future__ import annotations

import numpy as np

from ..spec import Conv2d, Linear
from .fused import fused_activation
from .point import Point, _alternatives, _top_left, _vjp


def wrong_forward(p: Point) -> list[str]:
    """The output equals the reference at another stride / padding / dilation (its
    top-left corner when that output is larger: the code indexes with the other value but
    sizes the output right), or with the bias left out or added twice, or passed through an
    activation the spec does not have (one fused into the layer)."""
    found = []
    shape = p.user["output"].shape
    for field, at, alt in _alternatives(p.spec, p.x.shape[2:]):
        got = _vjp(alt, p, forward_only=True)
        value = _top_left(got["output"], shape) if got else None
        if got is not None and p.fits("output", value):  # fits(None) is False: got is there
            corner = "" if got["output"].shape == shape else f", its top-left {'x'.join(map(str, shape[2:]))}"
            found.append(f"output: the forward ignores its {field}: equals the reference at {at}{corner}")
    found += _forward_kernel(p)
    if isinstance(p.spec, (Conv2d, Linear)) and "bias" in p.params:
        for k, what in ((0.0, "leaves out the bias"), (2.0, "adds the bias twice")):
            got = _vjp(p.spec, p, params={**p.params, "bias": k * p.params["bias"]}, forward_only=True)
            if got and p.fits("output", got["output"]):
                found.append(f"output: the forward {what}: equals the reference with the bias times {k:g}")
    return found + fused_activation(p)


def _forward_kernel(p: Point) -> list[str]:
    """A conv forward that uses its kernel rotated 180 degrees (a convolution where
    cross-correlation is meant) or reads the weight's values in another axis order than
    ``(O, I, kh, kw)`` (patches flattened in another order than the weight)."""
    from itertools import permutations

    w = p.params.get("weight")
    if not isinstance(p.spec, Conv2d) or w is None or w.ndim != 4:
        return []
    variants = [
        (
            w[:, :, ::-1, ::-1],
            "the forward uses the kernel rotated 180 degrees (a convolution where cross-correlation is meant)",
        )
    ]
    names = ("O", "I", "kh", "kw")
    for order in permutations(range(1, 4)):
        if order != (1, 2, 3):
            q = (0, *order)
            read = w.reshape([w.shape[a] for a in q]).transpose(np.argsort(q))
            variants.append(
                (
                    read,
                    f"the forward reads the weight's values in ({', '.join(names[a] for a in q)}) "
                    "order (patches flattened in another order than the weight)",
                )
            )
    found = []
    for value, what in variants:
        got = _vjp(p.spec, p, params={**p.params, "weight": np.ascontiguousarray(value)}, forward_only=True)
        if got and p.fits("output", got["output"]):
            found.append(f"output: {what}: equals the reference with that kernel")
    return found


__all__ = ["wrong_forward"]
