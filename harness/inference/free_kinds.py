"""Candidates for parameter-free layers, read from one example pair (x, y) as the user's code
takes and returns them: elementwise activations (a slope or alpha fitted from the values),
softmax along each axis, dropout (mask, p and inversion from the zero pattern and the scale),
max/average pools (window, stride and padding from the output shape, under NCHW and NHWC),
global average pooling and flatten (C,H,W or H,W,C order). Nothing here is confirmed: each
candidate is scored against the PyTorch reference by :mod:`.free`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..adapters.layouts import Layout
from ..spec import (
    ELU,
    GELU,
    AvgPool2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Layer,
    LeakyReLU,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Softmax,
    SpecError,
    Tanh,
)

NCHW, NHWC = Layout(), Layout(data="NHWC")
MAX_WINDOW = 8  # pool windows tried up to this size per axis (real code: 2 or 3)


@dataclass
class Cand:
    """One candidate: ``spec`` read under ``layout``; ``mask``: for a training-mode dropout,
    the 0/1 mask read from each pair (canonical shape), else None; ``note``: how a
    hyperparameter was read."""

    spec: Layer
    layout: Layout = NCHW
    note: str = ""
    mask: list[np.ndarray] | None = field(default=None)


def nice(value: float, rtol: float) -> float:
    """The shortest decimal within ``rtol`` (relative) of ``value``: 0.0100000003 -> 0.01."""
    for digits in range(1, 16):
        short = float(f"{value:.{digits}g}")
        if abs(short - value) <= rtol * max(abs(value), 1e-300):
            return short
    return float(value)


def elementwise(name: str, x: np.ndarray, y: np.ndarray, rtol: float) -> list[Cand]:
    """Shape-preserving kinds for one pair ``x -> y`` (any shape, read as given)."""
    out = [Cand(ReLU(name)), Cand(Sigmoid(name)), Cand(Tanh(name))]
    out += [Cand(GELU(name), note="approximate 'none' (erf)"), Cand(GELU(name, "tanh"), note="approximate 'tanh'")]
    out += _leaky(name, x, y, rtol) + _elu(name, x, y, rtol)
    out += [Cand(Softmax(name, a), note=f"axis {a} read from the values") for a in range(1, x.ndim) if x.shape[a] > 1]
    out += dropout(name, x, y, rtol)
    return out


def _leaky(name: str, x: np.ndarray, y: np.ndarray, rtol: float) -> list[Cand]:
    """LeakyReLU with the slope y/x read where x < 0 (none when it is 0 or 1: ReLU / identity)."""
    neg = x < -1e-3 * max(float(np.abs(x).max(initial=0.0)), 1e-300)
    if not neg.any():
        return []
    slope = float(np.median(y[neg] / x[neg]))
    if not np.isfinite(slope) or abs(slope) < rtol or abs(slope - 1) < rtol:
        return []
    slope = nice(slope, rtol)
    return [Cand(LeakyReLU(name, slope), note=f"negative_slope {slope:g} fitted from y/x where x < 0")]


def _elu(name: str, x: np.ndarray, y: np.ndarray, rtol: float) -> list[Cand]:
    """ELU with alpha = y / (exp(x) - 1) read where x < 0."""
    neg = x < -0.05
    if not neg.any():
        return []
    alpha = float(np.median(y[neg] / np.expm1(x[neg].astype(np.float64))))
    if not np.isfinite(alpha) or alpha <= rtol:
        return []
    alpha = nice(alpha, rtol)
    return [Cand(ELU(name, alpha), note=f"alpha {alpha:g} fitted from y / (exp(x) - 1) where x < 0")]


def dropout(name: str, x: np.ndarray, y: np.ndarray, rtol: float) -> list[Cand]:
    """A dropout read from the zero pattern (the mask) and the scale of the kept units.

    The scale c gives p = 1 - 1/c (inverted); c = 1 is a dropout that does not scale in
    training, whose p only matters in eval mode and is read from the fraction dropped. A
    pattern that is exactly x > 0 is a ReLU's, not a mask; no zeros at all is the identity,
    read as an eval-mode dropout."""
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    kept = (yf != 0) | (xf == 0)
    if kept.all():
        return [Cand(Dropout(name, training=False), note="the identity (an eval-mode dropout)")]
    nz = xf != 0  # where x is 0 the output cannot tell a dropped unit from a kept one
    if np.array_equal(kept[nz], xf[nz] > 0) or not (kept & nz).any():
        return []
    c = float(np.median(yf[kept & (xf != 0)] / xf[kept & (xf != 0)]))
    if not np.isfinite(c) or c < 1 - rtol:
        return []
    mask = kept.astype(np.float64)
    if abs(c - 1) <= rtol:
        p = min(nice(round(1 - float(mask.mean()), 2), 1e-9), 0.99)
        note = (
            f"mask read from the zeros; kept units unscaled (inverted=False); p {p:g} is the fraction dropped "
            "(it only changes the eval-mode forward)"
        )
        twin = "the inverted reading of the same mask (a forward that forgot its 1/(1-p) scale?)"
        return [
            Cand(Dropout(name, p, inverted=False), note=note, mask=[mask]),
            Cand(Dropout(name, p), note=twin, mask=[mask]),  # refuted by the values; there for the backward to compare
        ]
    p = nice(1 - 1 / c, rtol * c)
    if not 0 < p < 1:
        return []
    note = f"mask read from the zeros; p {p:g} from the kept units' scale 1/(1-p) = {c:.6g}"
    return [Cand(Dropout(name, p), note=note, mask=[mask])]


def _axis_windows(size: int, out: int) -> list[tuple[int, int, int]]:
    """(kernel, stride, padding) on one axis of ``size`` that give ``out`` outputs; padding at
    most half the window; the stride at most the window (a larger one skips pixels)."""
    found = []
    for k in range(1, min(size, MAX_WINDOW) + 1):
        for s in range(1, k + 1):
            for p in range(0, k // 2 + 1):
                if (size + 2 * p - k) // s + 1 == out and size + 2 * p >= k:
                    found.append((k, s, p))
    return found


def pools(name: str, x: np.ndarray, y: np.ndarray) -> list[Cand]:
    """Max and average pools whose output shape is y's, under NCHW and NHWC data."""
    out: list[Cand] = []
    for lay in (NCHW, NHWC):
        xs, ys = _canon_shape(x.shape, lay), _canon_shape(y.shape, lay)
        if xs[:2] != ys[:2]:
            continue
        where = "" if lay == NCHW else " (NHWC data)"
        for kh, sh, ph in _axis_windows(xs[2], ys[2]):
            for kw, sw, pw in _axis_windows(xs[3], ys[3]):
                kw_: dict[str, Any] = {"kernel_size": _one(kh, kw), "stride": _one(sh, sw), "padding": _one(ph, pw)}
                note = f"window {kh}x{kw}, stride {sh}x{sw}, padding {ph}x{pw} from the output shape{where}"
                try:
                    out.append(Cand(MaxPool2d(name, **kw_), lay, note))
                    out.append(Cand(AvgPool2d(name, **kw_), lay, note))
                    if ph or pw:
                        out.append(Cand(AvgPool2d(name, **kw_, count_include_pad=False), lay, note))
                except SpecError:
                    continue
    return out


