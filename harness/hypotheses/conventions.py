"""Conventions real code follows that a spec field declares: a normalisation's eps, a
dropout that does not scale in training, an epsilon inside a cross-entropy's log. Each is
confirmed against the reference at the convention (not guessed from a factor) and printed
with the declaration that makes the check pass: ``declare BatchNorm1d('bn', 48, eps=1e-06)``.

Tensors are canonical: data ``(N, C, ...)``; a batch norm's weight ``(C,)`` (``(C, H, W)``
with ``over="feature"``), a layer norm's ``normalized_shape``; cross-entropy scores ``(N, K)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import MISSING, fields, replace
from typing import Any

import numpy as np

from ..spec import (
    BatchNorm1d,
    BatchNorm2d,
    Dropout,
    GroupNorm,
    Layer,
    LayerNorm,
    Loss,
    RMSNorm,
    SoftmaxCrossEntropy,
    Upsample,
)
from .conv_norm import align_corners, group_count
from .point import Point, _vjp

# the eps values code writes (1e-5, 10e-7 = 1e-6, 2e-5 ...), after the one estimated from the data
EPS_TRIED = tuple(m * 10.0**-k for k in range(3, 13) for m in (1, 2, 5)) + (0.0,)
# none first: an epsilon too small to change the value (1e-15) is no epsilon
LOG_EPS_TRIED = (0.0, 1e-7, 1e-8, 1e-9, 1e-10, 1e-12, 1e-15, 1e-6, 1e-5)


def declaration(spec: Layer | Loss, show: tuple[str, ...] = (), **changes: Any) -> str:
    """``spec`` with ``changes`` as the call that declares it: the fields without a default
    (and those in ``show``) by position, then every field that differs from its default by
    keyword (``BatchNorm2d('bn', 3, eps=1e-06, over='feature')``, ``Dropout('drop', 0.5, inverted=False)``)."""
    spec = replace(spec, **changes)  # type: ignore[type-var]
    args, positional = [], True
    for f in fields(spec):  # type: ignore[arg-type]
        value = getattr(spec, f.name)
        positional = positional and (f.name in show or f.default is MISSING)
        if positional:
            args.append(repr(value))
        elif value != f.default:
            args.append(f"{f.name}={value!r}")
    return f"{spec.kind}({', '.join(args)})"


def conventions(p: Point, failing: list[str]) -> list[str]:
    """The lines for a norm's eps and a dropout's scaling convention, naming every failing
    tensor the reference at the convention reproduces."""
    if "output" not in failing:
        return []
    if isinstance(p.spec, (BatchNorm1d, BatchNorm2d, LayerNorm, GroupNorm, RMSNorm)):
        return _eps(p, failing) or group_count(p, failing)
    if isinstance(p.spec, Upsample):
        return align_corners(p, failing)
    if isinstance(p.spec, Dropout):
        return _dropout(p, failing)
    return []


def _eps(p: Point, failing: list[str]) -> list[str]:
    """The eps the code uses: the one estimated from its output first, then the usual ones."""
    spec, declared = p.spec, p.spec.eps  # type: ignore[attr-defined]
    for eps in _candidates(_estimate_eps(p), EPS_TRIED):
        if eps == declared:
            continue
        got = _vjp(replace(spec, eps=eps or 1e-300), p)  # type: ignore[type-var]
        if got is None or not p.fits("output", got["output"]):
            continue
        names = ", ".join(n for n in failing if n in got and p.fits(n, got[n]))
        if not eps:
            return [
                f"{names}: the forward matches the reference with no eps (declared {declared!r}): the code "
                "adds no eps to the variance (a constant input divides by zero); add one to the code"
            ]
        return [
            f"{names}: the forward matches the reference with eps={eps!r} (declared {declared!r}): "
            f"declare {declaration(spec, eps=eps)}"
        ]
    return []


def _candidates(estimate: float | None, ladder: tuple[float, ...]) -> Iterator[float]:
    """``estimate`` rounded to 1 and 2 significant digits, then ``ladder``; each once."""
    seen: set[float] = set()
    rounded = [float(f"{estimate:.{d}e}") for d in (0, 1)] if estimate and estimate > 0 else []
    for v in rounded + list(ladder):
        if v not in seen:
            seen.add(v)
            yield v


def _estimate_eps(p: Point) -> float | None:
    """Solve ``y = gamma * (x - mu) / sqrt(var + eps) + beta`` for eps from the user's output:
    per normalised group, the scale s = 1/sqrt(var + eps) by least squares; eps = 1/s**2 - var
    (the median over groups). None when it cannot be read (eval mode, no spread)."""
    spec, x, y = p.spec, p.x, p.user["output"]
    if isinstance(spec, (GroupNorm, RMSNorm)):  # no estimate: the ladder alone
        return None
    if isinstance(spec, LayerNorm):
        axes = tuple(range(x.ndim - len(spec.normalized_shape), x.ndim))
        shape: Any = spec.normalized_shape
    elif spec.training:  # type: ignore[attr-defined]
        axes = spec.reduce_axes(x.shape)  # type: ignore[attr-defined]
        feature = spec.over == "feature"  # type: ignore[attr-defined]
        shape = x.shape[1:] if feature else [x.shape[1]] + [1] * (x.ndim - 2)
    else:
        return None
    ones = np.ones(shape)
    gamma = np.reshape(p.params.get("weight", ones), shape)
    beta = np.reshape(p.params.get("bias", 0 * ones), shape)
    xc = x - x.mean(axis=axes, keepdims=True)
    var = (xc**2).mean(axis=axes, keepdims=True)
    a = gamma * xc
    den = (a * a).sum(axis=axes, keepdims=True)
    with np.errstate(all="ignore"):
        s = ((y - beta) * a).sum(axis=axes, keepdims=True) / den
        eps = 1 / s**2 - var
    ok = np.isfinite(eps) & (den > 0)
    return float(np.median(eps[ok])) if ok.any() else None


def _dropout(p: Point, failing: list[str]) -> list[str]:
    """A dropout whose code follows the other scaling convention: non-inverted (``x * mask``
    in training, ``x * (1 - p)`` at test time) where inverted is declared, or the reverse."""
    spec: Dropout = p.spec  # type: ignore[assignment]
    got = _vjp(replace(spec, inverted=not spec.inverted), p)
    if got is None or not p.fits("output", got["output"]):
        return []
    names = ", ".join(n for n in failing if n in got and p.fits(n, got[n]))
    if spec.inverted:
        return [
            f"{names}: the output is the reference times (1 - p) = {1 - spec.p:g}: a dropout that does not "
            "scale in training (non-inverted: x * mask in training, x * (1 - p) at test time); "
            f"declare {declaration(spec, ('p',), inverted=False)}"
        ]
    return [
        f"{names}: the output is the reference times 1/(1 - p) = {1 / (1 - spec.p):g} under the declared "
        "inverted=False: the code scales by 1/(1 - p) in training (inverted dropout); "
        f"declare {declaration(spec, ('p',), inverted=True)}"
    ]


def log_eps_part(loss: Loss, scores: np.ndarray, target: np.ndarray) -> float:
    """What a declared ``log_eps`` adds to a cross-entropy's value: -sum(t * log(1 + log_eps/p))
    (/ N) for softmax probabilities ``p`` of ``scores`` (N, K); 0 without one. Taken out of the
    user's value before finite differences, whose gradient is the textbook one (the spec's docstring)."""
    eps = getattr(loss, "log_eps", 0.0)
    if not isinstance(loss, SoftmaxCrossEntropy) or not eps:
        return 0.0
    s = np.asarray(scores, np.float64)
    z = s - s.max(axis=1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    t = np.asarray(target)
    onehot = np.eye(s.shape[1])[t] if t.ndim == 1 else t.astype(np.float64)
    total = -float((onehot * np.log1p(eps / prob)).sum())
    return total / s.shape[0] if loss.reduction == "mean" else total


def loss_log_eps(
    loss: Loss, scores: np.ndarray, target: np.ndarray, value: float, truth: float, tol: float
) -> list[str]:
    """A cross-entropy value that is the reference's with another epsilon inside the log
    (``-log(p + 1e-7)``): the line naming ``SoftmaxCrossEntropy(log_eps=...)``, confirmed
    against the torch reference at that epsilon."""
    from reference_models import build

    from ..compare import relative_with_floor
    from ..spec import Flatten, Sequential

    if not isinstance(loss, SoftmaxCrossEntropy) or not np.isfinite(value):
        return []
    ref = build("torch", Sequential([Flatten(name="scores")]))
    for eps in LOG_EPS_TRIED:
        if eps == loss.log_eps:
            continue
        alt = replace(loss, log_eps=eps)
        at = float(ref.loss_vjp({}, scores, alt, target).loss)
        if relative_with_floor(value, at) <= tol and relative_with_floor(at, truth) > 2 * tol:
            if not eps:
                return [
                    f"value: the loss value matches log(p) with no epsilon inside the log (declared "
                    f"log_eps={loss.log_eps!r}): declare {declaration(alt)}"
                ]
            return [
                f"value: the loss value matches log(p + {eps!r}) (an epsilon inside the log): "
                f"declare {declaration(alt)}"
            ]
    return []


__all__ = ["EPS_TRIED", "LOG_EPS_TRIED", "conventions", "declaration", "log_eps_part", "loss_log_eps"]
