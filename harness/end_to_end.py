"""The ``(network)`` entry of :func:`~harness.network_check.check_network`: the user's own
network forward/backward end to end against both references, the values it fed each
watched layer boundary, and why it fails (a failing layer, a shared object, the wiring)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import index_input
from .adapters.effects import apply_effects
from .adapters.shared import layer_note, shared_objects, sharing_finding
from .compare import REFS_TOL, relative_with_floor
from .faults import CodeFault, call_user, codes_fault
from .frames import user_frame
from .judge import FLOOR, NO_INPUT_GRAD, _nonfinite_message, row_tolerance, tensor_result
from .precision import measure_network, note
from .results import Boundary, LayerResult, Report


def _fault(exc: Exception) -> str:
    """The verdict ``error``'s message for ``exc`` met while running the user's code, or
    re-raise it (a configuration error or a trigrad bug; see :mod:`harness.faults`)."""
    if not codes_fault(exc):
        raise exc
    return str(exc) if isinstance(exc, CodeFault) else user_frame(exc)


def _dtype_notes(returned: dict[str, np.dtype], dtype: np.dtype, computes_in: str) -> list[str]:
    from .adapters.layer import dtype_note

    return [n for name, dt in returned.items() if (n := dtype_note(name, dt, dtype, computes_in))]


def _end_to_end(
    net: Any,
    x: np.ndarray,
    g: np.ndarray,
    ref: Any,
    jax_ref: Any,
    tol_scale: float,
    first_failure: str | None,
    unsure: list[str] | None = None,
) -> LayerResult:
    """The user's own network forward/backward against both references, as one entry, with
    the activation and gradient at every watched layer boundary. ``unsure``: the layers whose
    own check was inconclusive (they may explain a failure here; the wiring is not blamed)."""
    result = LayerResult(name="(network)", kind="network", verdict="error", dtype=str(net.dtype))
    try:
        y, dx, grads, calls = _own_pass(net, x, g)
    except Exception as e:
        return _crashed(result, net, e)
    bad = {f"{p}.{k}": b for p, w in net.layers.items() for k, b in w.nonfinite_grads.items()}
    said = _compare(result, net, (x, g), (y, dx, grads), ref, jax_ref, tol_scale)
    result.diagnosis += _dtype_notes(net.returned, net.dtype, f"the parameters are {net.dtype}")
    if bad:  # NaN/Inf in the gradients the network's own backward left in its layers
        result.verdict, result.message = "error", _nonfinite_message(bad, "the network's own backward")
        result.error_side = "backward"
        result.downstream_of = first_failure
        apply_effects(result, net.side_effects())
        return result
    _explain(result, net, calls, ref, first_failure, unsure or [])
    result.message = "; ".join(filter(None, [result.message, said]))  # what the tolerances were based on
    if net.indices:  # integer indices: no input gradient exists
        index_input.mark(result, net.spec)
    elif dx is None:
        result.message = "; ".join(
            filter(
                None,
                [result.message, NO_INPUT_GRAD.replace("(input_grad=False)", "(input_grad=False on the first layer)")],
            )
        )
        result.input_gradient = index_input.NOT_COMPUTED
    return result


def _own_pass(net: Any, x: np.ndarray, g: np.ndarray) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """The user's own network forward and backward at ``x`` with upstream gradient ``g``,
    watched at every layer boundary, after flushing what each layer accumulated: (output,
    input gradient or None, parameter gradients by full name, the calls seen per layer)."""
    net.running, net.effects[:] = None, []
    for w in net.layers.values():  # code that accumulates until flushed: flush, as the isolated checks do
        for method in filter(None, (getattr(w, "zero_grad", None), getattr(w, "flush", None))):
            call_user(getattr(w.obj, method))
    with net.recording() as calls:
        y = net.forward(x, mode="network")
        dx = net.backward(g)
    return y, dx, net.param_grads(), calls


def _crashed(result: LayerResult, net: Any, exc: Exception) -> LayerResult:
    """The verdict ``error`` for ``exc`` met in the user's own pass (re-raised when it is not
    the code's fault), on the side that ran, with the objects mapped at several places."""
    result.message, result.error_side = _fault(exc), net.running or "setup"  # setup: flushing the gradients
    result.diagnosis += [sharing_finding(paths, True) for paths in shared_objects(net.layers)]
    apply_effects(result, net.side_effects())
    return result