def _one(a: int, b: int) -> int | tuple[int, int]:
    return a if a == b else (a, b)


def _canon_shape(shape: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    if len(shape) == 4 and layout.data == "NHWC":
        return (shape[0], shape[3], shape[1], shape[2])
    return tuple(shape)


def reductions(name: str, x: np.ndarray, y: np.ndarray) -> list[Cand]:
    """Global average pools (keepdims from y's rank) and flattens (C,H,W or H,W,C order)."""
    out: list[Cand] = []
    if x.ndim == 4:
        for lay in (NCHW, NHWC):
            n, c = _canon_shape(x.shape, lay)[:2]
            where = "" if lay == NCHW else " (NHWC data)"
            if y.shape == (n, c):
                out.append(Cand(GlobalAvgPool2d(name), lay, f"mean over H, W{where}"))
            if y.shape == _user_shape((n, c, 1, 1), lay):
                out.append(Cand(GlobalAvgPool2d(name, keepdims=True), lay, f"keepdims from the output shape{where}"))
    if x.ndim >= 3 and y.shape == (x.shape[0], int(np.prod(x.shape[1:]))):
        note = "C,H,W order read from the values"
        if x.ndim == 4:
            note += " (the same function as flattening NHWC data in H,W,C order)"
        out.append(Cand(Flatten(name), NCHW, note))
        if x.ndim == 4:
            note = "H,W,C order read from the values (the same function as flattening NHWC data as it comes)"
            out.append(Cand(Flatten(name), Layout(flatten="HWC"), note))
    return out


def _user_shape(shape: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    return (shape[0], shape[2], shape[3], shape[1]) if layout.data == "NHWC" else shape


def candidates(name: str, x: np.ndarray, y: np.ndarray, rtol: float) -> list[Cand]:
    """Every candidate whose output shape is y's, read from the pair ``x -> y``."""
    if x.ndim < 1 or y.ndim < 1 or x.shape[:1] != y.shape[:1]:
        return []
    if x.shape == y.shape:
        out = elementwise(name, x, y, rtol)
    else:
        out = reductions(name, x, y)
    if x.ndim == 4 and y.ndim == 4:
        out += pools(name, x, y)
    return out
