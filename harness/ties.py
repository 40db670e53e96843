"""Ties and kinks as evidence: the user's backward run at deliberate ties and zeros.

The three-way check draws its points off kinks (:mod:`harness.kinks`), so a backward that
mishandles them — a max pool that copies the upstream gradient to every tied maximum
(``mask = win == win.max(); dx += mask * dout``), or routes it to none of them; a
LeakyReLU whose mask counts 0 on both sides — is never seen there. :func:`probe` builds
inputs with exact ties and zeros, runs the user's forward and backward there (through the
wrapped layer: inputs handed as copies; the caller holds the parameters preserved) and
checks that the input gradient is a valid subgradient:

- ReLU / LeakyReLU / ELU at exactly 0: ``dx / g`` between the one-sided derivatives.
- MaxPool2d: within each window, the gradient routed to the window is non-negative on the
  tied maxima only and sums to the window's upstream value (any tie-breaking passes: first
  index, last index, split equally). Windows that overlap are separated by running the
  backward once per class of mutually disjoint windows (the others' upstream value 0), so
  each window's contribution is read off ``dx`` at its own taps.

Every array is canonical (NCHW, float64); the user's dtype only sets the tolerance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .kinks import _taps
from .precision import eps, of, round_to
from .spec import ELU, LeakyReLU, MaxPool2d, ReLU

SLACK = 64.0  # units of the dtype's eps a share or a ratio may be off by rounding


def _upstream(shape: tuple[int, ...], rng: np.random.Generator, precision: str) -> np.ndarray:
    """A random upstream gradient of ``shape`` bounded away from 0 (|g| in [0.5, 2.5)),
    rounded to ``precision`` so the ratios ``dx / g`` are exact in the user's precision."""
    g = rng.choice([-1.0, 1.0], size=shape) * (0.5 + 2 * rng.random(shape))
    return round_to(g, precision)


def probe(wrapped: Any, shape: tuple[int, ...], rng: np.random.Generator) -> list[str]:
    """Findings (diagnosis lines; empty: every gradient was a valid subgradient) of the
    wrapped layer at deliberate ties / zeros on a canonical input of ``shape``. Layers
    without kinks (or spans of several layers) give none. User code that raises or returns
    NaN/Inf propagates, as in the check's other calls."""
    spec = wrapped.spec
    if isinstance(spec, (ReLU, LeakyReLU, ELU)):
        return _elementwise(wrapped, spec, shape, rng)
    if isinstance(spec, MaxPool2d) and len(shape) == 4:
        return _max_pool(wrapped, spec, shape, rng)
    return []


# --------------------------------------------------------------------------- ReLU family at 0


def one_sided(spec: Any) -> tuple[float, float]:
    """(left, right) derivative at 0 of a ReLU-family layer."""
    if isinstance(spec, LeakyReLU):
        return float(spec.negative_slope), 1.0
    if isinstance(spec, ELU):
        return float(spec.alpha), 1.0
    return 0.0, 1.0


def _elementwise(wrapped: Any, spec: Any, shape: tuple[int, ...], rng: np.random.Generator) -> list[str]:
    """About half the elements exactly 0 (the rest off the kink): ``dx / g`` at the zeros
    must lie between the one-sided derivatives."""
    x = rng.standard_normal(shape)
    x = np.sign(x) * (0.5 + np.abs(x))
    zeros = rng.random(shape) < 0.5
    zeros.flat[0] = True
    x[zeros] = 0.0
    precision = of(wrapped)
    g = _upstream(shape, rng, precision)
    wrapped.forward(x)
    dx = wrapped.backward(g)
    lo, hi = sorted(one_sided(spec))
    ratio = dx[zeros] / g[zeros]
    tol = SLACK * eps(precision) * max(1.0, abs(lo), abs(hi))
    bad = (ratio < lo - tol) | (ratio > hi + tol)
    if not bad.any():
        return []
    values = np.unique(np.round(ratio[bad], 6))
    shown = ", ".join(f"{v:.6g}" for v in values[:4]) + (" ..." if len(values) > 4 else "")
    where = tuple(int(i) for i in np.argwhere(zeros)[int(np.flatnonzero(bad)[0])])
    return [
        f"input: {spec.kind} at exactly 0 passes a gradient outside [{lo:g}, {hi:g}]: {shown} times the upstream "
        f"value at {int(bad.sum())} of {int(zeros.sum())} zeros (first at {list(where)}); a valid subgradient "
        f"lies between the one-sided derivatives {lo:g} and {hi:g}"
    ]


# --------------------------------------------------------------------------- max pool ties


def tied_input(shape: tuple[int, int, int, int], rng: np.random.Generator) -> np.ndarray:
    """``(N, C, H, W)`` with many exact ties: the first plane all zeros (whole windows of
    equal values, as after a ReLU), the others small integers (pairs and triples of tied
    maxima, zeros after a ReLU next to negative values)."""
    n, c, _, _ = shape
    x = rng.integers(-2, 3, size=shape).astype(np.float64)
    relu = rng.random((n, c)) < 0.5
    x[relu] = np.maximum(x[relu], 0.0)
    if n * c > 1:
        x[0, 0] = 0.0
    return x


