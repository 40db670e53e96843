"""The three-way check of one layer: the user's code against PyTorch, JAX and finite
differences of the user's own forward.

For one point (input x, the user's parameters, a random upstream gradient g, all from one
seed) it compares the user's output with both references, the user's input and parameter
gradients with both references' VJPs, and the user's backward with central differences of
``<f_user(x; θ), g>`` along random directions (:mod:`harness.fd_check`);
:func:`harness.compare.verdict` turns the three answers into a verdict. The user's
parameters are restored bit for bit afterwards.

What goes wrong on the way follows :mod:`harness.faults`: the user's code raising, or
returning None, NaN/Inf, an integer array or a shape no layout explains, is the layer's
verdict ``error`` with the user's frame or the first non-finite index; a configuration
mistake (a layout, a parameter name, a check too large for the machine) propagates as the
:class:`~harness.spec.SpecError` it is. Whole networks: :mod:`harness.network_check`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import fd, resources, ties
from .adapters.arrays import NonFinite, nonfinite
from .adapters.effects import apply_effects
from .adapters.feed import fault_hint
from .adapters.inputs import read_input, read_shape
from .adapters.layer import WrappedLayer, wrap_layer
from .adapters.layouts import CANONICAL, user_data_shape
from .adapters.options import call_hint
from .adapters.state import UNREPLAYABLE
from .adapters.wrapped import ONE_EXAMPLE_GUESS
from .compare import REFS_TOL, rel_error, relative_with_floor, tensor_tolerance, verdict
from .diagnose import diagnose, window_overlap
from .faults import CodeFault, codes_fault
from .fd_check import _fd_all, _true_grads
from .findings import accumulation, backward_hypotheses, bad_params_message, layout_hint, nondeterminism
from .frames import user_frame
from .hints import call_error, per_example_hint, scale_hint
from .hypotheses import counts, explain
from .kinks import pattern, random_input
from .results import FDSummary, LayerResult, Report, TensorResult, error_map
from .spec import AvgPool2d, Conv2d, Layer, MaxPool2d, Sequential, example_input_shape, join_path, walk

FD_TOL = fd.FD_TOL
FLOOR = 1e-3  # a truly-zero gradient is judged against this fraction of the layer's other gradients
_fd_summary, _probes = fd.summary, fd.probes  # the names network_check and older code use
Compared = tuple[str, str, np.ndarray, np.ndarray, np.ndarray, int, float]
NO_INPUT_GRAD = "note: input gradient not computed (input_grad=False); not compared"


def _nonfinite_message(found: Mapping[str, NonFinite], what: str) -> str:
    """``"the backward returned NaN/Inf: weight: 2 of 12 values ... (user layout); likely cause ..."``."""
    listed = "; ".join(f"{name}: {bad}" for name, bad in found.items())
    return (
        f"{what} returned NaN/Inf: {listed} (user layout); likely cause: a division by zero, a log or sqrt of a "
        "non-positive value, an overflow, or an uninitialised array (np.empty)"
    )


def _judge(
    result: LayerResult,
    tensors: list[Compared],
    fds: dict[str, FDSummary],
    dtype: np.dtype,
    tol_scale: float,
    *,
    batch: int,
    window: int | None = None,
    noise: dict[str, float] | None = None,
    nonfinite_found: Mapping[str, NonFinite] | None = None,
    **hints: Any,
) -> tuple[bool, bool]:
    """Fill ``result`` from the compared tensors — (name, side, user, torch, jax, reduction
    size, absolute floor) — and the finite-difference summaries: per-tensor results, the
    verdict and the diagnosis of each failing tensor. ``noise``: absolute error the reading of
    a gradient adds (see ``WrappedLayer.grad_noise``). A user tensor holding NaN/Inf makes
    the verdict ``error`` with a message naming it, the count and the first index
    (``nonfinite_found``: those already located in the user's layout; else read off the
    compared arrays). Returns (forward_ok, backward_ok)."""
    noise = noise or {}
    for name, side, user, tv, jv, reduction, floor in tensors:
        # plus any error the reading of the gradient adds (an SGD-step recovery), relative to the truth
        tol = tensor_tolerance(dtype, reduction, tol_scale, noise.get(name, 0.0), tv, floor)
        et, ej = relative_with_floor(user, tv, floor), relative_with_floor(user, jv, floor)
        worst = rel_error(user, tv)
        result.tensors.append(
            TensorResult(
                name=name,
                side=side,
                shape=tuple(np.shape(user)),
                tolerance=tol,
                error_torch=et,
                error_jax=ej,
                worst_index=worst.index,
                worst_user=worst.actual,
                worst_ref=worst.expected,
                ok=max(et, ej) <= tol,
                fd=fds.get(name) if side == "backward" else None,
            )
        )
        if not result.tensors[-1].ok:
            result.tensors[-1].error_map = error_map(user, tv)
    forward_ok = all(tr.ok for tr in result.tensors if tr.side == "forward")
    backward_ok = all(tr.ok for tr in result.tensors if tr.side == "backward")
    consistency = [s.consistent for s in fds.values()]
    fd_consistent = False if False in consistency else (True if all(consistency) else None)
    bad = (
        dict(nonfinite_found)
        if nonfinite_found is not None
        else {name: found for name, _, user, *_ in tensors if (found := nonfinite(np.asarray(user, np.float64)))}
    )
    # unreliable only because every probe of some tensor crossed a kink (none was noisy or disagreed)
    kinks_only = all(s.consistent is not None or s.kinks == s.probes for s in fds.values())
    result.verdict = verdict(
        forward_ok=forward_ok,
        backward_ok=backward_ok,
        fd_consistent=fd_consistent,
        refs_agree=result.refs_error <= REFS_TOL,
        error=bool(bad),
        fd_kinks_only=kinks_only,
    )
    if bad:
        result.message = _nonfinite_message(bad, "the code")
        backward = any(side == "backward" for name, side, *_ in tensors if name in bad)
        result.error_side = "backward" if backward else "forward"
    if result.verdict == "pass" and fd_consistent is None:
        crossed = ", ".join(f"{k}: {s.kinks} of {s.probes}" for k, s in fds.items() if s.consistent is None)
        result.message = (
            "note: finite differences could not witness this (every probe crossed a kink; "
            + crossed
            + "); both references agree with the gradients"
        )
    if result.verdict == "inconclusive":
        unsure = [
            f"{k} ({s.kinks} of {s.probes} probes crossed a kink)" if s.kinks else f"{k} (probes too noisy)"
            for k, s in fds.items()
            if s.consistent is not True
        ]
        result.message = (
            (
                "inconclusive: the finite-difference probes were not reliable for "
                + ", ".join(unsure)
                + "; rerun with another --seed or more --fd-probes"
            )
            if unsure
            else result.message
        )
    by_name = {name: (user, tv) for name, _, user, tv, _, _, _ in tensors}
    for tr in result.tensors:
        if not tr.ok and tr.name not in bad:  # no hypothesis explains a NaN
            user, ref = by_name[tr.name]
            sized = forward_ok or tr.side == "forward"  # a wrong forward's faithful gradient: no size to blame
            result.diagnosis += [
                f"{tr.name}: {h}"
                for h in diagnose(
                    tr.name,
                    user,
                    ref,
                    batch=batch if sized else None,
                    window=window if sized else None,
                    **{**hints, "counts": hints.get("counts") if sized else None},
                )
            ]
    return forward_ok, backward_ok


def check_layer(
    layer: Any,
    spec_layer: Layer | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
    x: np.ndarray | None = None,
    seed: int = 0,
    fd_probes: int = 3,
    tol_scale: float = 1.0,
    **wrap_kwargs: Any,
) -> Report:
    """Check one handwritten layer against PyTorch, JAX and finite differences.

    ``layer``: a :class:`~harness.adapters.layer.WrappedLayer`, or an object-style layer
    wrapped with ``spec_layer`` and ``wrap_kwargs`` (``layout=``, ``params=`` ...).
    ``x``: the input, batch first, else generated from ``seed`` with ``input_shape`` (a
    default is chosen for a Conv2d, Linear, per-channel BatchNorm or LayerNorm, and a dropout
    mask kept at construction gives its own shape). ``fd_probes``: random directions per
    tensor. Returns a :class:`~harness.results.Report` with one layer.

    ``x`` and ``input_shape`` are in the layer's declared layout: 4-D in ``layout.data``
    (``Layout(data="NHWC")``: ``(N, H, W, C)``; the default ``(N, C, H, W)``), 2-D ``(N, D)``
    as they are (the rule of :mod:`harness.adapters.inputs`). One that does not fit the spec
    read that way is an :class:`~harness.adapters.refs.AdapterError` naming the layout it was
    read in and the fix (``pass x in NHWC (x.transpose(0, 2, 3, 1))``).

    Raises a :class:`~harness.spec.SpecError` for a configuration mistake (see
    :mod:`harness.faults`), and :class:`~harness.resources.ResourceError` — before any
    user code or reference runs — when the check would need more memory than is available.
    """
    wrapped = layer if isinstance(layer, WrappedLayer) else wrap_layer(layer, spec_layer, **wrap_kwargs)
    spec = wrapped.spec
    if spec is None:
        raise ValueError("check_layer needs the spec layer the code implements (FD-only checks come later)")
    rng = np.random.default_rng(seed)
    if x is not None:  # in the layer's declared data layout (see harness.adapters.inputs); canonical from here on
        x = read_input(x, spec, wrapped.layout)
    shape = (
        x.shape
        if x is not None
        else (
            read_shape(input_shape, spec, wrapped.layout)
            if input_shape is not None
            else wrapped.kept_mask_input() or example_input_shape(spec)
        )
    )
    if shape is None:
        raise ValueError(f"layer '{spec.name}': pass input_shape= or x= to check a {type(spec).__name__}")
    resources.require(resources.layer_estimate(spec, shape), f"checking layer '{spec.name}' on input {shape}")
    x = random_input(spec, shape, rng, wrapped.dtype) if x is None else x
    x = np.asarray(x, dtype=np.float64)
    g = rng.standard_normal(spec.output_shape(x.shape))  # never all ones: that hides transposes and flips
    return Report(seed=seed, layers=[check_point(wrapped, x, g, rng, fd_probes=fd_probes, tol_scale=tol_scale)])


def _fault_message(wrapped: WrappedLayer, exc: Exception, x: np.ndarray, phase: str, confirmed: str = "") -> str:
    """The verdict ``error``'s message for ``exc``, met while ``phase`` (``"forward"``,
    ``"backward"``, ``"fd"`` or ``"ties"``) ran the user's code; re-raises it unless it is the code's
    fault (the rule of :mod:`harness.faults`). When the forward raised under its declared
    layout but runs and reproduces the reference under another, the declaration is at
    fault: :class:`~harness.adapters.layouts.LayoutError` naming both and the shapes."""
    from .adapters.detect import layout_conflict

    if not codes_fault(exc):
        raise exc
    where = {
        "fd": " (in a later call: a finite-difference probe or a second backward)",
        "ties": " (at a deliberate tie or zero: inputs with exact ties in a window or exact zeros)",
    }.get(phase, "")
    if isinstance(exc, CodeFault):
        return f"{exc}{where}{confirmed}"
    if phase == "forward" and wrapped.spec is not None and (conflict := layout_conflict(wrapped, x.shape, exc)):
        raise conflict from None
    if phase == "forward" and (clash := wrapped.mask_conflict(x.shape)):
        raise clash from None
    given = (
        ""
        if wrapped.layout == CANONICAL
        else (f" (given its input as {user_data_shape(x.shape, wrapped.layout)} in the declared {wrapped.layout})")
    )
    # ``confirmed``: a per-example run's hint (harness.hints), which replaces the guesses from shapes
    guess = "" if confirmed else call_hint(wrapped, x.shape)
    return f"{user_frame(exc)}{where}{given}{guess}{fault_hint(wrapped, exc)}{confirmed}"


def check_point(
    wrapped: WrappedLayer,
    x: np.ndarray,
    g: np.ndarray,
    rng: np.random.Generator,
    *,
    fd_probes: int = 3,
    tol_scale: float = 1.0,
    name: str | None = None,
    refs: tuple[Any, Any] | None = None,
) -> LayerResult:
    """The three-way check of ``wrapped`` at input ``x`` (canonical) with upstream gradient
    ``g``; finite-difference directions come from ``rng``. ``refs``: the torch and jax
    values at exactly this point (``output``, ``input_grad``, ``param_grads`` by full name),
    when the caller already has them from a whole-network pass. The user's code's faults
    give the verdict ``error``; configuration errors propagate (see :mod:`harness.faults`)."""
    from reference_models import build

    spec = wrapped.spec
    assert spec is not None  # check_layer and wrap_network refuse a wrapper without one
    result = LayerResult(name=name or wrapped.name, kind=type(spec).__name__, verdict="error", dtype=str(wrapped.dtype))
    bad_params = wrapped.nonfinite_params()
    if bad_params:  # before any call: NaN weights would only show up as NaN outputs
        result.message = bad_params_message(bad_params)
        result.error_side = "setup"
        return result
    full = lambda p: {join_path(spec.name, k): v for k, v in p.items()}  # noqa: E731

    # a forward at another point first: a backward that uses a cache from an earlier call
    # (not the latest forward) then shows up as wrong
    x_warm = x + rng.standard_normal(x.shape) * (float(np.std(x)) or 1.0)
    wrapped.effects.clear()  # the writes this check sees, not those of earlier calls
    with wrapped.preserved():
        seen: dict[str, Any] = {}  # what the code's calls gave, by name; the diagnosis reads it after the verdict
        try:
            _first_calls(wrapped, x_warm, x, g, seen)
        except Exception as e:  # the user's code raised or returned garbage: a verdict; a wrong declaration: raised
            return _crashed(result, wrapped, e, (x, g), seen, refs, tol_scale)
        y_u, params, dx_u, grads_u = (seen[k] for k in ("y", "params", "dx", "grads"))
        # taken now: the calls below record their own returns over these
        seen["bad_grads"], seen["dtype_notes"] = dict(wrapped.nonfinite_grads), wrapped.dtype_notes()
        torch_ref = build("torch", Sequential([spec]))
        t, j = (
            refs
            if refs is not None
            else (torch_ref.vjp(full(params), x, g), build("jax", Sequential([spec])).vjp(full(params), x, g))
        )
        # the activation pattern read off the reference (so a wrong user forward cannot hide
        # a crossing); None when the spec has no kinks
        at = pattern(torch_ref, Sequential([spec]))
        tensors = _compared(result, x, y_u, dx_u, grads_u, t, j, spec)
        try:
            fds = _fd_all(
                wrapped,
                x,
                g,
                dx_u,
                grads_u,
                params,
                rng,
                fd_probes,
                at,
                full,
                _true_grads(result, tensors, wrapped.dtype, tol_scale, wrapped.grad_noise()),
            )
            # a second backward at the same point must give the same gradients
            wrapped.forward(x)
            wrapped.backward(g)
            seen["again"] = wrapped.param_grads()
        except Exception as e:
            return _later_fault(result, wrapped, e, x, "fd", "forward")
        try:  # deliberate ties and zeros (a copy of rng: the draws of later checks stay as they were)
            seen["ties"] = ties.probe(wrapped, x.shape, copy.deepcopy(rng)) if dx_u is not None else []
        except Exception as e:
            return _later_fault(result, wrapped, e, x, "ties", "backward")

    ok = _judge(
        result,
        tensors,
        fds,
        wrapped.dtype,
        tol_scale,
        batch=x.shape[0],
        noise=wrapped.grad_noise(),
        nonfinite_found=seen["bad_grads"],
        **_hints(spec, x),
    )
    _diagnose_entry(result, wrapped, tensors, ok, (x_warm, x, g), seen, torch_ref)
    return result


def _later_fault(
    result: LayerResult, wrapped: WrappedLayer, exc: Exception, x: np.ndarray, phase: str, side: str
) -> LayerResult:
    """The verdict ``error`` for ``exc`` met in a call after the first ones (``phase``: ``"fd"``
    or ``"ties"``), on the side whose code ran (``side`` when none is known); re-raised when
    it is a configuration error (:func:`_fault_message`)."""
    result.error_side = wrapped.running or side
    result.message = _fault_message(wrapped, exc, x, phase)
    apply_effects(result, wrapped.side_effects())
    return result


def _diagnose_entry(
    result: LayerResult,
    wrapped: WrappedLayer,
    tensors: list[Compared],
    ok: tuple[bool, bool],
    point: tuple[np.ndarray, np.ndarray, np.ndarray],
    seen: dict[str, Any],
    torch_ref: Any,
) -> None:
    """After the verdict (``ok``: forward_ok, backward_ok): a failure only the deliberate ties
    showed, then the diagnosis lines (dtype notes, nondeterminism, a batch-size factor, the
    confirmed hypotheses, a layout that explains a wrong forward, accumulation), the code's
    writes and notes. ``point``: (earlier input, input, upstream gradient); ``seen``: what
    :func:`check_point` recorded of the code's calls."""
    (forward_ok, backward_ok), (_, x, g) = ok, point
    spec, params, bad_grads = wrapped.spec, seen["params"], seen["bad_grads"]
    assert spec is not None  # as in check_point
    if seen["ties"] and forward_ok and backward_ok and result.verdict in ("pass", "inconclusive"):
        result.verdict, result.message = "backward", ""  # the tie-free point could not see it
        result.diagnosis += seen["ties"]
    result.diagnosis += seen["dtype_notes"] + nondeterminism(seen["y"], seen["y_again"])
    result.diagnosis += scale_hint(wrapped, result, tensors, x.shape[0])
    if not backward_ok and not bad_grads:
        result.diagnosis += backward_hypotheses(result, tensors, forward_ok, torch_ref, spec, params, point)
    if not bad_grads and result.verdict not in ("pass", "error", "reference"):
        result.diagnosis += explain(result, tensors, spec, params, x, g)
    if not forward_ok and result.verdict in ("forward", "both"):
        result.diagnosis += layout_hint(wrapped, x, g, result)
    accumulation(result, seen["grads"], seen["again"])
    _finish(result, wrapped)
    if seen["dx"] is None:  # declared input_grad=False: said on the entry, whatever the verdict
        result.message = "; ".join(filter(None, [result.message, NO_INPUT_GRAD]))


