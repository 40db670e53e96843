"""Hypotheses that need the reference again: each computes the value the user's tensor
would have under one named mistake (from the reference at another hyperparameter, the
reference's VJP with part of the upstream gradient, or a closed form built from the
reference's own quantities) and is printed only when that value reproduces the user's
tensor within the tensor's tolerance — and differs from the true value.

Tensors are canonical: data ``(N, C, H, W)`` (or ``(N, F)``), conv weights
``(O, I/groups, kh, kw)``, Linear weights ``(out, in)``; parameters by local name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

import numpy as np

from .compare import relative_with_floor
from .results import LayerResult
from .spec import (AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, GlobalAvgPool2d, Layer, LayerNorm, Linear,
                   MaxPool2d, Sequential, join_path)

EPS_TRIED = (0.0, 1e-3, 1e-5, 1e-8)


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


def _vjp(spec: Layer, p: Point, params: dict[str, np.ndarray] | None = None, g: np.ndarray | None = None,
         forward_only: bool = False) -> dict[str, np.ndarray] | None:
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
    out.update({k: res.param_grads[join_path(spec.name, k)] for k in p.params
                if join_path(spec.name, k) in res.param_grads})
    return out


def explain(result: LayerResult, tensors: list[tuple], spec: Layer, params: dict[str, np.ndarray],
            x: np.ndarray, g: np.ndarray) -> list[str]:
    """Every confirmed hypothesis for the failing tensors of ``result``, as
    ``"<tensor>: <mistake>"`` lines. ``tensors``: check's (name, side, user, torch, jax, ...)."""
    failing = [tr.name for tr in result.tensors if not tr.ok]
    if not failing:
        return []
    p = Point(spec, params, x, g, {t[0]: np.asarray(t[2], np.float64) for t in tensors},
              {t[0]: np.asarray(t[3], np.float64) for t in tensors}, {tr.name: tr.tolerance for tr in result.tensors})
    found: list[str] = []
    if "output" in failing:
        found += _forward(p)
    backward = [n for n in failing if n != "output"]
    if backward:
        found += _backward(p, backward, forward_ok="output" not in failing)
    return found


# ------------------------------------------------------------------ another hyperparameter


def _alternatives(spec: Layer, hw: tuple[int, ...]) -> Iterator[tuple[str, str, Layer]]:
    """(what, "at <field> <alt> (declared <value>)", spec at that value) for the
    hyperparameters a from-scratch layer forgets: stride, padding, dilation, eps."""
    def alt(field: str, value: Any, shown: Any, declared: Any) -> Iterator[tuple[str, str, Layer]]:
        try:
            yield field, f"{field} {shown} (declared {declared})", replace(spec, **{field: value})
        except Exception:  # an alternative the spec refuses
            return

    if isinstance(spec, (Conv2d, MaxPool2d, AvgPool2d)):
        if tuple(spec.stride) != (1, 1):
            yield from alt("stride", 1, 1, _short(spec.stride))
        pads = spec.pads(hw) if isinstance(spec, Conv2d) else tuple((q, q) for q in spec.padding)
        flat = sorted({v for pair in pads for v in pair})
        for q in sorted({0} | {v + d for v in flat for d in (-1, 1)}):
            if q >= 0 and [q] != flat:
                yield from alt("padding", q, q, _short(flat[0] if len(flat) == 1 else pads))
        if getattr(spec, "dilation", (1, 1)) not in ((1, 1), 1):
            yield from alt("dilation", 1, 1, _short(spec.dilation))
    if isinstance(spec, (BatchNorm1d, BatchNorm2d, LayerNorm)):
        for eps in EPS_TRIED:
            if eps != spec.eps:
                yield from alt("eps", eps or 1e-300, f"= {eps:g}", f"{spec.eps:g}")


def _short(v: Any) -> str:
    """``(2, 2)`` as ``2``; anything else as it is."""
    if isinstance(v, tuple) and len(set(v)) == 1 and not isinstance(v[0], tuple):
        return str(v[0])
    return str(v)


