"""Operations the network's own code does between layer calls (``np.maximum(h, 0)``,
``h.reshape(n, -1)``), as parameter-free layers without a user object.

The forward confirms a kind (:func:`harness.inference.free.free_fits`, read by :mod:`.flow`).
When the operation sits alone between two layer calls, the network's own backward is
evidence too: the upstream gradient the later layer's backward returned and the one the
earlier layer's backward received are the operation's own backward. An elementwise kind
whose gradient does not match it while another kind's does (a forward that leaks,
``np.maximum(z, 0.01 * z)``, under a backward that masks as a ReLU) is the conflict the
contract names: ``ambiguous``, ``best`` the kind the backward supports, and the check then
ends in ``forward``. Elementwise layers and a plain-reshape flatten are the same function
in either data layout (:func:`variants`), which the network's layout decides.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..spec import Sequential
from .flow import Op, renamed, tol_for
from .result import Fit, LayerInference
from .structure import StructureError, Trace

ELEMENTWISE = ("ReLU", "LeakyReLU", "ELU", "GELU", "Sigmoid", "Tanh", "Dropout")
RAW_FLATTEN = {"NCHW": "CHW", "NHWC": "HWC"}  # a plain reshape of the array as it is, read in each layout


def variants(f: Fit) -> list[Fit]:
    """``f`` and the same function read in the other data layout, where there is one: an
    elementwise layer is the same in both; a flatten that reshapes the array as it is
    (``x.reshape(n, -1)``) is (NCHW, CHW) read one way and (NHWC, HWC) the other."""
    other = "NHWC" if f.layout.data == "NCHW" else "NCHW"
    if f.spec.kind in ELEMENTWISE:
        return [f, replace(f, layout=replace(f.layout, data=other))]
    if f.spec.kind == "Flatten" and RAW_FLATTEN[f.layout.data] == f.layout.flatten:
        return [f, replace(f, layout=replace(f.layout, data=other, flatten=RAW_FLATTEN[other]))]
    return [f]


def op_inference(op: Op, name: str, path: str, data: str, notes: list[str], trace: Trace) -> LayerInference:
    """A parameter-free layer for an operation of the network's own code (no user object)."""
    if not op.fits:
        shapes = (getattr(op.x, "shape", None), getattr(op.y, "shape", None))
        raise StructureError(
            f"infer_network: the network's own code turns {shapes[0]} into {shapes[1]} before '{path}' and no "
            "parameter-free layer does that (likely a computation with arrays the network holds itself); "
            "hold it in a layer object, or write the spec by hand"
        )
    ok = [f for f in op.fits if f.error <= op.tol]
    if getattr(op.x, "ndim", 0) == 4:
        ok = [v for f in ok for v in variants(f) if v.layout.data == data] or ok
    fits = [replace(f, spec=renamed(f.spec, name)) for f in (ok or op.fits)]
    distinct = {(repr(renamed(f.spec, "_"))) for f in fits}
    status = "unmatched" if not op.confirmed else ("ambiguous" if len(distinct) > 1 else "exact")
    why = []
    if status == "unmatched":
        why.append(
            f"the network's own code between layers matches no parameter-free kind; closest {fits[0].describe()}"
        )
        notes.append(f"'{path}': {why[0]}")
    amb = [f for f in fits[1:] if repr(renamed(f.spec, "_")) != repr(renamed(fits[0].spec, "_"))]
    all_fits = [replace(f, spec=renamed(f.spec, name)) for f in op.fits]
    li = LayerInference(path, None, fits[0], status, op.tol, all_fits, amb if status == "ambiguous" else [], why=why)
    _by_backward(li, op, trace)
    return li


DIFFERENTIABLE = ("ReLU", "LeakyReLU", "ELU", "GELU", "Sigmoid", "Tanh")  # elementwise, no mask


def _op_grads(op: Op, trace: Trace) -> tuple[np.ndarray, np.ndarray] | None:
    """(d output, d input) of the operation from its neighbours' backward calls, when each
    neighbour was called once each way and the shapes fit; else None."""
    if op.producer is None or op.consumer is None:
        return None

    def once(path: str) -> Any:
        b = [r for r in trace.backward if r.path == path]
        n = sum(c.path == path for c in trace.calls)
        return b[0] if len(b) == 1 and n == 1 else None

    p, c = once(op.producer.path), once(op.consumer.path)
    if p is None or c is None or p.g is None or c.dx is None:
        return None
    if p.g.shape != np.shape(op.x) or c.dx.shape != np.shape(op.y):
        return None
    return c.dx, p.g


def _vjp_error(fit: Fit, x: Any, g: np.ndarray, dx: np.ndarray) -> float:
    """Relative norm-wise error of the reference's gradient of ``fit`` at ``x`` against ``dx``."""
    import reference_models

    try:
        got = (
            reference_models.build("torch", Sequential([fit.spec]))
            .vjp({}, np.asarray(x, np.float64), np.asarray(g, np.float64))
            .input_grad
        )
    except Exception:  # the reference cannot run it here: no evidence either way
        return float("inf")
    ref = np.asarray(dx, np.float64)
    return float(np.linalg.norm((got - ref).ravel()) / max(float(np.linalg.norm(ref.ravel())), 1e-300))


def _by_backward(li: LayerInference, op: Op, trace: Trace) -> None:
    """Let the network's own backward confirm the forward's kind, or name the conflict."""
    grads = _op_grads(op, trace)
    if grads is None or li.status == "unmatched" or li.best.spec.kind not in DIFFERENTIABLE:
        return
    d_out, d_in = grads
    tol = tol_for(d_in)
    if _vjp_error(li.best, op.x, d_out, d_in) <= tol:
        return
    alt = next(
        (
            f
            for f in li.candidates
            if f.spec.kind in DIFFERENTIABLE and f.spec != li.best.spec and _vjp_error(f, op.x, d_out, d_in) <= tol
        ),
        None,
    )
    if alt is None:
        return  # a backward matching no kind: a backward bug the check reports, not a doubt about the kind
    li.why.append(
        f"the network's own code computes {li.best.spec!r} in its forward (rel error {li.best.error:.1e}) but its "
        f"backward differentiates {alt.spec!r}: the forward and the backward disagree"
    )
    li.status, li.ambiguous, li.best = "ambiguous", [li.best], alt


__all__ = ["op_inference", "variants"]
