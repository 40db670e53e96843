"""Cheap hypotheses about a failing tensor: which one explains the user's value?

Each test compares the user's tensor ``u`` with the reference ``r`` under one hypothesis
and accepts it when the hypothesis reproduces ``u`` to ``tol`` relative error (or, for the
"where" hypotheses, when the error is confined to one region). The first line of each
finding is meant for a person: ``"off by a factor of 4 (= the batch size)"``.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np


def _close(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    """``a`` within ``tol`` relative (norm-wise) of ``b``; never for NaN/Inf (nothing explains them)."""
    if a.shape != b.shape or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return False
    scale = float(np.linalg.norm(b))
    return float(np.linalg.norm(a - b)) <= tol * max(scale, 1e-300)


def diagnose(
    name: str,
    user: np.ndarray,
    ref: np.ndarray,
    *,
    batch: int | None = None,
    window: int | None = None,
    overlap: np.ndarray | None = None,
    groups: int = 1,
    counts: dict[str, int] | None = None,
    axes: str | None = None,
    tol: float = 1e-6,
) -> list[str]:
    """Hypotheses that explain why ``user`` differs from ``ref`` (same shape) for the tensor
    ``name`` (``output``, ``input``, ``weight``, ``bias`` ...). ``batch`` / ``window``: sizes a
    constant factor is compared with. Conv tensors are ``(N or O, C, H, W)``. ``overlap``:
    ``(H, W)`` bool, the input positions that more than one pooling window covers (see
    :func:`window_overlap`); ``groups``: a conv's groups, to name whole groups. ``counts``:
    further sizes a factor may equal, by what they count (``{"the number of windows": 12}``).
    ``axes``: the letters naming a 3-D tensor's axes (``"NTD"`` for a sequence; default ``"NCL"``);
    ``"NCL"`` given explicitly says it is a 1-D conv's data or ``(O, I/groups, k)`` weight, whose
    border and channels the "where" hypotheses then name."""
    u, r = np.asarray(user, np.float64), np.asarray(ref, np.float64)
    found: list[str] = []
    if u.shape != r.shape or not np.isfinite(u).all():
        return found
    denom = float(np.vdot(r, r))
    if denom > 0:
        factor = float(np.vdot(u, r)) / denom
        if _close(u, factor * r, tol) and abs(factor - 1) > tol:
            if abs(factor + 1) <= tol:
                found.append("wrong sign: the user's value is exactly -1 times the reference")
            elif abs(factor) <= tol:
                found.append("zero: the user's value is 0 where the reference is not (never computed, or overwritten)")
            else:
                found.append(f"off by a constant factor {_fraction(factor)}{_named(factor, batch, window, counts)}")
    if u.ndim == 2 and u.shape[0] == u.shape[1] and _close(u, r.T, tol):
        found.append("transposed: the user's value equals the reference transposed")
    if 3 <= u.ndim <= 4:
        found += _permuted(u, r, tol, weight=name == "weight" or name.endswith(".weight"), axes=axes)
    if u.ndim == 4 and u.shape[2:] != (1, 1) and _close(u, r[:, :, ::-1, ::-1], tol):
        found.append(
            "kernel flipped: the user's value is the reference rotated 180 degrees in (H, W) "
            "(convolution where cross-correlation is meant, or the reverse)"
        )
    if u.ndim == 4:
        found += _shifted(u, r, tol)
    if (u.ndim == 4 or (axes == "NCL" and u.ndim == 3)) and min(u.shape[2:]) > 2:
        weight = name == "weight" or name.endswith(".weight")  # a conv weight (O, I/groups, kh, kw), maybe in a span
        found += _where(u, r, tol, groups, axis=0 if weight else 1)
    if u.ndim == 4 and overlap is not None and overlap.shape == u.shape[2:] and overlap.any() and not overlap.all():
        err = np.abs(u - r)
        if float(err[:, :, ~overlap].sum()) <= tol * float(err.sum()):
            found.append(
                "only where pooling windows overlap: positions covered by one window match (gradients "
                "assigned with = where overlapping windows need +=)"
            )
    return found


def _shifted(u: np.ndarray, r: np.ndarray, tol: float) -> list[str]:
    """Is ``u`` the reference moved by one row and/or column (H, W of an (N, C, H, W)
    tensor), apart from what moved out: an off-by-one in slicing, padding or cropping?"""
    h, w = u.shape[2:]
    out = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if (dy, dx) == (0, 0) or (dy and h < 3) or (dx and w < 3):
                continue
            user = u[:, :, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)]
            ref = r[:, :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
            if float(np.linalg.norm(ref)) > 0 and _close(user, ref, tol):
                moves = [f"one row {'down' if dy > 0 else 'up'}"] * bool(dy) + [
                    f"one column {'right' if dx > 0 else 'left'}"
                ] * bool(dx)
                out.append(
                    f"shifted by {' and '.join(moves)}: the user's value is the reference moved "
                    "(an off-by-one in slicing, padding or cropping)"
                )
    return out


def window_overlap(
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    hw: tuple[int, int],
) -> np.ndarray:
    """``(H, W)`` bool: the input positions inside more than one pooling window."""
    count = []
    for k, s, p, d, n in zip(kernel, stride, padding, dilation, hw):
        c = np.zeros(n, dtype=int)
        for start in range(-p, n + p - d * (k - 1), s):
            taps = start + d * np.arange(k)
            c[taps[(taps >= 0) & (taps < n)]] += 1
        count.append(c)
    return np.outer(count[0], count[1]) > 1


def _fraction(f: float) -> str:
    """``f`` as a small fraction when it is one (``1/5``, ``3``), else 6 digits."""
    q = Fraction(f).limit_denominator(64)
    if abs(f - float(q)) < 1e-6 * max(1.0, abs(f)):
        return f"{q.numerator}/{q.denominator}" if q.denominator > 1 else f"{q.numerator}"
    return f"{f:.6g}"


def _named(f: float, batch: int | None, window: int | None, counts: dict[str, int] | None = None) -> str:
    """Which size the factor ``f`` (or ``1/f``) is: the batch, the window, or one of ``counts``
    (all of them when several sizes are equal: the value alone cannot tell them apart)."""
    given = [(batch, "the batch size"), (window, "the window size")] + [(v, k) for k, v in (counts or {}).items()]
    sizes = [(s, what) for s, what in given if s and s > 1]
    times = [f"{what} {s}" for s, what in sizes if abs(f - s) < 1e-6 * s]
    if times:
        return f" (= {' or '.join(times)}: a missing division by it, or a sum where a mean is meant)"
    over = [f"{what} {s}" for s, what in sizes if abs(f * s - 1) < 1e-6]
    if over:
        return f" (= 1/{' or 1/'.join(over)}: an extra division by it)"
    return ""


def _where(u: np.ndarray, r: np.ndarray, tol: float, groups: int = 1, axis: int = 1) -> list[str]:
    """Is the error confined to the border, or to some channels (``axis``: 1 for data
    (N, C, H, W), 0 for a conv weight (O, I/groups, kh, kw), whose groups split O)?"""
    err = np.abs(u - r)
    total = float(err.sum())
    if total <= tol * float(np.abs(r).sum()):
        return []
    out = []
    inner = err[(slice(None), slice(None)) + (slice(1, -1),) * (u.ndim - 2)].sum()
    if axis == 1 and inner <= tol * total:  # data only: a kernel's outer taps are not a padded border
        out.append("only on the border: the interior matches (padding handled wrongly)")
    per_channel = err.sum(axis=tuple(a for a in range(u.ndim) if a != axis))
    bad = np.flatnonzero(per_channel > tol * total)
    if 0 < len(bad) <= len(per_channel) // 2:  # a strict subset, at most half: else "channels" explains nothing
        size = len(per_channel) // groups if groups > 1 and len(per_channel) % groups == 0 else 0
        whole = sorted({int(c) // size for c in bad}) if size else []
        if whole and len(bad) == len(whole) * size:  # exactly whole groups of channels
            out.append(
                f"only in group(s) {', '.join(map(str, whole))} of {groups}: the other groups match "
                "(group offsets or slicing)"
            )
        else:
            shown = ", ".join(str(int(c)) for c in bad[:8]) + (" ..." if len(bad) > 8 else "")
            what = "output channel(s)" if axis == 0 else "channel(s)"
            out.append(
                f"only in {len(bad)} of {len(per_channel)} {what} ({shown}): the others match "
                "(groups or channel indexing)"
            )
    return out


_AXES = {3: "NCL", 4: "NCHW"}


def _permuted(u: np.ndarray, r: np.ndarray, tol: float, weight: bool = False, axes: str | None = None) -> list[str]:
    """Is ``u`` (3-D ``(N, C, L)`` or 4-D ``(N, C, H, W)``; a conv weight ``(O, I, kh, kw)``)
    the reference with its axes permuted (H and W swapped in a col2im), or the reference's
    values laid out in another axis order and read back in this one (a reshape that does not
    undo a transpose)? ``axes``: the letters of a 3-D tensor's axes (a sequence's ``NTD``).
    Transposes of a square 2-D tensor and 180-degree flips are named elsewhere."""
    from itertools import permutations

    names = (
        ("O", "I", "kh", "kw")
        if weight and u.ndim == 4
        else tuple(axes if axes and len(axes) == u.ndim else _AXES[u.ndim])
    )
    out = []
    for p in permutations(range(u.ndim)):
        if p == tuple(range(u.ndim)):
            continue
        moved = np.ascontiguousarray(r.transpose(p))
        order = ", ".join(names[a] for a in p)
        if moved.shape == u.shape and _close(u, moved, tol):
            swapped = [names[a] for a, b in enumerate(p) if a != b]
            what = f"axes {' and '.join(swapped)} swapped" if len(swapped) == 2 else f"axes permuted to ({order})"
            out.append(
                f"{what}: the user's value is the reference with its axes in ({order}) order "
                "(an index order mixed up, e.g. H and W in col2im)"
            )
        elif moved.shape != u.shape and _close(u, moved.reshape(u.shape), tol):
            out.append(
                f"values in the wrong order: the user's value is the reference laid out as ({order}) and "
                f"reshaped as ({', '.join(names)}) (a reshape that does not undo a transpose)"
            )
    return out


def accumulates(first: np.ndarray, second: np.ndarray, tol: float = 1e-9) -> bool:
    """A second backward call at the same point returned twice the first gradient: the code
    adds into its gradient buffers instead of overwriting them."""
    return _close(np.asarray(second, np.float64), 2 * np.asarray(first, np.float64), tol) and bool(np.any(first))


__all__ = ["accumulates", "diagnose", "window_overlap"]
