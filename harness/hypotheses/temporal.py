"""Hypotheses about a wrong temporal softmax loss (``TemporalSoftmaxCrossEntropy``, logits
``(N, T, V)``, labels ``(N, T)``): the value or the gradient divided by another count than
the reduction's (N*T positions instead of N, N instead of the unmasked count ...), and a
gradient that ignores the mask (non-zero at the ignored positions).

A line is printed only when the mistaken value reproduces the user's within its tolerance
and differs from the truth; the closed forms are built from the reference's own value and
gradient, and the mask's from softmax(logits), checked against the reference first."""

from __future__ import annotations

import numpy as np

from ..compare import relative_with_floor
from ..spec import TemporalSoftmaxCrossEntropy


def _fits(u: np.ndarray, v: np.ndarray, r: np.ndarray, tol: float) -> bool:
    return relative_with_floor(u, v) <= tol and relative_with_floor(v, r) > 2 * tol


def _divisors(loss: TemporalSoftmaxCrossEntropy, target: np.ndarray) -> dict[str, int]:
    """What a temporal loss may be divided by, by name, and which one the reduction uses."""
    n, t = target.shape
    return {
        "N (the batch)": n,
        "N*T (every position)": n * t,
        "the number of unmasked positions": int((target != loss.ignore_index).sum()),
        "nothing (a sum)": 1,
    }


def _used(loss: TemporalSoftmaxCrossEntropy) -> str:
    return {"batch": "N (the batch)", "mean": "the number of unmasked positions", "sum": "nothing (a sum)"}[
        loss.reduction
    ]


def temporal_loss(
    loss: TemporalSoftmaxCrossEntropy,
    scores: np.ndarray,
    target: np.ndarray,
    user: dict[str, np.ndarray],
    ref: dict[str, np.ndarray],
    tol: dict[str, float],
) -> list[str]:
    """Lines for the failing ``value`` and ``scores`` (its gradient) of a temporal loss:
    ``user`` / ``ref`` / ``tol`` by those names."""
    counts = _divisors(loss, target)
    true = counts[_used(loss)]
    found = []
    for name in [k for k in ("value", "scores") if k in user]:
        for label, count in counts.items():
            if count != true and count and _fits(user[name], ref[name] * true / count, ref[name], tol[name]):
                found.append(
                    f"{name}: divided by {label.split(' (')[0]} = {count} where the '{loss.reduction}' reduction "
                    f"divides by {_used(loss).split(' (')[0]} = {true}"
                )
    if "scores" in user:
        found += _mask_ignored(loss, scores, target, user["scores"], ref["scores"], tol["scores"], true)
    return found


def _mask_ignored(
    loss: TemporalSoftmaxCrossEntropy,
    scores: np.ndarray,
    target: np.ndarray,
    u: np.ndarray,
    r: np.ndarray,
    tol: float,
    divisor: int,
) -> list[str]:
    """The gradient without the mask, (softmax - onehot(y)) / divisor at every position, the
    ignored ones with the valid label code with a mask is handed; or, more loosely, a gradient
    wrong only at the ignored positions."""
    ignored = target == loss.ignore_index
    if not ignored.any():
        return []
    z = scores - scores.max(axis=-1, keepdims=True)
    grad = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    labels = loss.valid_labels(target, scores.shape[-1])
    np.put_along_axis(grad, labels[..., None], np.take_along_axis(grad, labels[..., None], -1) - 1, -1)
    grad = grad / divisor
    if relative_with_floor(np.where(ignored[..., None], 0.0, grad), r) > 1e-8:
        return []  # the closed form does not give the truth: no claim from it
    if _fits(u, grad, r, tol):
        return [
            f"scores: the mask is ignored in the gradient: non-zero at the {int(ignored.sum())} ignored positions "
            f"(label {loss.ignore_index}), as if every position counted (the loss value masks them)"
        ]
    if _fits(u, np.where(ignored[..., None], u, r), r, tol):
        return [
            "scores: wrong only at the ignored positions (label == ignore_index), where the gradient must be 0: "
            "the mask is applied to the value, not to the gradient"
        ]
    return []


__all__ = ["temporal_loss"]
