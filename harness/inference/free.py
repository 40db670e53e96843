"""Parameter-free layers from their forward: which kind (ReLU, LeakyReLU, ELU, GELU, Sigmoid,
Tanh, Softmax, Dropout, MaxPool2d, AvgPool2d, GlobalAvgPool2d, Flatten) and hyperparameters
reproduce the user's output, confirmed by the PyTorch reference.

:func:`free_fits` takes the user's input and output as the code takes and returns them (NCHW
or NHWC 4-D, 2-D features, ...), reads candidates from the shapes and values
(:mod:`.free_kinds`), scores each against ``reference_models.build("torch", ...)`` on every
pair given, drops candidates that are the same function as a simpler confirmed one, and
returns the rest best first. Deciding ``exact`` / ``ambiguous`` / ``unmatched`` from the list
is the caller's (:mod:`.layer`): the error of each :class:`~.result.Fit` is there to compare
with ``harness.adapters.detect.MATCH_TOL``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..adapters.detect import MATCH_TOL
from ..adapters.layouts import Layout, data_from_user, data_to_user
from ..compare import rel_error
from ..spec import AvgPool2d, Dropout, Flatten, MaxPool2d, Sequential
from .free_kinds import Cand, candidates
from .result import Fit

# the simpler kind first when two confirmed candidates are the same function
KIND_ORDER = (
    "ReLU",
    "LeakyReLU",
    "ELU",
    "GELU",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "Dropout",
    "GlobalAvgPool2d",
    "Flatten",
    "MaxPool2d",
    "AvgPool2d",
)
SCREEN = 1e-2  # pools farther than this from y on the fast screen are not run through the reference


def free_fits(
    name: str, x: np.ndarray, y: np.ndarray, *, more: Sequence[tuple[np.ndarray, np.ndarray]] = ()
) -> list[Fit]:
    """Every parameter-free candidate tried on ``x -> y`` (and on each pair of ``more``), as
    :class:`Fit` named ``name``, best first.

    ``x``, ``y``: the user's input and output arrays exactly as the code takes and returns
    them; ``more``: further ``(x, y)`` pairs of the same layer that every candidate must also
    reproduce (a fitted slope, p or mask is read from the first pair and re-read per pair for a
    dropout's mask). ``Fit.error`` is the largest relative norm-wise error over the pairs;
    ``Fit.note`` says how a hyperparameter was read. Candidates that compute the same function
    as a simpler confirmed one (a 1x1 pool and the identity, a 2x2 pool with stride 2 or
    None) are dropped. An empty list: no parameter-free kind has y's shape.
    """
    pairs = [(np.asarray(x), np.asarray(y)), *((np.asarray(a), np.asarray(b)) for a, b in more)]
    x0, y0 = pairs[0]
    if not all(np.issubdtype(a.dtype, np.floating) for a, _ in pairs):
        return []
    tol = MATCH_TOL.get(np.dtype(y0.dtype), 1e-4)
    cands = candidates(name, x0, y0, tol)
    for c in cands:  # a dropout's mask is the pair's own
        if c.mask is not None:
            c.mask = [_mask_of(c, a, b) for a, b in pairs]
            _pool_fraction(c)
    screened: set[int] = set()
    scored = [(c, _score(c, pairs, screened)) for c in cands]
    scored = _collapse(scored, x0, tol)
    scored.sort(key=lambda ce: (ce[1] > tol, ce[1], _simplicity(ce[0])))
    # a screened-out pool's error is its first plane's: the closest of each kind (what a
    # message names) gets the whole input's
    firsts = {c.spec.kind: id(c) for c, _ in reversed(scored)}
    scored = [
        (c, _score(c, pairs, None) if id(c) in screened and firsts[c.spec.kind] == id(c) else e) for c, e in scored
    ]
    scored.sort(key=lambda ce: (ce[1] > tol, ce[1], _simplicity(ce[0])))
    return [Fit(spec=c.spec, layout=c.layout, error=e, note=c.note, reason=_reason(e)) for c, e in scored]


def _reason(error: float) -> str:
    return "the reference could not run it on this input" if error == float("inf") else ""


# where dropout code keeps its rate: a drop probability, or (KEEP_NAMES) a keep probability
P_NAMES = ("p", "rate", "drop_rate", "dropout_rate", "dropout_ratio", "drop_prob", "dropout_p", "ratio")
KEEP_NAMES = ("keep_prob", "keep_rate", "p_keep")


def dropout_rate_hint(obj: Any, fits: list[Fit]) -> list[Fit]:
    """``fits`` with a dropout's p read from the object's own attribute (``self.dropout_ratio =
    0.25``; ``keep_prob`` as 1 - value) where the forward cannot show it: a dropout that does
    not scale in training computes the same function for every p, so free_fits only estimates
    it from the fraction dropped. An inverted dropout's p is confirmed by its scale and kept;
    an attribute that disagrees with it is said in the note. For the layer inference, which
    holds the object."""
    rate = _rate_attribute(obj)
    if rate is None:
        return fits
    where, p = rate
    out = []
    for f in fits:
        s = f.spec
        if isinstance(s, Dropout) and s.training and (not s.inverted or "inverted reading" in f.note):
            f = dataclasses.replace(f, spec=dataclasses.replace(s, p=p), note=f"{f.note}; p {p:g} read from {where}")
        elif isinstance(s, Dropout) and s.training and abs(s.p - p) > 1e-6:
            f = dataclasses.replace(f, note=f"{f.note}; {where} = {p:g} disagrees with the scale's p {s.p:g}")
        out.append(f)
    return out


def _rate_attribute(obj: Any) -> tuple[str, float] | None:
    found = vars(obj) if hasattr(obj, "__dict__") else {}
    for names, keep in ((P_NAMES, False), (KEEP_NAMES, True)):
        for name in names:
            v = found.get(name)
            if isinstance(v, (float, np.floating)) and 0.0 <= float(v) < 1.0 + keep:
                p = 1.0 - float(v) if keep else float(v)
                if 0.0 <= p < 1.0:
                    return f"self.{name}", p
    return None


def _pool_fraction(cand: Cand) -> None:
    """A dropout that does not scale shows p only as the fraction dropped: read it from every
    pair's mask at once (the estimate's noise shrinks with the units seen)."""
    spec = cand.spec
    if not isinstance(spec, Dropout) or not cand.mask or (spec.inverted and "inverted reading" not in cand.note):
        return
    p = min(round(1 - float(np.mean([m.mean() for m in cand.mask])), 2), 0.99)
    cand.spec = dataclasses.replace(spec, p=p)
    cand.note = cand.note.replace(f"p {spec.p:g} ", f"p {p:g} ", 1)


def _mask_of(cand: Cand, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The 0/1 mask a pair shows (kept: y != 0, or x == 0 where it cannot tell)."""
    return ((y != 0) | (x == 0)).astype(np.float64)