def _windows(layer: MaxPool2d, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """``flat`` (OH, OW, taps) index into the H*W plane of every real tap, ``valid`` (same
    shape, False for padding), and the period (a, b) after which windows stop overlapping."""
    (h, w), periods = hw, []
    th = _taps(h, layer.kernel_size[0], layer.stride[0], layer.padding[0], layer.dilation[0])
    tw = _taps(w, layer.kernel_size[1], layer.stride[1], layer.padding[1], layer.dilation[1])
    for k, s, d in zip(layer.kernel_size, layer.stride, layer.dilation):
        periods.append(-(-(d * (k - 1) + 1) // s))
    full = (len(th), len(tw), th.shape[1], tw.shape[1])
    rows = np.broadcast_to(th[:, None, :, None], full).reshape(len(th), len(tw), -1)
    cols = np.broadcast_to(tw[None, :, None, :], full).reshape(len(th), len(tw), -1)
    valid = (rows >= 0) & (cols >= 0)
    return np.where(valid, rows * w + cols, 0), valid, (periods[0], periods[1])


def _max_pool(wrapped: Any, layer: MaxPool2d, shape: tuple[int, ...], rng: np.random.Generator) -> list[str]:
    """Per class of disjoint windows, one forward and one backward at :func:`tied_input`
    with the upstream value nonzero on that class only; each window's share of its upstream
    value on its maxima (and anything routed elsewhere) judged by :func:`_judge_windows`."""
    x = tied_input(shape, rng)  # type: ignore[arg-type]
    n, c, h, w = shape
    flat, valid, (a, b) = _windows(layer, (h, w))
    oh, ow = flat.shape[:2]
    vals = np.where(valid, x.reshape(n, c, h * w)[:, :, flat], -np.inf)  # (N, C, OH, OW, taps)
    top = vals.max(axis=-1, keepdims=True)
    is_max = valid & (vals == top)
    precision = of(wrapped)
    g = _upstream((n, c, oh, ow), rng, precision)
    share = np.zeros(vals.shape)  # each window's dx at its taps over its upstream value
    stray = 0.0  # the largest |dx| anywhere but a maximum of an active window, relative to |g|
    for r in range(a):
        for s in range(b):
            active = np.zeros((oh, ow), dtype=bool)
            active[r::a, s::b] = True
            if not active.any():
                continue
            wrapped.forward(x)
            dx = wrapped.backward(np.where(active, g, 0.0)).reshape(n, c, h * w)
            share[:, :, active] = (np.where(valid, dx[:, :, flat], 0.0) / g[..., None])[:, :, active]
            allowed = np.zeros((n, c, h * w), dtype=bool)
            ni, ci, oi, wi, ti = np.nonzero(is_max & active[None, None, :, :, None])
            allowed[ni, ci, flat[oi, wi, ti]] = True
            stray = max(stray, float(np.abs(np.where(allowed, 0.0, dx)).max(initial=0.0)) / float(np.abs(g).max()))
    return _judge_windows(share, is_max, stray, precision)


def _judge_windows(share: np.ndarray, is_max: np.ndarray, stray: float, precision: str) -> list[str]:
    """Findings from every window's ``share`` (N, C, OH, OW, taps) of its upstream value and
    its maxima ``is_max`` (same shape): a valid subgradient puts shares >= 0 on the maxima
    only, summing to 1. ``stray``: the largest |dx| off every active window's maxima."""
    ties = is_max.sum(axis=-1)
    tol = SLACK * eps(precision) * float(np.sqrt(share.shape[-1]))
    total = np.where(is_max, share, 0.0).sum(axis=-1)
    negative = (np.where(is_max, share, 0.0) < -tol).any(axis=-1)
    off = np.abs(np.where(is_max, 0.0, share)).max(axis=-1, initial=0.0) > tol
    wrong = (np.abs(total - 1) > tol * np.maximum(ties, 1)) | negative | off
    found = []
    if wrong.any():
        first = tuple(int(i) for i in np.argwhere(wrong)[0])
        k, sums = ties[wrong], total[wrong]
        where = f"first at window {list(first)} (N, C, OH, OW), {int(ties[first])} tied maxima"
        tied = int((ties >= 2).sum())
        if (k >= 2).all() and np.allclose(sums, k, atol=tol * k.max()) and not negative.any() and not off.any():
            many = f"{int(k.min())}" if k.min() == k.max() else f"{int(k.min())} to {int(k.max())}"
            found.append(
                f"input: at tied maxima the gradient is copied to each of the k ties: k times too large "
                f"(k = {many}; {int(wrong.sum())} of {tied} windows with ties; {where}); a valid "
                "subgradient splits the upstream value over the ties (or picks one)"
            )
        elif (k >= 2).all() and np.allclose(sums, 0, atol=tol) and not off.any():
            found.append(
                f"input: at tied maxima no gradient is routed (the upstream value is lost) in "
                f"{int(wrong.sum())} of {tied} windows with ties ({where}); a valid subgradient sends it "
                "to one of the tied maxima or splits it over them"
            )
        else:
            what = (
                "part of it goes to elements that are not the window's maximum"
                if off.any()
                else "a tied maximum gets a share of the opposite sign"
                if negative.any()
                else f"the shares sum to {float(sums[0]):.9g} times the upstream value instead of 1"
            )
            found.append(
                f"input: max pool gradient at tied maxima is not a valid subgradient in {int(wrong.sum())} "
                f"windows: {what} ({where})"
            )
    if stray > tol and not found:
        found.append(
            f"input: at tied maxima the gradient reaches elements outside the windows' maxima "
            f"({stray:.3g} times the upstream value)"
        )
    return found


__all__ = ["one_sided", "probe", "tied_input"]
