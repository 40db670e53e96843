"""Calls that are not deterministic: the run-to-run spread of the user's code at one point,
used as the noise floor of the verdict.

A backward built on atomics (a GPU kernel's ``atomicAdd``, ``index_add_``, a reduction split
over threads) sums its terms in an order that changes from call to call, so two calls at the
same point differ by a few rounding errors. The check already calls the backward twice at the
point (:func:`harness.check._second_backward`); when the two differ (and the second is not
the first doubled, an accumulation: :func:`harness.findings.accumulating`), :func:`measure`
calls the forward and backward :data:`REPEATS` - 1 times more at the point and keeps, per
tensor, the largest norm-wise distance of a call from the first, with the worst element.
Deterministic code (a bitwise-equal second call) costs nothing extra.

:func:`judged` puts each spread next to its tensor's reference: within :func:`cap`,
:data:`SPREAD_MULTIPLE` times it is added to that tensor's tolerance (:func:`noise`); above,
it is too large to be rounding, is no floor, and fails the layer on its side (:func:`enforce`).
:func:`lines` says which, on the entry, whatever the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .compare import EPS, tolerance
from .findings import accumulating
from .results import LayerResult, error_map

# calls compared with the first at the point (the second backward's among them): 7 in all.
# Few, since each is a forward and a backward; their largest spread underestimates the range
# a kernel can reach, hence SPREAD_MULTIPLE
REPEATS = 6
SPREAD_MULTIPLE = 4.0


@dataclass(frozen=True)
class Spread:
    """The run-to-run spread of one tensor (``output``, ``input``, a local parameter name):
    ``calls`` at the point, ``absolute`` the largest ||call - first call|| (inf when a call
    gave NaN/Inf), ``index`` its worst element (canonical layout). Once :func:`judged`:
    ``relative`` to the reference as its tolerance is, and the ``cap`` it must stay within;
    ``inherited``: a gradient's spread that follows a forward whose own spread is too large."""

    name: str
    calls: int
    absolute: float
    index: tuple[int, ...]
    relative: float = float("nan")
    cap: float = float("inf")
    inherited: bool = False

    @property
    def side(self) -> str:
        return "forward" if self.name == "output" else "backward"

    @property
    def too_large(self) -> bool:
        """Above the cap (NaN relative counts as above): not rounding, no floor."""
        return not self.relative <= self.cap


def stepped(wrapped: Any) -> bool:
    """The backward wrote into the parameters (an undeclared SGD step): they are put back
    before the next forward at the point."""
    return any(e.side == "backward" and e.array.startswith("parameter") for e in wrapped.effects)


def _values(y: np.ndarray, dx: np.ndarray | None, grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"output": y, **({"input": dx} if dx is not None else {}), **grads}


def measure(wrapped: Any, x: np.ndarray, g: np.ndarray, seen: dict[str, Any]) -> list[Spread]:
    """The spreads of the tensors whose calls at the point differed, from ``seen``'s first
    calls (``y``, ``dx``, ``grads``) and second (``y_again``, ``dx_again``, ``again``), plus
    :data:`REPEATS` - 1 forward-and-backward pairs at ``x`` with ``g`` when the two differ
    (a forward before each backward: its cache is then the point's, whether or not the code
    allows two backwards after one forward). Nothing, and no call, when they are bitwise
    equal; the forward's alone when the backward accumulates (its repeats would only double);
    nothing when every call after the first agrees bitwise (the first call's difference is then
    the code's state, judged by the comparison as it is)."""
    first = _values(seen["y"], seen["dx"], seen["grads"])
    calls = [_values(seen["y_again"], seen["dx_again"], seen["again"])]
    if all(np.array_equal(v, calls[0][k], equal_nan=True) for k, v in first.items()):
        return []
    if accumulating(seen["grads"], seen["again"], wrapped.dtype):
        calls = [{"output": seen["y_again"]}]
    else:
        for _ in range(REPEATS - 1):
            if stepped(wrapped):
                wrapped.set_params(seen["params"])
            y = wrapped.forward(x)
            calls.append(_values(y, wrapped.backward(g), wrapped.param_grads()))
    if len(calls) > 1 and all(np.array_equal(v, calls[0][k]) for c in calls[1:] for k, v in c.items()):
        return []  # only the first call differs: a state it left behind (a cache one forward old), not noise
    found = [_spread(k, v, [c[k] for c in calls if k in c]) for k, v in first.items()]
    return [s for s in found if s.absolute > 0]


def _spread(name: str, first: np.ndarray, others: list[np.ndarray]) -> Spread:
    """The largest norm-wise distance of ``others`` from ``first``, and its worst element."""
    absolute, index = 0.0, tuple(0 for _ in np.shape(first))
    for value in others:
        diff = np.abs(np.asarray(value, np.float64) - first)
        distance = float(np.linalg.norm(diff))
        distance = distance if np.isfinite(distance) else float("inf")
        if distance > absolute:
            absolute = distance
            index = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape)) if diff.size else ()
    return Spread(name, 1 + len(others), absolute, index)