def _finish(result: LayerResult, wrapped: WrappedLayer) -> None:
    """The writes the code made into what it was handed (findings), then the notes on what was
    not checked (running statistics the code does not keep)."""
    apply_effects(result, wrapped.side_effects())
    result.message = "; ".join(filter(None, [result.message, *wrapped.notes()]))
    if wrapped.replay is not None and any("the forward is not deterministic" in line for line in result.diagnosis):
        result.diagnosis.append(UNREPLAYABLE)


def _first_calls(wrapped: WrappedLayer, x_warm: np.ndarray, x: np.ndarray, g: np.ndarray, seen: dict[str, Any]) -> None:
    """The check's calls into the user's code, in order, each value into ``seen`` as it comes
    (``y``, ``params``, ``dx``, ``grads``, ``y_again``): a forward at another point, the
    forward and backward at the point, the forward again (determinism)."""
    wrapped.forward(x_warm)
    seen["y"] = wrapped.forward(x)
    seen["params"] = wrapped.get_params()
    seen["dx"] = wrapped.backward(g)
    seen["grads"] = wrapped.param_grads()
    if any(e.side == "backward" and e.array.startswith("parameter") for e in wrapped.effects):
        wrapped.set_params(seen["params"])  # a backward that stepped the weights: the forward again at the same ones
    seen["y_again"] = wrapped.forward(x)