def predict(cand: Cand, x: np.ndarray, index: int = 0) -> np.ndarray:
    """The reference's output for ``x`` (user layout) under ``cand``, in the user's layout."""
    import reference_models

    xc = data_from_user(x, cand.layout)
    params: dict[str, Any] = {}
    if isinstance(cand.spec, Dropout) and cand.mask is not None:
        params[f"{cand.spec.name}.mask"] = data_from_user(cand.mask[index], cand.layout)
    out = reference_models.build("torch", Sequential([cand.spec])).forward(params, xc).output
    chw = tuple(xc.shape[1:]) if isinstance(cand.spec, Flatten) and xc.ndim == 4 else None
    return data_to_user(out, cand.layout, features_from=chw)


def _score(cand: Cand, pairs: list[tuple[np.ndarray, np.ndarray]], screened: set[int] | None) -> float:
    """The largest relative error of the user's y against the reference over the pairs;
    ``inf`` when the reference cannot run it (a shape it rejects). Pools are screened first
    on one plane with torch's functional pooling (the same op, without building a
    reference), unless ``screened`` is None; one ruled out there is added to ``screened``."""
    worst = 0.0
    for i, (a, b) in enumerate(pairs):
        try:
            if isinstance(cand.spec, (MaxPool2d, AvgPool2d)) and screened is not None:
                error = _screen(cand, a, b)
                if error > SCREEN:
                    screened.add(id(cand))
                    return error
            pred = predict(cand, a, i)
        except Exception:  # any failure of a candidate only rules it out
            return float("inf")
        if pred.shape != b.shape:
            return float("inf")
        worst = max(worst, rel_error(b, pred).norm)
    return worst


def _screen(cand: Cand, x: np.ndarray, y: np.ndarray) -> float:
    import torch
    import torch.nn.functional as F

    s = cand.spec
    assert isinstance(s, (MaxPool2d, AvgPool2d))
    if y.ndim != 4:
        return float("inf")
    # a pool works on each (example, channel) plane alone: the first plane tells, at 1/(N*C) the cost
    xc, yc = data_from_user(x, cand.layout)[:1, :1], data_from_user(y, cand.layout)[:1, :1]
    t = torch.as_tensor(np.ascontiguousarray(xc), dtype=torch.float64)
    if isinstance(s, MaxPool2d):
        out = F.max_pool2d(t, s.kernel_size, s.stride, s.padding)
    else:
        out = F.avg_pool2d(t, s.kernel_size, s.stride, s.padding, count_include_pad=s.count_include_pad)
    pred = out.numpy()
    return rel_error(yc, pred).norm if pred.shape == yc.shape else float("inf")


def _simplicity(cand: Cand) -> tuple:
    """Smaller is simpler: kind, then a default layout, then no padding, small windows."""
    s = cand.spec
    rank = KIND_ORDER.index(s.kind) if s.kind in KIND_ORDER else len(KIND_ORDER)
    window: tuple = (0, 0, 0, False)
    if isinstance(s, (MaxPool2d, AvgPool2d)):
        window = (sum(s.padding), int(np.prod(s.kernel_size)), sum(s.stride), not getattr(s, "count_include_pad", True))
    return (rank, cand.layout != Layout(), *window)


def _collapse(scored: list[tuple[Cand, float]], x: np.ndarray, tol: float) -> list[tuple[Cand, float]]:
    """Drop confirmed candidates that compute the same function on x's shape as a simpler
    confirmed one (told on a fresh random input, where the example may hide a difference);
    the one kept says in its note what it stands for."""
    ok = sorted((ce for ce in scored if ce[1] <= tol), key=lambda ce: _simplicity(ce[0]))
    if len(ok) < 2:
        return scored
    probe = np.random.default_rng(0).normal(size=x.shape)
    outs: dict[int, np.ndarray | None] = {}
    for c, _ in ok:
        try:
            outs[id(c)] = None if c.mask is not None else predict(c, probe)
        except Exception:
            outs[id(c)] = None
    kept: list[Cand] = []
    dropped: set[int] = set()
    for c, _ in ok:
        twin = next((k for k in kept if _same(outs[id(k)], outs[id(c)])), None)
        if twin is None:
            kept.append(c)
            continue
        dropped.add(id(c))
        if "same function as" not in twin.note:
            twin.note = (twin.note + "; " if twin.note else "") + f"same function as {c.spec!r} on this shape"
    return [ce for ce in scored if id(ce[0]) not in dropped]


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None or a.shape != b.shape:
        return False
    return rel_error(b, a).norm <= 1e-12


__all__ = ["dropout_rate_hint", "free_fits", "predict"]