def _compare(
    result: LayerResult,
    net: Any,
    point: tuple[np.ndarray, np.ndarray],
    got: tuple[Any, Any, dict[str, Any]],
    ref: Any,
    jax_ref: Any,
    tol_scale: float,
) -> str:
    """The user's output, input gradient (unless None) and parameter gradients (``got``)
    against both references: one :class:`~harness.results.TensorResult` each, the references'
    disagreement and the verdict (``reference`` when they disagree). ``point``: (input,
    upstream gradient). Tolerances as a layer's (:func:`harness.judge.row_tolerance`): below
    float64 they follow torch's own error at the network's precision
    (:func:`harness.precision.measure_network`); returns the note saying so ("" in float64)."""
    (y, dx, grads), (x, g), n = got, point, point[0].shape[0]
    pairs = [("output", "forward", y, ref.output, jax_ref.output)]
    # None: the first layer is declared input_grad=False (the network's input gradient is not computed)
    if dx is not None:
        pairs.append(("input", "backward", dx, ref.input_grad, jax_ref.input_grad))
    pairs += [(k, "backward", v, ref.param_grads[k], jax_ref.param_grads[k]) for k, v in grads.items()]
    scale = FLOOR * max((float(np.linalg.norm(p[3])) for p in pairs[1:]), default=0.0)
    floors = {p[0]: scale if p[1] == "backward" else 0.0 for p in pairs}
    measured = measure_network(net, x, g, [(p[0], p[3], floors[p[0]]) for p in pairs])
    reductions = {p[0]: max(x.size // n, int(np.prod(p[3].shape)) // max(p[3].shape[0], 1)) for p in pairs}
    for name, side, user, r, rj in pairs:
        tol = row_tolerance(
            (name, side, user, r, rj, reductions[name], floors[name]), net.dtype, tol_scale, {}, measured
        )
        result.tensors.append(tensor_result(name, side, tuple(r.shape), user, r, rj, tol, floors[name]))
    result.refs_error = max(relative_with_floor(p[3], p[4], scale if p[1] == "backward" else 0.0) for p in pairs)
    forward_ok = all(t.ok for t in result.tensors if t.side == "forward")
    backward_ok = all(t.ok for t in result.tensors if t.side == "backward")
    result.verdict = (
        "pass"
        if forward_ok and backward_ok
        else ("both" if not (forward_ok or backward_ok) else "forward" if not forward_ok else "backward")
    )
    if result.refs_error > REFS_TOL:
        result.verdict = "reference"
    return note(measured, reductions, tol_scale)


def _explain(
    result: LayerResult, net: Any, calls: dict[str, Any], ref: Any, first_failure: str | None, unsure: list[str]
) -> None:
    """Why the end-to-end pass fails: a layer that fails alone (``downstream_of``), one object
    mapped at several places, or the wiring (the first boundary that leaves the reference);
    and the network's own writes into what it was handed."""
    tol = max(t.tolerance for t in result.tensors)
    result.boundaries, where = _boundaries(calls, ref, tol)
    failed = not result.ok
    shared = [sharing_finding(paths, failed) for paths in shared_objects(net.layers)]
    apply_effects(result, net.side_effects())  # the network's own writes into what it was handed
    if failed and first_failure is None:
        result.message = "; ".join(shared) or (
            f"{_listed(unsure)} could not be judged alone (inconclusive), and may explain this: rerun with another "
            "--seed or more --fd-probes before suspecting the wiring"
            if unsure
            else "every layer passes alone but the network's own forward/backward does not: the wiring between layers "
            "is at fault (a skipped, repeated or reordered call)"
        )
        result.diagnosis += where
    elif failed:
        result.downstream_of = first_failure  # explained by the failing layer: fix that first
        result.diagnosis += shared
    else:
        result.message = "; ".join(filter(None, [result.message, *shared]))


def _listed(names: list[str]) -> str:
    return " and ".join(f"'{n}'" for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def note_shared(report: Report, layers: dict[str, Any]) -> None:
    """When the end-to-end pass failed: each place a shared object is mapped says so (it passes alone)."""
    for paths in shared_objects(layers):
        for path in paths:
            entry = report.layer(path)
            entry.message = "; ".join(filter(None, [entry.message, layer_note(path, paths)]))


def _boundaries(calls: dict[str, Any], ref: Any, tol: float) -> tuple[list[Boundary], list[str]]:
    """Per watched layer: how often the user's network called it and how far the input,
    output and upstream gradient it saw (its last call) are from the reference's; and the
    findings a person needs: layers not called or called twice, and the first boundary
    where the forward, and the backward, leave the reference."""

    def err(values: list, expected: np.ndarray) -> float | None:
        if not values or values[-1] is None:
            return None
        return relative_with_floor(values[-1], expected) if values[-1].shape == expected.shape else float("inf")

    rows = [
        Boundary(
            name=p,
            forward_calls=len(c.inputs),
            backward_calls=len(c.grads),
            input_error=err(c.inputs, ref.inputs[p]),
            output_error=err(c.outputs, ref.outputs[p]),
            grad_error=err(c.grads, ref.output_grads[p]),
        )
        for p, c in calls.items()
    ]
    found = []
    for b in rows if any(b.forward_calls for b in rows) else []:  # nothing seen at all: the watch failed, not the net
        for what, count in (("forward", b.forward_calls), ("backward", b.backward_calls)):
            if count != 1:
                found.append(
                    f"'{b.name}' is {'never called' if count == 0 else f'called {count} times'} by the network's {what}"
                )
    bad = lambda e: e is not None and e > tol  # noqa: E731
    prev = None
    for b in rows:
        if bad(b.input_error):
            after = f" although '{prev.name}' produced the right output" if prev and not bad(prev.output_error) else ""
            found.append(f"forward: '{b.name}' receives a wrong input ({b.input_error:.1e} relative){after}")
            break
        prev = b if b.forward_calls else prev
    nxt = None
    for b in reversed(rows):
        if bad(b.grad_error):
            after = f" although '{nxt.name}' received the right one" if nxt and not bad(nxt.grad_error) else ""
            found.append(
                f"backward: '{b.name}' receives a wrong upstream gradient ({b.grad_error:.1e} relative){after}"
            )
            break
        nxt = b if b.backward_calls else nxt
    return rows, found


__all__ = ["note_shared"]
