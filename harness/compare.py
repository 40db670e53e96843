"""Errors between two tensors, reported as numbers with the worst element's index."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Error:
    """How far ``actual`` is from ``expected`` (same shape).

    ``norm``: ||actual - expected||_2 / ||expected||_2 (0 when both are zero, inf when only
    ``expected`` is). ``worst``: the largest |actual - expected| divided by max|expected|,
    so a near-zero element cannot blow it up; ``index`` is where it occurs, with both values.
    """

    norm: float
    worst: float
    index: tuple[int, ...]
    actual: float
    expected: float

    def __str__(self) -> str:
        return (
            f"rel {self.norm:.2e} (worst {self.worst:.2e} at {list(self.index)}: "
            f"{self.actual:.6g} vs {self.expected:.6g})"
        )


def rel_error(actual: Any, expected: Any) -> Error:
    """:class:`Error` of ``actual`` against ``expected``; shapes must match."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return Error(0.0, 0.0, (), 0.0, 0.0)
    diff = np.subtract(a, b, out=np.empty(a.shape))  # an array even for 0-d inputs (abs in place below)
    num = float(np.linalg.norm(diff))
    # a finite norm means every difference is finite (its square sum did not overflow):
    # the elementwise test, which costs a pass and a temporary, only when it did not
    if not np.isfinite(num) and not np.isfinite(diff).all():
        idx = np.unravel_index(int(np.argmin(np.isfinite(diff).ravel())), a.shape)
        return Error(np.inf, np.inf, tuple(int(i) for i in idx), float(a[idx]), float(b[idx]))
    diff = np.abs(diff, out=diff)
    ref = float(np.linalg.norm(b))
    norm = num / ref if ref > 0 else (0.0 if num == 0 else np.inf)
    idx = np.unravel_index(int(np.argmax(diff)), a.shape)
    scale = max(float(b.max()), -float(b.min()))  # max |b| without a temporary
    worst = float(diff[idx]) / scale if scale > 0 else (0.0 if diff[idx] == 0 else np.inf)
    return Error(norm, worst, tuple(int(i) for i in idx), float(a[idx]), float(b[idx]))


# --------------------------------------------------------------------------- tolerances

# Relative tolerance per unit of rounding, by the dtype the user's code computes in, in the
# spirit of jax's public_test_util: a result summing K products carries ~eps*sqrt(K) relative
# rounding, and the table's factor leaves room for different summation orders.
EPS: dict[Any, float] = {
    np.dtype(np.float64): float(np.finfo(np.float64).eps),
    np.dtype(np.float32): float(np.finfo(np.float32).eps),
    np.dtype(np.float16): float(np.finfo(np.float16).eps),
    "bfloat16": 2.0**-7,  # by name: numpy has no bfloat16 (see harness.precision)
}
FACTOR = 64.0
REFS_TOL = 1e-10  # torch and jax, both float64, disagreeing beyond this blame the references


def tolerance(dtype: Any, reduction: int = 1, scale: float = 1.0) -> float:
    """Relative tolerance for a tensor computed in ``dtype`` from sums of ``reduction``
    terms (a conv's C_in*kh*kw, a Linear's in_features, a weight gradient's N*H*W ...):
    ``scale * FACTOR * eps(dtype) * sqrt(reduction)``. ``scale`` is the user's knob. ``dtype``
    may be ``"bfloat16"``, which numpy lacks (its values are recorded as float32)."""
    eps = EPS.get(
        "bfloat16" if isinstance(dtype, str) and dtype == "bfloat16" else np.dtype(dtype), EPS[np.dtype(np.float32)]
    )
    return scale * FACTOR * eps * float(np.sqrt(max(int(reduction), 1)))


def tensor_tolerance(
    dtype: Any, reduction: int, scale: float, noise: float, ref: Any, floor: float, base: float | None = None
) -> float:
    """:func:`tolerance` (or ``base``, a tolerance set otherwise: :func:`harness.judge.row_tolerance`)
    plus ``noise``, an absolute norm-wise error the reading of the gradient adds (an SGD-step
    recovery), made relative to the reference ``ref``."""
    tol = tolerance(dtype, reduction, scale) if base is None else base
    if noise:
        tol += noise / max(float(np.linalg.norm(np.asarray(ref, dtype=np.float64))), floor, 1e-300)
    return tol


def relative_with_floor(actual: Any, expected: Any, floor: float = 0.0) -> float:
    """||actual - expected|| / max(||expected||, floor): a tensor whose true value is zero (a
    conv bias feeding batch norm) is judged against ``floor`` — a scale taken from the
    layer's other tensors — instead of by a meaningless relative error."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    diff = float(np.linalg.norm(a - b))
    denom = max(float(np.linalg.norm(b)), floor)
    if denom == 0.0:
        return 0.0 if diff == 0.0 else np.inf
    return diff / denom


# --------------------------------------------------------------------------- verdicts

VERDICTS = ("pass", "forward", "backward", "both", "inconclusive", "reference", "error")


def verdict(
    *,
    forward_ok: bool,
    backward_ok: bool,
    fd_consistent: bool | None,
    refs_agree: bool = True,
    error: bool = False,
    fd_kinks_only: bool = False,
) -> str:
    """The verdict table of DESIGN.md for one layer.

    forward_ok:    the user's output matches the references.
    backward_ok:   the user's gradients match the references' VJPs.
    fd_consistent: the user's backward agrees with finite differences of the user's own
                   forward (True / False), or ``None`` when the probes were unreliable
                   (kinks crossed, noise above tolerance) even after re-probing.
    refs_agree:    torch and jax agree with each other; if not, the references are at fault.
    error:         the user's code raised or produced NaN / Inf.
    fd_kinks_only: ``fd_consistent`` is None only because every probe of some tensor
                   crossed a kink (none was noisy): when both references agree with the
                   user, FD is then no witness against them and the verdict is ``pass``.
    """
    if error:
        return "error"
    if not refs_agree:
        return "reference"
    if forward_ok and backward_ok:
        # the backward matches the truth; a finite-difference disagreement then means the
        # probe was unreliable (or a kink), never a silent pass or a false failure
        return "pass" if fd_consistent or (fd_consistent is None and fd_kinks_only) else "inconclusive"
    if forward_ok:
        # the forward is right and the backward is not: a backward bug, unless the user's own
        # finite differences agree with it, which a right forward makes impossible off kinks
        return "backward" if fd_consistent is not True else "inconclusive"
    if backward_ok:
        # the backward is the true gradient of the spec; the forward computes something else
        # (possibly differing by a constant, which leaves the gradient unchanged)
        return "forward"
    # both disagree: a backward that faithfully differentiates a wrong forward is a forward
    # bug (or a layout mismatch); an inconsistent one is wrong on both sides
    if fd_consistent is None:
        return "inconclusive"
    return "forward" if fd_consistent else "both"
