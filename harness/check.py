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
from collections.abc import Callable
from typing import Any

import numpy as np

from . import check_options, fd, index_input, precision, reference_pair, resources, spread, ties
from .adapters.attention import refuse_bad_masks
from .adapters.effects import apply_effects
from .adapters.inputs import read_input, read_shape
from .adapters.layer import WrappedLayer, wrap_layer
from .adapters.state import UNREPLAYABLE
from .check_crash import _crashed, _later_fault
from .check_crash import _fault_message as _fault_message
from .check_crash import _forward_behind_crash as _forward_behind_crash
from .fd_check import _fd_all, _true_grads
from .findings import accumulation, backward_hypotheses, bad_params_message, layout_hint
from .hints import scale_hint
from .hypotheses import explain
from .judge import FLOOR as FLOOR
from .judge import NO_INPUT_GRAD, Compared, _compared, _hints, _judge
from .judge import _nonfinite_message as _nonfinite_message
from .kinks import pattern, random_input, upstream
from .norm_scale import cancelled_scale
from .reference_pair import values_in
from .results import FDSummary, LayerResult, Report
from .spec import Layer, Sequential, example_input_shape, join_path, no_grad_masks
from .spec import read_input as canonical_input

FD_TOL = fd.FD_TOL
_fd_summary, _probes = fd.summary, fd.probes  # the names network_check and older code use


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
    wrapped with ``spec_layer`` and ``wrap_kwargs`` (``layout=``, ``params=`` ...). With no
    ``spec_layer``, the spec, layout and parameter names are inferred from the code and ``x``
    (:func:`harness.inference.api.infer`; ``x`` or ``input_shape`` then needed) and the report's
    ``inferred`` says what was inferred and how sure it is.
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
    :mod:`harness.faults`; among them an option no wrapper takes, and with an already-wrapped
    layer any wrap option or another ``spec_layer``: :mod:`harness.check_options`), and
    :class:`~harness.resources.ResourceError` — before any user code or reference runs — when
    the check would need more memory than is available.
    """
    _refuse_options(layer, spec_layer, wrap_kwargs)
    inference = None
    if not isinstance(layer, WrappedLayer) and spec_layer is None:  # no spec: infer it (harness.infer)
        from .inference.api import inferred_for_check

        layer, x, input_shape, inference = inferred_for_check(layer, x, input_shape, seed, wrap_kwargs, network=False)
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
    x = canonical_input(spec, random_input(spec, shape, rng, precision.of(wrapped)) if x is None else x)  # int64 stay
    g = upstream(rng, spec.output_shape(x.shape), x, seed)
    report = Report(seed=seed, layers=[check_point(wrapped, x, g, rng, fd_probes=fd_probes, tol_scale=tol_scale)])
    if inference is not None:
        from .inference.api import attach

        attach(report, inference)
    return report


def _refuse_options(layer: Any, spec_layer: Layer | None, wrap_kwargs: dict[str, Any]) -> None:
    """Before anything runs (:mod:`harness.check_options`): an option no wrapper takes, a wrap
    option given with an already-wrapped layer, a ``spec_layer`` other than its own."""
    wrapped = layer if isinstance(layer, WrappedLayer) else None
    name = wrapped.name if wrapped is not None else (spec_layer.name if isinstance(spec_layer, Layer) else None)
    owner = f"layer '{name}'" if name else "check_layer"
    check_options.refuse_options(check_layer, owner, wrap_kwargs, check_options.layer_wrap_options(), wrapped=wrapped)
    if wrapped is not None:
        check_options.refuse_other_spec(owner, spec_layer, wrapped, keyword="spec_layer")


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
    give the verdict ``error``; configuration errors propagate (see :mod:`harness.faults`).

    In steps: a warm-up forward at another point, then the forward, backward and forward
    again at the point (:func:`_first_calls`); a second backward, and for code that is not
    deterministic more calls measuring the spread (:func:`_second_backward`);
    the comparison with the references (:func:`_against_references`); finite differences
    (:func:`_finite_differences`); deliberate ties and zeros; the verdict
    (:func:`_verdict`); the diagnosis (:func:`_diagnose_entry`). Tolerances: :mod:`harness.precision`."""
    assert wrapped.spec is not None  # check_layer and wrap_network refuse a wrapper without one
    kind = type(wrapped.spec).__name__
    result = LayerResult(name=name or wrapped.name, kind=kind, verdict="error", dtype=_computes_in(wrapped))
    bad_params = wrapped.nonfinite_params()
    if bad_params:  # before any call: NaN weights would only show up as NaN outputs
        result.message = bad_params_message(bad_params)
        result.error_side = "setup"
        return result
    refuse_bad_masks(wrapped, x.shape)  # a padding mask hiding every key: a configuration error, said now
    x_warm = _warm_up_point(x, rng)
    wrapped.effects.clear()  # the writes this check sees, not those of earlier calls
    with wrapped.preserved():
        seen: dict[str, Any] = {}  # what the code's calls gave, by name; the diagnosis reads it after the verdict
        try:
            _first_calls(wrapped, x_warm, x, g, seen)
        except Exception as e:  # the user's code raised or returned garbage: a verdict; a wrong declaration: raised
            return _crashed(result, wrapped, e, (x, g), seen, refs, tol_scale)
        # taken now: the calls below record their own returns over these
        seen["bad_grads"], seen["dtype_notes"] = dict(wrapped.nonfinite_grads), wrapped.dtype_notes()
        try:
            _second_backward(wrapped, x, g, seen)
        except Exception as e:
            return _later_fault(result, wrapped, e, x, "fd", "backward")
        tensors, torch_ref, at = _against_references(result, wrapped, x, g, seen, refs)
        seen["measured"] = precision.measure(wrapped, x, g, seen["params"], tensors)  # None in float64
        try:
            fds = _finite_differences(result, wrapped, tensors, (x, g), seen, rng, at, fd_probes, tol_scale)
        except Exception as e:
            return _later_fault(result, wrapped, e, x, "fd", "forward")
        try:  # deliberate ties and zeros (a copy of rng: the draws of later checks stay as they were)
            seen["ties"] = ties.probe(wrapped, x.shape, copy.deepcopy(rng)) if seen["dx"] is not None else []
        except Exception as e:
            return _later_fault(result, wrapped, e, x, "ties", "backward")
    ok = _verdict(result, wrapped, tensors, fds, x, seen, tol_scale)
    _diagnose_entry(result, wrapped, tensors, ok, (x_warm, x, g), seen, torch_ref)
    said = precision.note(seen["measured"], {r[0]: r[5] for r in tensors}, tol_scale)  # after the ties' reset
    return _noted(result, said)