def _crashed(
    result: LayerResult,
    wrapped: WrappedLayer,
    exc: Exception,
    point: tuple[np.ndarray, np.ndarray],
    seen: dict[str, Any],
    refs: Any,
    tol_scale: float,
) -> LayerResult:
    """The verdict ``error`` for ``exc`` met in :func:`_first_calls`, on the side that ran it
    (re-raised when it is a configuration error); a forward that ran before a backward crash
    is still compared."""
    x, g = point
    result.error_side = wrapped.running or "forward"
    if (unbound := call_error(wrapped, exc, result.error_side)) is not None:  # called without an argument it needs
        raise unbound from None
    # code for one example at a time handed a batch: a hint confirmed by a per-example run
    confirmed = per_example_hint(wrapped, exc, x) if result.error_side == "forward" else ""
    result.message = _fault_message(wrapped, exc, x, result.error_side, confirmed)
    if confirmed:  # it replaces the guess from the output's rank, too
        result.message = result.message.replace(ONE_EXAMPLE_GUESS, "")
    if "params" in seen and result.error_side == "backward":  # the forward ran: a bug in it is still found
        _forward_behind_crash(result, wrapped, x, g, seen["y"], seen["params"], refs, tol_scale)
    apply_effects(result, wrapped.side_effects())
    return result


