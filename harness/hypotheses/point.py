"""One checked point and the reference at a variant of it: the common ground of the hypotheses.

Tensors are canonical: data ``(N, C, H, W)`` (or ``(N, F)``), conv weights
``(O, I/groups, kh, kw)``, Linear weights ``(out, in)``; parameters by local name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..compare import relative_with_floor
from ..spec import AvgPool2d, Conv1d, Conv2d, Layer, MaxPool2d, Sequential, join_path


@dataclass
class Point:
    """One checked point: the spec, the user's parameters (local names), input ``x``,
    upstream gradient ``g``, the user's and torch's values by tensor name, tolerances."""

    spec: Layer
    params: dict[str, np.ndarray]
    x: np.ndarray
    g: np.ndarray
    user: dict[str, np.ndarray]
    ref: dict[str, np.ndarray]
    tol: dict[str, float]
    layout: Any = None  # the wrapper's declared Layout (hypotheses phrase a fix in the user's terms)

    def full(self, params: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        return {join_path(self.spec.name, k): v for k, v in (params or self.params).items()}

    def fits(self, name: str, value: np.ndarray | None) -> bool:
        """``value`` reproduces the user's ``name`` within its tolerance and is not the truth."""
        if value is None:
            return False
        u, v, r = self.user[name], np.asarray(value, np.float64), self.ref[name]
        if u.shape != v.shape or not np.isfinite(v).all() or not np.any(v):
            return False
        tol = self.tol[name]
        return relative_with_floor(u, v) <= tol and relative_with_floor(v, r) > 2 * tol


def _vjp(
    spec: Layer,
    p: Point,
    params: dict[str, np.ndarray] | None = None,
    g: np.ndarray | None = None,
    forward_only: bool = False,
) -> dict[str, np.ndarray] | None:
    """Torch's output and VJP (with ``g``, default the checked one) for ``spec`` at ``p.x``,
    by tensor name (``output``, ``input``, params); None when the spec cannot take this input."""
    from reference_models import build

    try:
        ref = build("torch", Sequential([spec]))
        if forward_only:
            return {"output": ref.forward(p.full(params), p.x).output}
        res = ref.vjp(p.full(params), p.x, p.g if g is None else g)
    except Exception:  # an alternative the spec or the reference refuses is no hypothesis
        return None
    out = {"output": res.output, "input": res.input_grad}
    out.update(
        {k: res.param_grads[join_path(spec.name, k)] for k in p.params if join_path(spec.name, k) in res.param_grads}
    )
    return out


def _alternatives(spec: Layer, hw: tuple[int, ...]) -> Iterator[tuple[str, str, Layer]]:
    """(what, "at <field> <alt> (declared <value>)", spec at that value) for the
    hyperparameters a from-scratch layer forgets: stride, padding, dilation (a norm's eps:
    :mod:`.conventions`)."""

    def alt(field: str, value: Any, shown: Any, declared: Any) -> Iterator[tuple[str, str, Layer]]:
        try:
            yield field, f"{field} {shown} (declared {declared})", replace(spec, **{field: value})  # type: ignore[type-var]  # every concrete Layer is a dataclass
        except Exception:  # an alternative the spec refuses
            return

    if isinstance(spec, (Conv2d, MaxPool2d, AvgPool2d)):
        if tuple(spec.stride) != (1, 1):
            yield from alt("stride", 1, 1, _short(spec.stride))
        pads = spec.pads((hw[0], hw[1])) if isinstance(spec, Conv2d) else tuple((q, q) for q in spec.padding)
        flat = sorted({v for pair in pads for v in pair})
        for q in sorted({0} | {v + d for v in flat for d in (-1, 1)}):
            if q >= 0 and [q] != flat:
                yield from alt("padding", q, q, _short(flat[0] if len(flat) == 1 else pads))
        if (dilation := getattr(spec, "dilation", (1, 1))) not in ((1, 1), 1):
            yield from alt("dilation", 1, 1, _short(dilation))
    if isinstance(spec, Conv1d):
        if spec.stride != 1:
            yield from alt("stride", 1, 1, spec.stride)
        lr = sorted(set(spec.pads(hw[0])))
        for q in sorted({0} | {v + d for v in lr for d in (-1, 1)}):
            if q >= 0 and [q] != lr:
                yield from alt("padding", q, q, lr[0] if len(lr) == 1 else spec.pads(hw[0]))
        if spec.dilation != 1:
            yield from alt("dilation", 1, 1, spec.dilation)


def _short(v: Any) -> str:
    """``(2, 2)`` as ``2``; anything else as it is."""
    if isinstance(v, tuple) and len(set(v)) == 1 and not isinstance(v[0], tuple):
        return str(v[0])
    return str(v)


def _top_left(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``value`` (N, C, H', W') cut to ``shape``'s (H, W) from the top left (an (N, C, L') one to
    L from the left), when it is at least as large."""
    if value.shape == shape:
        return value
    if (
        value.ndim not in (3, 4)
        or len(shape) != value.ndim
        or value.shape[:2] != shape[:2]
        or any(a < b for a, b in zip(value.shape[2:], shape[2:]))
    ):
        return None
    return value[(slice(None), slice(None)) + tuple(slice(0, s) for s in shape[2:])]


__all__ = ["Point"]