def _noted(result: LayerResult, note: str) -> LayerResult:
    """``result`` with ``note`` (when any) after its message."""
    result.message = "; ".join(filter(None, [result.message, note]))
    return result


def _computes_in(wrapped: WrappedLayer) -> str:
    """The entry's dtype: what the code computes in (``bfloat16`` for torch / jax bfloat16,
    which numpy holds as float32); the numpy dtype when the array type cannot be told yet."""
    try:
        return precision.of(wrapped)
    except Exception:  # a lazy layer's, before its first forward: said by the check itself
        return str(wrapped.dtype)


def _warm_up_point(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The point of the warm-up forward: ``x`` moved by one standard normal draw of its shape
    (scaled by its spread), so that a backward using a cache from an earlier call (not the
    latest forward) shows up as wrong; integer indices shuffled (:func:`harness.index_input.other_point`)."""
    if np.issubdtype(x.dtype, np.integer):
        return index_input.other_point(x, rng)
    return x + rng.standard_normal(x.shape) * (float(np.std(x)) or 1.0)


def _full(spec: Layer) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Local parameter names (``weight``) to the full names the references take (``conv1.weight``)."""
    return lambda p: {join_path(spec.name, k): v for k, v in p.items()}


def _against_references(
    result: LayerResult,
    wrapped: WrappedLayer,
    x: np.ndarray,
    g: np.ndarray,
    seen: dict[str, Any],
    refs: tuple[Any, Any] | None,
) -> tuple[list[Compared], Any, Any]:
    """Compare to the references: torch's and jax's output and VJP at the point (``refs``
    when the caller has them) next to what the user's code gave (``seen``), as the compared
    rows of :func:`harness.judge._compared`. Also returns torch's reference model (the
    diagnosis reruns it) and the activation pattern read off it — so that a wrong user
    forward cannot hide a crossing; None when the spec has no kinks."""
    from reference_models import build

    spec, params = wrapped.spec, seen["params"]
    assert spec is not None  # as in check_point
    full = _full(spec)
    if refs is None:  # built inside the calls: a first check imports jax beside torch (reference_pair)
        p = full(params)
        refs = reference_pair.both(
            lambda: build("torch", Sequential([spec])).vjp(p, x, g),
            lambda: build("jax", Sequential([spec])).vjp(p, x, g),
            values_in(x, p),
        )
    torch_ref = build("torch", Sequential([spec]))
    t, j = refs
    at = pattern(torch_ref, Sequential([spec]))
    floor = cancelled_scale(spec, x, g, params)  # a normalisation's input gradient cancels terms this size
    return _compared(result, x, seen["y"], seen["dx"], seen["grads"], t, j, spec, floor), torch_ref, at


def _finite_differences(
    result: LayerResult,
    wrapped: WrappedLayer,
    tensors: list[Compared],
    point: tuple[np.ndarray, np.ndarray],
    seen: dict[str, Any],
    rng: np.random.Generator,
    at: Any,
    count: int,
    tol_scale: float,
) -> dict[str, FDSummary]:
    """Finite differences of the user's own forward along ``count`` random directions per
    tensor from ``rng`` (:func:`harness.fd_check._fd_all`), siding with the references'
    gradients where they are the forward's true ones (:func:`harness.fd_check._true_grads`).
    ``point``: (input, upstream gradient)."""
    (x, g), spec = point, wrapped.spec
    assert spec is not None  # as in check_point
    noise = _noise(wrapped, tensors, seen, tol_scale)
    true = _true_grads(result, tensors, wrapped.dtype, tol_scale, noise, seen["measured"])
    # entries whose gradient the spec defines as zero (an Embedding's padding row): held still by the probes
    masks = no_grad_masks(Sequential([spec]), x.shape)
    held = {k: masks[full] for k in seen["params"] if (full := join_path(spec.name, k)) in masks}
    return _fd_all(wrapped, x, g, seen["dx"], seen["grads"], seen["params"], rng, count, at, _full(spec), true, held)


def _second_backward(wrapped: WrappedLayer, x: np.ndarray, g: np.ndarray, seen: dict[str, Any]) -> None:
    """A second backward at the same point, right after :func:`_first_calls`' forward again
    (whose caches are at the point: a forward of its own would cost one more call of the
    user's forward per layer, ~10% of a network check): its input and parameter gradients go
    into ``seen["dx_again"]`` and ``seen["again"]``; they must equal the first
    (:func:`harness.findings.accumulation`). When any call differed from the first, more calls
    at ``x`` measure the spread (:func:`harness.spread.measure`; none for deterministic code)."""
    seen["dx_again"] = wrapped.backward(g)
    seen["again"] = wrapped.param_grads()
    seen["spreads"] = spread.measure(wrapped, x, g, seen)


def _noise(wrapped: WrappedLayer, tensors: list[Compared], seen: dict[str, Any], tol_scale: float) -> dict[str, float]:
    """The absolute noise by tensor name the judge and the probes allow: what reading a
    gradient adds (``grad_noise``) plus the run-to-run spread within rounding (:mod:`harness.spread`)."""
    return spread.noise(
        wrapped.grad_noise(), spread.judged(seen["spreads"], tensors, wrapped.dtype, tol_scale, _computes_in(wrapped))
    )


def _verdict(
    result: LayerResult,
    wrapped: WrappedLayer,
    tensors: list[Compared],
    fds: dict[str, FDSummary],
    x: np.ndarray,
    seen: dict[str, Any],
    tol_scale: float,
) -> tuple[bool, bool]:
    """The verdict from the compared rows and the finite differences (:func:`harness.judge._judge`),
    with the NaN/Inf gradients the first backward returned and a run-to-run spread too large to
    be rounding (:func:`harness.spread.enforce`; the judged spreads go into ``seen["spreads"]``);
    (forward_ok, backward_ok)."""
    assert wrapped.spec is not None  # as in check_point
    seen["spreads"] = spread.judged(seen["spreads"], tensors, wrapped.dtype, tol_scale, _computes_in(wrapped))
    ok = _judge(
        result,
        tensors,
        fds,
        wrapped.dtype,
        tol_scale,
        batch=x.shape[0],
        noise=spread.noise(wrapped.grad_noise(), seen["spreads"]),
        nonfinite_found=seen["bad_grads"],
        measured=seen["measured"],
        **_hints(wrapped.spec, x),
    )
    return spread.enforce(result, seen["spreads"], ok, tensors)


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
    result.diagnosis += seen["dtype_notes"] + spread.lines(seen["spreads"], _computes_in(wrapped))
    result.diagnosis += scale_hint(wrapped, result, tensors, x.shape[0])
    if not backward_ok and not bad_grads:
        result.diagnosis += backward_hypotheses(result, tensors, forward_ok, torch_ref, spec, params, point)
    if not bad_grads and result.verdict not in ("pass", "error", "reference"):
        result.diagnosis += explain(result, tensors, spec, params, x, g, wrapped.layout)
    if not forward_ok and result.verdict in ("forward", "both"):
        result.diagnosis += layout_hint(wrapped, x, g, result)
    accumulation(result, seen["grads"], seen["again"], wrapped.dtype)
    _finish(result, wrapped)
    if wrapped.indices:  # integer indices: no input gradient exists; said on the entry, whatever the verdict
        index_input.mark(result, spec)
    elif seen["dx"] is None:  # declared input_grad=False: said on the entry, whatever the verdict
        result.message = "; ".join(filter(None, [result.message, NO_INPUT_GRAD]))
        result.input_gradient = index_input.NOT_COMPUTED


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
    if spread.stepped(wrapped):
        wrapped.set_params(seen["params"])  # a backward that stepped the weights: the forward again at the same ones
    seen["y_again"] = wrapped.forward(x)


from .network_check import check_network  # noqa: E402  (it builds on check_point above)

__all__ = ["check_layer", "check_network", "check_point"]
