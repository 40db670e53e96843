"""Hypotheses about a wrong gradient: one sample's or one window's contribution, a backward
that ignores its stride, a max pool routing to the whole window, a normalisation missing a
path, a square weight not transposed, the upstream gradient passed through."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..compare import relative_with_floor
from ..spec import AvgPool2d, BatchNorm1d, BatchNorm2d, LayerNorm, Linear, MaxPool2d
from .conv_norm import norm_terms, upsample_copies
from .elementwise import wrong_derivative
from .point import Point, _alternatives, _vjp


def wrong_gradients(p: Point, names: list[str], forward_ok: bool) -> list[str]:
    """Hypotheses for the failing gradients ``names``."""
    found = []
    if "input" in names and p.fits("input", p.g if p.g.shape == p.x.shape else None):
        found.append("input: the upstream gradient passed through unchanged (no derivative or mask applied)")
    found += _partial_sums(p, [n for n in names if n != "input"])
    found += _ignored_hyperparameter(p, names)
    if "input" in names and forward_ok:
        for check in (
            _pool_routing,
            _window_transposed,
            _norm_terms,
            norm_terms,
            upsample_copies,
            _weight_transposed,
            wrong_derivative,
        ):
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
        cases += [
            (f"only the {w} sample of the batch ({i + 1} of {n})", (i,)) for w, i in (("first", 0), ("last", n - 1))
        ]
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
                found.append(
                    f"{name}: {label} contributes: equals the reference's gradient from it alone "
                    "(= where += is needed in the loop)"
                )
    return found


def _ignored_hyperparameter(p: Point, names: list[str]) -> list[str]:
    """A backward written for stride 1 (or no dilation / other padding): the gradients equal
    the reference's VJP at that value with ``g`` placed in the top-left of its larger output."""
    found: list[str] = []
    if p.g.ndim not in (3, 4):  # (N, C, L) or (N, C, H, W)
        return found
    for field, at, alt in _alternatives(p.spec, p.x.shape[2:]):
        try:
            out_shape = alt.output_shape(p.x.shape)
        except Exception:
            continue
        if len(out_shape) != p.g.ndim or any(a < b for a, b in zip(out_shape[2:], p.g.shape[2:])):
            continue
        g = np.zeros(out_shape)
        g[(slice(None), slice(None)) + tuple(slice(0, s) for s in p.g.shape[2:])] = p.g
        got = _vjp(alt, p, g=g)
        for name in names:
            if got and name in got and p.fits(name, got[name]):
                corner = "start" if p.g.ndim == 3 else "top-left"
                found.append(
                    f"{name}: the backward ignores the {field}: equals the reference's gradient at {at} "
                    f"with the upstream gradient in the {corner} of its output"
                )
    return found


def _pool_routing(p: Point) -> list[str]:
    """A max pool's input gradient that sends the upstream gradient to every element of the
    window (as average pooling does, with or without its division)."""
    if not isinstance(p.spec, MaxPool2d) or p.x.ndim != 4:
        return []
    spread = _spread(p.g, p.spec.kernel_size, p.spec.stride, p.spec.padding, p.spec.dilation, p.x.shape[2:])
    k = int(np.prod(p.spec.kernel_size))
    if p.fits("input", spread):
        return [
            "input: the upstream gradient is routed to every element of its pooling window (average pooling "
            "without the division), where max pooling sends it to the maximum only"
        ]
    if p.fits("input", spread / k):
        return [
            f"input: the upstream gradient is spread over the pooling window and divided by its size {k} "
            "(average pooling's backward), where max pooling sends it to the maximum only"
        ]
    return []


def _window_transposed(p: Point) -> list[str]:
    """A pool's input gradient with the row and column inside every (square, non-overlapping,
    unpadded) window swapped: ``(N, C, H/k, k, W/k, k)`` with its two ``k`` axes exchanged."""
    spec, (n, c, *hw) = p.spec, p.x.shape
    if not isinstance(spec, (MaxPool2d, AvgPool2d)) or p.x.ndim != 4 or spec._dilation() != (1, 1):
        return []
    (kh, kw), stride = spec.kernel_size, spec.stride
    if kh != kw or kh < 2 or stride != (kh, kw) or any(spec.padding) or hw[0] % kh or hw[1] % kw:
        return []
    ref = p.ref["input"].reshape(n, c, hw[0] // kh, kh, hw[1] // kw, kw)
    if p.fits("input", ref.transpose(0, 1, 2, 5, 4, 3).reshape(p.x.shape)):
        return [
            "input: the row and column inside each pooling window swapped: every gradient lands at the mirror "
            "of its position in the window (the window's axes exchanged when it is unfolded)"
        ]
    return []


def _spread(
    g: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    hw: tuple[int, int],
) -> np.ndarray:
    """``(N, C, H, W)``: every window's upstream value ``g[:, :, i, j]`` added to each of its
    in-bounds input positions."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    out = np.zeros(g.shape[:2] + (hw[0] + 2 * ph, hw[1] + 2 * pw))
    for u in range(kh):
        for v in range(kw):
            rows = slice(u * dh, u * dh + sh * (g.shape[2] - 1) + 1, sh)
            cols = slice(v * dw, v * dw + sw * (g.shape[3] - 1) + 1, sw)
            out[:, :, rows, cols] += g
    return out[:, :, ph : ph + hw[0], pw : pw + hw[1]]


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
    forms = (
        ("the path through the mean (the mean treated as a constant)", inv * (d - xhat * mean(d * xhat))),
        ("the path through the variance (the variance treated as a constant)", inv * (d - mean(d))),
        ("both the mean's and the variance's paths (the batch statistics treated as constants)", inv * d),
    )
    return [f"input: the normalisation backward misses {what}" for what, value in forms if p.fits("input", value)]


def _weight_transposed(p: Point) -> list[str]:
    """A Linear input gradient computed with the (square) weight not transposed."""
    w = p.params.get("weight")
    if not isinstance(p.spec, Linear) or w is None or w.ndim != 2 or w.shape[0] != w.shape[1]:
        return []
    got = _vjp(p.spec, p, params={**p.params, "weight": w.T})
    if got and p.fits("input", got["input"]):
        return [
            "input: computed with the weight not transposed (g @ W where g @ W.T is meant; "
            "a square weight hides the shapes)"
        ]
    return []


__all__ = ["wrong_gradients"]
