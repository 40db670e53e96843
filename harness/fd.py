"""Finite-difference probes of a scalar function: the third witness.

The harness probes phi(t) = <f(x + t d), g>, a scalar function of one variable along a
direction ``d`` (a random direction over a whole tensor, or one coordinate), and compares
phi'(0) with the backward's ``<grad, d>``. Central differences at two steps are combined by
Richardson extrapolation::

    D(h) = (phi(h) - phi(-h)) / 2h                       error O(h^2)
    R    = (4 D(h/2) - D(h)) / 3                         error O(h^4)

and ``|D(h/2) - D(h)|`` estimates the error left, so a probe reports how far it can be
trusted. Steps scale with the size of the perturbed values and the dtype of the code
under test (``STEP`` below). A probe that crosses a kink — the reference's activation
pattern (ReLU mask, max-pool argmax) differs between the points it evaluates — is flagged
so the caller discards it and draws another.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .results import FDSummary

# finite differences of the user's forward must agree with its backward to this relative
# error (of the summed terms), by dtype; Richardson makes float64 probes good to ~1e-10
# bfloat16 (numpy has none: torch's and jax's are recorded as float32 values) is keyed by its
# name, ``"bfloat16"``, which callers pass from the code's framework dtype (harness.precision)
BF16 = "bfloat16"
FD_TOL: dict[Any, float] = {
    np.dtype(np.float64): 1e-6,
    np.dtype(np.float32): 2e-2,
    np.dtype(np.float16): 1e-1,
    BF16: 1e-1,
}

# Relative step per dtype: roughly eps**(1/3) (the optimum for a plain central difference),
# which Richardson extrapolation then makes accurate to ~eps**(2/3).
STEP: dict[Any, float] = {
    np.dtype(np.float64): 1e-4,
    np.dtype(np.float32): 3e-2,
    np.dtype(np.float16): 1e-1,
    BF16: 1e-1,
}


def key(dtype: Any) -> Any:
    """The :data:`STEP` / :data:`FD_TOL` key of ``dtype``: ``"bfloat16"`` as it is, anything
    else as a numpy dtype (``"float16"``, ``np.float32`` ...)."""
    return BF16 if isinstance(dtype, str) and dtype == BF16 else np.dtype(dtype)


@dataclass(frozen=True)
class Probe:
    """One finite-difference estimate of the directional derivative phi'(0).

    ``value``: the Richardson-extrapolated estimate; ``error``: |D(h/2) - D(h)|, an estimate
    of the error left (0 for a function the rule differentiates exactly); ``h``: the larger
    step used; ``kink``: the activation pattern changed between the probe points (the
    estimate is then meaningless and must be discarded); ``evals``: calls made.
    """

    value: float
    error: float
    h: float
    kink: bool = False
    evals: int = 4


def step_for(x: np.ndarray, d: np.ndarray, dtype: Any = np.float64) -> float:
    """A step for perturbing ``x`` along ``d``: no element moves by more than the dtype's
    relative step times the scale of ``x`` (its rms, at least 1e-2 so tiny tensors still
    move) — the same for a random direction and for a single coordinate."""
    rel = STEP.get(key(dtype), STEP[np.dtype(np.float32)])
    x_scale = max(_rms(x), 1e-2)
    d_max = max(float(d.max()), -float(d.min())) if d.size else 1.0  # max |d| without a temporary
    return rel * x_scale / max(d_max, 1e-300)


def directional(
    phi: Callable[[float], float],
    h: float,
    *,
    pattern: Callable[[float], Hashable] | None = None,
    accept: Callable[[float], bool] | None = None,
) -> Probe:
    """Richardson-extrapolated central difference of ``phi`` at 0 with step ``h``.

    ``pattern(t)``, if given, returns something comparable (e.g. the bytes of a ReLU mask)
    describing which piece of a piecewise function is active at ``t``; if it differs
    between any of the points used and 0, the probe is marked as crossing a kink.
    ``accept(value)``, if given, is asked about the plain central difference D(h) first:
    when it already agrees with what the caller expects, the probe stops there (2 calls,
    ``error`` 0: agreement needs no error bar); otherwise it goes on to Richardson.
    """
    base = pattern(0.0) if pattern is not None else None
    crossed = lambda ts: pattern is not None and any(pattern(t) != base for t in ts)  # noqa: E731
    vals = [float(phi(h)), float(phi(-h))]
    d1 = (vals[0] - vals[1]) / (2 * h)
    if accept is not None and accept(d1):
        return Probe(value=d1, error=0.0, h=h, kink=crossed((h, -h)), evals=2)
    vals += [float(phi(h / 2)), float(phi(-h / 2))]
    d2 = (vals[2] - vals[3]) / h
    return Probe(value=(4 * d2 - d1) / 3, error=abs(d2 - d1), h=h, kink=crossed((h, -h, h / 2, -h / 2)), evals=4)


def along(
    f: Callable[[np.ndarray], float],
    x: np.ndarray,
    d: np.ndarray,
    *,
    dtype: Any = np.float64,
    h: float | None = None,
    pattern: Callable[[np.ndarray], Hashable] | None = None,
    accept: Callable[[float], bool] | None = None,
    out: np.ndarray | None = None,
) -> Probe:
    """:func:`directional` of ``t -> f(x + t d)`` with a step from :func:`step_for`.

    ``f`` takes an array shaped like ``x`` and returns a scalar; ``pattern`` takes the same
    array; ``accept`` as in :func:`directional`. Neither ``x`` nor ``d`` is modified. Both
    are handed one buffer (``out`` when given, float64 shaped like ``x``), refilled for
    every point: they must not keep it.
    """
    x = np.asarray(x, dtype=np.float64)
    d = np.asarray(d, dtype=np.float64)
    if x.shape != d.shape:
        raise ValueError(f"direction shape {d.shape} differs from the point's {x.shape}")
    step = step_for(x, d, dtype) if h is None else h
    buf = np.empty_like(x) if out is None else out

    def point(t: float) -> np.ndarray:
        # x + t d into one buffer: a fresh array per evaluation page-faults its memory anew
        # (a large share of a probe's cost at 1e7 values); the same bits as x + t * d
        np.multiply(d, t, out=buf)
        return np.add(x, buf, out=buf)

    pat = (lambda t: pattern(point(t))) if pattern is not None else None
    return directional(lambda t: f(point(t)), step, pattern=pat, accept=accept)


def _rms(x: np.ndarray) -> float:
    """Root mean square of ``x`` (0 when empty), by a dot product: no squared temporary."""
    if not x.size:
        return 0.0
    flat = x.reshape(-1)
    return float(np.sqrt(np.dot(flat, flat) / flat.size))


def random_direction(shape: tuple[int, ...], rng: np.random.Generator, out: np.ndarray | None = None) -> np.ndarray:
    """A unit-rms direction of ``shape`` with independent elements uniform on a symmetric
    interval: every element moves, so no element's gradient hides (a continuous distribution:
    a wrong gradient is orthogonal to it with probability 0, unlike random signs). Drawn in
    one generator call into ``out`` (float64, else a new array) and scaled in place: uniform
    draws cost a third of Gaussian ones, which dominated probes of 1e7-value tensors."""
    d = np.empty(shape) if out is None else out
    rng.random(out=d)
    d -= 0.5
    rms = _rms(d) if d.size else 1.0
    if rms > 0:
        d /= rms
    return d


def stratified_coordinates(shape: tuple[int, ...], count: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """``count`` distinct coordinates of a tensor of ``shape`` spread over it: every index of
    the leading axis (output channels) and of each trailing spatial axis (kernel rows and
    columns, hence borders) appears before any repeats, then the rest at random.

    For a conv weight ``(O, I, kh, kw)`` this covers every output channel and every kernel
    position with a handful of probes; for small tensors it returns every coordinate.
    """
    total = int(np.prod(shape)) if shape else 1
    if total <= count:
        return [tuple(int(i) for i in idx) for idx in np.ndindex(*shape)] if shape else [()]
    chosen: dict[tuple[int, ...], None] = {}
    # one pass per axis: walk its indices in a random order, other axes random
    for axis in range(len(shape)):
        for i in rng.permutation(shape[axis]):
            if len(chosen) >= count:
                break
            idx = [int(rng.integers(s)) for s in shape]
            idx[axis] = int(i)
            chosen.setdefault(tuple(idx), None)
    while len(chosen) < count:
        chosen.setdefault(tuple(int(rng.integers(s)) for s in shape), None)
    return list(chosen)


def unit(shape: tuple[int, ...], index: tuple[int, ...]) -> np.ndarray:
    """The coordinate direction ``e_index`` (float64)."""
    e = np.zeros(shape)
    e[index] = 1.0
    return e


# (probe, the backward's <grad, d>, scale of the summed terms[, the references' <ref, d>])
Judged = tuple[Probe, float, float] | tuple[Probe, float, float, float]


def fd_tol(dtype: Any) -> float:
    """:data:`FD_TOL` for ``dtype`` (float32's for dtypes it does not list)."""
    return FD_TOL.get(key(dtype), FD_TOL[np.dtype(np.float32)])


def probes(
    f: Callable[[np.ndarray], float],
    base: np.ndarray,
    grad: np.ndarray,
    rng: np.random.Generator,
    count: int,
    dtype: Any,
    pattern: Callable[[np.ndarray], Hashable] | None,
    ref: np.ndarray | None = None,
) -> list[Judged]:
    """``count`` probes of ``f`` at ``base`` along random directions, each with the backward's
    ``<grad, d>`` (``grad`` shaped like ``base``) and the scale of its summed terms; a probe
    that crosses a kink is kept (it is counted) and replaced by another, up to ``3 * count``
    draws in all. A plain central difference that already agrees settles a probe.

    ``ref``: the references' gradient, when ``f`` is known to match the reference function
    (the forward agrees): each probe also carries ``<ref, d>``, so :func:`summary` can tell a
    probe too coarse to separate the two (float32) from one that sides with the backward."""
    out: list[Judged] = []
    tol = fd_tol(dtype)
    base = np.asarray(base, dtype=np.float64)
    # three work arrays for all the probes (direction, products, points): fresh arrays per
    # probe page-fault their memory anew, a large share of the cost at 1e7 values
    d, terms, points = np.empty_like(base), np.empty_like(base), np.empty_like(base)
    for _ in range(3 * count):
        random_direction(base.shape, rng, out=d)
        np.multiply(grad, d, out=terms)  # one product for both sums (in place for the second)
        bwd, scale = float(terms.sum()), float(np.abs(terms, out=terms).sum())
        r = float(np.multiply(ref, d, out=terms).sum()) if ref is not None else None
        p = along(f, base, d, dtype=dtype, pattern=pattern, accept=_settles(bwd, scale, r, tol), out=points)
        out.append((p, bwd, scale) if r is None else (p, bwd, scale, r))
        if sum(not q[0].kink for q in out) >= count:
            break
    return out


def _settles(bwd: float, scale: float, ref: float | None, tol: float) -> Callable[[float], bool]:
    """Whether a plain central difference ``v`` settles a probe: it agrees with the backward's
    ``<grad, d>`` and is no closer to the reference's ``<ref, d>`` (when there is one)."""
    return lambda v: abs(v - bwd) <= 0.5 * tol * max(scale, 1e-300) and (ref is None or abs(v - bwd) <= abs(v - ref))


def _sides_with_ref(p: Probe, bwd: float, scale: float, ref: float | None) -> bool:
    """The probe is clearly closer to the references' ``<ref, d>`` than to the backward's: the
    two differ by more than twice the probe's distance to the reference plus its own error."""
    if ref is None:
        return False
    apart, to_ref = abs(bwd - ref), abs(p.value - ref) + p.error
    return apart > 2 * to_ref and abs(p.value - bwd) > to_ref and apart > 1e-12 * max(scale, 1e-300)


def _blind(p: Probe, bwd: float, scale: float, ref: float, tol: float) -> bool:
    """The backward's and the references' ``<grad, d>`` differ, but the probe is within ``tol``
    of both: too coarse to witness either way (a float16 gradient 0.5% off under a 10% FD
    tolerance), so its agreement with the backward is no evidence against the references.
    Asked in float16 and bfloat16 only, where FD's tolerance is far coarser than the references'; in
    float32 and float64 such a probe still counts as agreement (tests/test_fd_sides.py)."""
    apart = abs(bwd - ref) > 1e-12 * max(scale, 1e-300)
    return apart and abs(p.value - ref) <= tol * max(scale, 1e-300) and abs(p.value - bwd) <= tol * max(scale, 1e-300)


def summary(judged: list[Judged], dtype: Any) -> FDSummary:
    """The :class:`~harness.results.FDSummary` of judged probes: ``worst`` relative
    disagreement (NaN when the backward or a probe gave NaN: never hidden by ``max``), and
    ``consistent`` (None when the probes were too noisy or all crossed kinks)."""
    from .results import FDSummary

    tol = fd_tol(dtype)
    low = key(dtype) in (np.dtype(np.float16), BF16)  # tolerances far coarser than the references' there
    worst, verdicts = 0.0, list[bool | None]()
    for p, bwd, scale, *ref in judged:
        if p.kink:
            continue
        err = abs(p.value - bwd) / max(scale, 1e-300)
        if np.isnan(err) or err > worst:  # max() would drop a NaN
            worst = err
        if _sides_with_ref(p, bwd, scale, ref[0] if ref else None):
            verdicts.append(
                False
            )  # within tol of the backward, but it sees the references' value: a coarse tol, not agreement
        elif ref and low and _blind(p, bwd, scale, ref[0], tol):
            verdicts.append(None)  # within tol of both: the probe cannot tell the backward from the references
        elif err <= tol:
            verdicts.append(True)
        elif p.error / max(scale, 1e-300) > tol:  # the probe itself is that noisy: no evidence
            verdicts.append(None)
        else:
            verdicts.append(False)  # NaN lands here: a gradient with NaN is never consistent
    consistent = False if False in verdicts else (True if verdicts and all(verdicts) else None)
    return FDSummary(probes=len(judged), kinks=sum(q[0].kink for q in judged), worst=worst, consistent=consistent)


__all__ = [
    "BF16",
    "FD_TOL",
    "key",
    "STEP",
    "Judged",
    "Probe",
    "along",
    "fd_tol",
    "probes",
    "summary",
    "directional",
    "random_direction",
    "step_for",
    "stratified_coordinates",
    "unit",
]