def _top_left(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``value`` (N, C, H', W') cut to ``shape``'s (H, W) from the top left, when it is at least as large."""
    if value.shape == shape:
        return value
    if value.ndim != 4 or len(shape) != 4 or value.shape[:2] != shape[:2] or \
            any(a < b for a, b in zip(value.shape[2:], shape[2:])):
        return None
    return value[:, :, :shape[2], :shape[3]]


def _forward(p: Point) -> list[str]:
    """The output equals the reference at another stride / padding / dilation / eps (its
    top-left corner when that output is larger: the code indexes with the other value but
    sizes the output right), or with the bias left out or added twice."""
    found = []
    shape = p.user["output"].shape
    for field, at, alt in _alternatives(p.spec, p.x.shape[2:]):
        got = _vjp(alt, p, forward_only=True)
        value = _top_left(got["output"], shape) if got else None
        if p.fits("output", value):
            corner = "" if got["output"].shape == shape else f", its top-left {shape[2]}x{shape[3]}"
            what = "a wrong eps" if field == "eps" else f"the forward ignores its {field}"
            found.append(f"output: {what}: equals the reference at {at}{corner}")
    found += _forward_kernel(p)
    if isinstance(p.spec, (Conv2d, Linear)) and "bias" in p.params:
        for k, what in ((0.0, "leaves out the bias"), (2.0, "adds the bias twice")):
            got = _vjp(p.spec, p, params={**p.params, "bias": k * p.params["bias"]}, forward_only=True)
            if got and p.fits("output", got["output"]):
                found.append(f"output: the forward {what}: equals the reference with the bias times {k:g}")
    return found


def _forward_kernel(p: Point) -> list[str]:
    """A conv forward that uses its kernel rotated 180 degrees (a convolution where
    cross-correlation is meant) or reads the weight's values in another axis order than
    ``(O, I, kh, kw)`` (patches flattened in another order than the weight)."""
    from itertools import permutations

    w = p.params.get("weight")
    if not isinstance(p.spec, Conv2d) or w is None or w.ndim != 4:
        return []
    variants = [(w[:, :, ::-1, ::-1], "the forward uses the kernel rotated 180 degrees (a convolution where "
                 "cross-correlation is meant)")]
    names = ("O", "I", "kh", "kw")
    for order in permutations(range(1, 4)):
        if order != (1, 2, 3):
            q = (0, *order)
            read = w.reshape([w.shape[a] for a in q]).transpose(np.argsort(q))
            variants.append((read, f"the forward reads the weight's values in ({', '.join(names[a] for a in q)}) "
                             "order (patches flattened in another order than the weight)"))
    found = []
    for value, what in variants:
        got = _vjp(p.spec, p, params={**p.params, "weight": np.ascontiguousarray(value)}, forward_only=True)
        if got and p.fits("output", got["output"]):
            found.append(f"output: {what}: equals the reference with that kernel")
    return found


# ------------------------------------------------------------------ backward


def _backward(p: Point, names: list[str], forward_ok: bool) -> list[str]:
    """Hypotheses for the failing gradients ``names``."""
    found = []
    if "input" in names and p.fits("input", p.g if p.g.shape == p.x.shape else None):
        found.append("input: the upstream gradient passed through unchanged (no derivative or mask applied)")
    found += _partial_sums(p, [n for n in names if n != "input"])
    found += _ignored_hyperparameter(p, names)
    if "input" in names and forward_ok:
        for check in (_pool_routing, _norm_terms, _weight_transposed):
            found += check(p)
    return found


def _partial_sums(p: Point, names: list[str]) -> list[str]:
    """A parameter gradient that is only one sample's (or one output position's)
    contribution: ``=`` where ``+=`` is needed in a loop over the batch or the windows. The
    contribution is the reference's VJP with every other part of ``g`` zeroed."""
    if not names or p.g.ndim < 2:
        return []
    n = p.g.shape[0]
    spatial = p.g.shape[2:] if p.g.ndim == 4 else ()
    cases: list[tuple[str, tuple]] = []
    if n > 1:
        cases += [(f"only the {w} sample of the batch ({i + 1} of {n})", (i,)) for w, i in (("first", 0), ("last", n - 1))]
    if spatial and int(np.prod(spatial)) > 1:
        h, w = spatial
        for word, (i, j) in (("first", (0, 0)), ("last", (h - 1, w - 1))):
            cases.append((f"only the {word} window (output position ({i}, {j}))", (slice(None), slice(None), i, j)))
            if n > 1:
                k = 0 if word == "first" else n - 1
                cases.append((f"only the {word} window of the {word} sample", (k, slice(None), i, j)))
    found = []
    for label, index in cases:
        mask = np.zeros_like(p.g)
        mask[index] = p.g[index]
        got = _vjp(p.spec, p, g=mask)
        for name in names:
            if got and name in got and p.fits(name, got[name]):
                found.append(f"{name}: {label} contributes: equals the reference's gradient from it alone "
                             "(= where += is needed in the loop)")
    return found


def _ignored_hyperparameter(p: Point, names: list[str]) -> list[str]:
    """A backward written for stride 1 (or no dilation / other padding): the gradients equal
    the reference's VJP at that value with ``g`` placed in the top-left of its larger output."""
    found = []
    if p.g.ndim != 4:
        return found
    for field, at, alt in _alternatives(p.spec, p.x.shape[2:]):
        if field == "eps":
            continue
        try:
            out_shape = alt.output_shape(p.x.shape)
        except Exception:
            continue
        if any(a < b for a, b in zip(out_shape[2:], p.g.shape[2:])):
            continue
        g = np.zeros(out_shape)
        g[:, :, :p.g.shape[2], :p.g.shape[3]] = p.g
        got = _vjp(alt, p, g=g)
        for name in names:
            if got and name in got and p.fits(name, got[name]):
                found.append(f"{name}: the backward ignores the {field}: equals the reference's gradient at {at} "
                             "with the upstream gradient in the top-left of its output")
    return found


def _pool_routing(p: Point) -> list[str]:
    """A max pool's input gradient that sends the upstream gradient to every element of the
    window (as average pooling does, with or without its division)."""
    if not isinstance(p.spec, MaxPool2d) or p.x.ndim != 4:
        return []
    spread = _spread(p.g, p.spec.kernel_size, p.spec.stride, p.spec.padding, p.spec.dilation, p.x.shape[2:])
    k = int(np.prod(p.spec.kernel_size))
    if p.fits("input", spread):
        return ["input: the upstream gradient is routed to every element of its pooling window (average pooling "
                "without the division), where max pooling sends it to the maximum only"]
    if p.fits("input", spread / k):
        return [f"input: the upstream gradient is spread over the pooling window and divided by its size {k} "
                "(average pooling's backward), where max pooling sends it to the maximum only"]
    return []


def _spread(g: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
            dilation: tuple[int, int], hw: tuple[int, int]) -> np.ndarray:
    """``(N, C, H, W)``: every window's upstream value ``g[:, :, i, j]`` added to each of its
    in-bounds input positions."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    out = np.zeros(g.shape[:2] + (hw[0] + 2 * ph, hw[1] + 2 * pw))
    for u in range(kh):
        for v in range(kw):
            rows = slice(u * dh, u * dh + sh * (g.shape[2] - 1) + 1, sh)
            cols = slice(v * dw, v * dw + sw * (g.shape[3] - 1) + 1, sw)
            out[:, :, rows, cols] += g
    return out[:, :, ph:ph + hw[0], pw:pw + hw[1]]


def _norm_terms(p: Point) -> list[str]:
    """A batch/layer norm input gradient missing the path through the mean, through the
    variance, or both. With ``xhat`` the normalised input, ``d = g * gamma``, ``inv =
    1/sqrt(var + eps)`` and means over the normalised axes: the full gradient is
    ``inv * (d - mean(d) - xhat * mean(d * xhat))``; without the mean's path (mean treated
    as a constant) ``inv * (d - xhat * mean(d * xhat))``; without the variance's
    ``inv * (d - mean(d))``; without both ``inv * d``."""
    spec, x = p.spec, p.x
    if isinstance(spec, (BatchNorm1d, BatchNorm2d)) and spec.training:
        axes = spec.reduce_axes(x.shape)
        shape = [1] * x.ndim
        shape[1] = x.shape[1]
        gamma = p.params.get("weight", np.ones(x.shape[1])).reshape(shape if spec.over == "channel" else x.shape[1:])
    elif isinstance(spec, LayerNorm):
        axes = tuple(range(x.ndim - len(spec.normalized_shape), x.ndim))
        gamma = p.params.get("weight", np.ones(spec.normalized_shape))
    else:
        return []
    mean: Callable[[np.ndarray], np.ndarray] = lambda a: a.mean(axis=axes, keepdims=True)  # noqa: E731
    inv = 1 / np.sqrt(x.var(axis=axes, keepdims=True) + spec.eps)
    xhat, d = (x - mean(x)) * inv, p.g * gamma
    if relative_with_floor(inv * (d - mean(d) - xhat * mean(d * xhat)), p.ref["input"]) > p.tol["input"]:
        return []  # the closed form does not reproduce the reference: no claim from it
    forms = (("the path through the mean (the mean treated as a constant)", inv * (d - xhat * mean(d * xhat))),
             ("the path through the variance (the variance treated as a constant)", inv * (d - mean(d))),
             ("both the mean's and the variance's paths (the batch statistics treated as constants)", inv * d))
    return [f"input: the normalisation backward misses {what}" for what, value in forms if p.fits("input", value)]


def _weight_transposed(p: Point) -> list[str]:
    """A Linear input gradient computed with the (square) weight not transposed."""
    w = p.params.get("weight")
    if not isinstance(p.spec, Linear) or w is None or w.ndim != 2 or w.shape[0] != w.shape[1]:
        return []
    got = _vjp(p.spec, p, params={**p.params, "weight": w.T})
    if got and p.fits("input", got["input"]):
        return ["input: computed with the weight not transposed (g @ W where g @ W.T is meant; "
                "a square weight hides the shapes)"]
    return []


def counts(spec: Layer, x: np.ndarray) -> dict[str, int]:
    """Sizes a gradient's constant factor may be (besides the batch and the window): the
    number of windows (output positions), of channels, of pixels of a global pool."""
    out: dict[str, int] = {}
    if x.ndim == 4 and isinstance(spec, (Conv2d, MaxPool2d, AvgPool2d)):
        try:
            oh, ow = spec.output_shape(x.shape)[2:]
        except Exception:
            return out
        out["the number of windows (output positions)"] = oh * ow
    if x.ndim == 4 and isinstance(spec, GlobalAvgPool2d):
        out["the number of pixels H*W"] = x.shape[2] * x.shape[3]
    if x.ndim >= 2 and isinstance(spec, (Conv2d, MaxPool2d, AvgPool2d, BatchNorm2d, GlobalAvgPool2d)):
        out["the number of channels"] = x.shape[1]
    if isinstance(spec, Conv2d):
        out["the number of output channels"] = spec.out_channels
    return out





def reproduces_under(wrapped: Any, layout: Any, x: np.ndarray, g: np.ndarray, result: LayerResult) -> bool:
    """Does the user's code, run under ``layout`` instead of its declared one, reproduce
    every tensor ``result`` compared (output, input and parameter gradients; canonical) within
    that tensor's tolerance? A layout hint is printed only then. The parameters and the
    declared layout are restored afterwards."""
    from reference_models import build

    spec, declared = wrapped.spec, wrapped.layout
    with wrapped.preserved():
        try:
            wrapped.layout = layout
            user = {"output": wrapped.forward(x), "input": wrapped.backward(g), **wrapped.param_grads()}
            params = wrapped.get_params()
        except Exception:  # the code does not even run under that layout
            return False
        finally:
            wrapped.layout = declared
    try:
        res = build("torch", Sequential([spec])).vjp({join_path(spec.name, k): v for k, v in params.items()}, x, g)
    except Exception:
        return False
    ref = {"output": res.output, "input": res.input_grad,
           **{k: res.param_grads[join_path(spec.name, k)] for k in user if join_path(spec.name, k) in res.param_grads}}
    scale = max(float(np.linalg.norm(v)) for k, v in ref.items() if k != "output")
    for tr in result.tensors:
        if tr.name not in user or tr.name not in ref or np.shape(user[tr.name]) != np.shape(ref[tr.name]):
            return False
        floor = 0.0 if tr.name == "output" else 1e-3 * scale
        if relative_with_floor(np.asarray(user[tr.name], np.float64), ref[tr.name], floor) > tr.tolerance:
            return False
    return True

__all__ = ["EPS_TRIED", "Point", "counts", "explain", "reproduces_under"]