def cap(dtype: Any, reduction: int, tol_scale: float, computes_in: str | None = None) -> float:
    """The largest relative spread taken for rounding: sqrt(eps) of ``dtype`` (half its digits;
    summing the same terms in another order moves a float32 result by ~eps*sqrt(K), orders
    below it even when the sum cancels), or the table's own tolerance for the tensor when that
    is larger (a spread the table accepts is never blamed). ``computes_in``: the precision's
    name when numpy's dtype does not tell it (``"bfloat16"``, held as float32)."""
    from .precision import eps as eps_of

    eps = eps_of(computes_in) if computes_in else EPS.get(np.dtype(dtype), EPS[np.dtype(np.float32)])
    return max(float(np.sqrt(eps)), tolerance(dtype, reduction, tol_scale))


def judged(
    spreads: list[Spread], tensors: list[tuple], dtype: Any, tol_scale: float, computes_in: str | None = None
) -> list[Spread]:
    """``spreads`` of the compared tensors (rows of :func:`harness.judge._compared`), each
    relative to its reference (over its floor, as :func:`harness.compare.tensor_tolerance`
    makes noise relative) with its :func:`cap`; a gradient's spread is ``inherited`` when the
    forward's is too large (the backward follows the forward's cache)."""
    rows = {name: (ref, reduction, floor) for name, _, _, ref, _, reduction, floor in tensors}
    out = []
    for s in spreads:
        if s.name in rows:
            ref, reduction, floor = rows[s.name]
            scale = max(float(np.linalg.norm(np.asarray(ref, np.float64))), floor, 1e-300)
            out.append(replace(s, relative=s.absolute / scale, cap=cap(dtype, reduction, tol_scale, computes_in)))
    forward_bad = any(s.side == "forward" and s.too_large for s in out)
    return [replace(s, inherited=forward_bad and s.side == "backward") for s in out]


def noise(base: dict[str, float], spreads: list[Spread]) -> dict[str, float]:
    """``base`` (what reading a gradient adds, by tensor name) plus :data:`SPREAD_MULTIPLE`
    times each spread within its cap: the absolute noise floor of the judge and the probes."""
    out = dict(base)
    for s in spreads:
        if not s.too_large and not s.inherited:
            out[s.name] = out.get(s.name, 0.0) + SPREAD_MULTIPLE * s.absolute
    return out


def enforce(
    result: LayerResult, spreads: list[Spread], ok: tuple[bool, bool], tensors: list[tuple]
) -> tuple[bool, bool]:
    """A spread too large to be rounding fails its tensor and the layer on its side
    (``forward``, ``backward``, or ``both`` with the judge's own failures; ``error`` and
    ``reference`` verdicts stand). ``ok``: the judge's (forward_ok, backward_ok); returns them
    updated."""
    bad = [s for s in spreads if s.too_large and not s.inherited]
    if not bad:
        return ok
    arrays = {name: (user, ref) for name, _, user, ref, *_ in tensors}
    for tr in result.tensors:
        if tr.name in {s.name for s in bad} and tr.ok:
            tr.ok, tr.error_map = False, error_map(*arrays[tr.name])
    forward_ok = ok[0] and all(s.side != "forward" for s in bad)
    backward_ok = ok[1] and all(s.side != "backward" for s in bad)
    if result.verdict in ("error", "reference"):
        return forward_ok, backward_ok
    was = {"forward": {"forward"}, "backward": {"backward"}, "both": {"forward", "backward"}}
    sides = was.get(result.verdict, set()) | {s.side for s in bad}
    if result.verdict in ("pass", "inconclusive"):
        result.message = ""  # a note on finite differences for a verdict that no longer stands
    result.verdict = "both" if len(sides) == 2 else sides.pop()
    return forward_ok, backward_ok


def lines(spreads: list[Spread], dtype: Any) -> list[str]:
    """One diagnosis line per judged spread: its size and worst element, and what was done
    with it (added to the tolerance; too large to be rounding; following the forward).
    ``dtype``: what the code computes in, a numpy dtype or a precision's name ("bfloat16")."""
    out = []
    for s in spreads:
        what = s.side
        said = (
            f"{s.name}: the {what} is not deterministic: {s.calls} calls at the same point spread by "
            f"{s.relative:.1e} relative (worst at {list(s.index)})"
        )
        if s.inherited:
            said += ", following the forward, which is not deterministic either; not added to its tolerance"
        elif s.too_large:
            said += (
                f", too large to be rounding in {dtype if isinstance(dtype, str) else np.dtype(dtype)} (above {s.cap:.1e}): a race, uninitialised "
                f"memory or a random draw in the {what}"
            )
        else:
            said += f"; {SPREAD_MULTIPLE:g}x that spread is added to its tolerance"
        out.append(said)
    return out


__all__ = ["REPEATS", "SPREAD_MULTIPLE", "Spread", "cap", "enforce", "judged", "lines", "measure", "noise", "stepped"]