def _forward_behind_crash(
    result: LayerResult,
    wrapped: WrappedLayer,
    x: np.ndarray,
    g: np.ndarray,
    y_u: np.ndarray,
    params: dict[str, np.ndarray],
    refs: Any,
    tol_scale: float,
) -> None:
    """The backward crashed after the forward ran: the forward's output is still compared
    with both references (a row in the table, failing if wrong), the verdict stays ``error``
    and the message says when the forward disagrees too."""
    from reference_models import build

    spec, message = wrapped.spec, result.message
    assert spec is not None  # as in check_point
    full = {join_path(spec.name, k): v for k, v in params.items()}
    t, j = refs if refs is not None else (build(b, Sequential([spec])).vjp(full, x, g) for b in ("torch", "jax"))
    result.refs_error = relative_with_floor(t.output, j.output)
    tensors: list[Compared] = [("output", "forward", y_u, t.output, j.output, x.size // x.shape[0], 0.0)]
    forward_ok, _ = _judge(result, tensors, {}, wrapped.dtype, tol_scale, batch=x.shape[0], **_hints(spec, x))
    result.verdict, result.message = "error", message
    if not forward_ok:
        worst = result.tensors[0]
        result.message += (
            f"; the forward also disagrees with the references (output: {worst.error_torch:.1e} "
            f"relative, tolerance {worst.tolerance:.1e}): fix it too"
        )


def _hints(spec: Layer, x: np.ndarray) -> dict[str, Any]:
    """What the diagnosis needs to know about the layer: its window size, groups, overlap."""
    convs = [layer for _, layer in walk(Sequential([spec])) if isinstance(layer, Conv2d)]
    hints: dict[str, Any] = {
        "groups": convs[0].groups if len(convs) == 1 else 1,
        "window": int(np.prod(spec.kernel_size)) if hasattr(spec, "kernel_size") else None,
        "counts": counts(spec, x),
    }
    if isinstance(spec, (MaxPool2d, AvgPool2d)) and x.ndim == 4:
        hints["overlap"] = window_overlap(spec.kernel_size, spec.stride, spec.padding, spec._dilation(), x.shape[2:])
    return hints


def _compared(
    result: LayerResult,
    x: np.ndarray,
    y_u: np.ndarray,
    dx_u: np.ndarray | None,
    grads_u: dict[str, np.ndarray],
    t: Any,
    j: Any,
    spec: Layer,
) -> list[Compared]:
    """The user's output, input gradient and parameter gradients next to both references'
    values, with their reduction sizes and floors; sets ``result.refs_error`` (torch vs jax)."""
    n, y_shape = x.shape[0], t.output.shape
    refs_err = [relative_with_floor(t.output, j.output), relative_with_floor(t.input_grad, j.input_grad)]
    grad_scale = max([float(np.linalg.norm(t.input_grad))] + [float(np.linalg.norm(v)) for v in t.param_grads.values()])
    tensors: list[Compared] = [("output", "forward", y_u, t.output, j.output, x.size // n, 0.0)]
    if dx_u is not None:  # None: declared input_grad=False (the code computes no input gradient)
        tensors.append(
            ("input", "backward", dx_u, t.input_grad, j.input_grad, int(np.prod(y_shape)) // n, FLOOR * grad_scale)
        )
    for k, v in grads_u.items():
        name = join_path(spec.name, k)
        refs_err.append(relative_with_floor(t.param_grads[name], j.param_grads[name], FLOOR * grad_scale))
        tensors.append(
            (
                k,
                "backward",
                v,
                t.param_grads[name],
                j.param_grads[name],
                n * int(np.prod(y_shape[2:])),
                FLOOR * grad_scale,
            )
        )
    result.refs_error = max(refs_err)
    return tensors


from .network_check import check_network  # noqa: E402  (it builds on check_point above)

__all__ = ["check_layer", "check_network", "check_point"]
