"""The check of a whole network: every layer in isolation at the reference's own point, the
user's loss (:mod:`harness.loss_check`), and the user's own network end to end, boundary by
boundary.

Re-exported as :func:`harness.check.check_network` and :func:`harness.check_network`.
Exceptions follow :mod:`harness.faults`: the user's code's faults become an entry's verdict
``error``; configuration errors propagate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import precision, resources
from .adapters.inputs import read_input, read_shape
from .adapters.state import expect_inputs
from .check import check_point
from .end_to_end import _end_to_end, note_shared
from .kinks import off_kinks, random_input, upstream
from .loss_check import loss_entry, loss_model_entry, loss_targets
from .reference_pair import both, values_in
from .results import LayerResult, Report
from .spec import Layer, Residual, Sequential, join_path
from .spec import read_input as canonical_input


def check_network(
    net: Any,
    spec: Layer | None = None,
    x: np.ndarray | None = None,
    y: Any = None,
    *,
    loss: Any = None,
    input_shape: tuple[int, ...] | None = None,
    seed: int = 0,
    fd_probes: int = 2,
    tol_scale: float = 1.0,
    progress: Callable[[str, int, int], None] | None = None,
    **wrap_kwargs: Any,
) -> Report:
    """Check a handwritten network layer by layer, then end to end.

    ``net``: a :class:`~harness.adapters.network.WrappedNetwork`, a mapping from spec layer
    names to the user's layers (wrapped with ``spec`` and ``wrap_kwargs``; with no ``spec``,
    a network object or a list / dict of layer objects whose spec, layout and parameter
    names are inferred from the code and ``x``, see :func:`harness.inference.api.infer`), a CS231n
    :class:`~harness.adapters.network.LossModel` (``model.loss(X, y)``: checked as one
    ``(network)`` entry under its loss), or a CS231n ``CaptioningRNN`` (raw or from
    :func:`~harness.wrap_captioning`: ``x`` its features, ``y`` its captions; each part alone,
    then ``model.loss``, see :mod:`harness.caption_check`). ``x``: the input, else generated from ``seed`` with
    ``input_shape``; both in the network's declared layout: 4-D in ``layout.data``
    (``Layout(data="NHWC")``: ``(N, H, W, C)``; the default ``(N, C, H, W)``), 2-D ``(N, F)``
    as they are (the rule of :mod:`harness.adapters.inputs`; an input that does not fit is an
    ``AdapterError`` naming the layout it was read in and the fix). ``loss``: the user's loss from
    :func:`~harness.wrap_loss`, checked as a ``(loss)`` entry at the reference's output
    with targets ``y`` (generated from ``seed`` when None: labels for cross-entropy).

    Every layer is checked in isolation at the reference's own input to it and the
    reference's own upstream gradient (random, never all ones), so one layer's bug cannot
    make another fail. If the network has its own ``forward`` / ``backward``, the whole
    network is then compared with the references too (a ``(network)`` entry), boundary by
    boundary where its layers can be watched: when every layer passes alone and the network
    does not, the wiring between layers is at fault, and the first boundary where the
    network's values leave the reference's says where.

    Raises a :class:`~harness.spec.SpecError` for a configuration mistake (see
    :mod:`harness.faults`; among them an option no wrapper takes, and with an already-wrapped
    network any wrap option or another ``spec``: :mod:`harness.check_options`), and
    :class:`~harness.resources.ResourceError` — before any user code or reference runs — when
    the check would need more memory than is available.
    """
    from .adapters.captioning import CaptioningModel, is_captioning
    from .adapters.network import LossModel, WrappedNetwork

    if isinstance(net, CaptioningModel) or (not isinstance(net, (LossModel, WrappedNetwork)) and is_captioning(net)):
        from .caption_check import from_check_network

        options = {"seed": seed, "fd_probes": fd_probes, "tol_scale": tol_scale, "progress": progress}
        return from_check_network(
            net, spec, x, y, loss=loss, input_shape=input_shape, wrap_kwargs=wrap_kwargs, **options
        )
    _refuse_loss_arguments(net, loss, y)
    _refuse_options(net, spec, wrap_kwargs)
    inference = None
    if spec is None and not isinstance(net, (LossModel, WrappedNetwork)):  # no spec: infer it (harness.infer)
        from .inference.api import inferred_for_check

        net, x, input_shape, inference = inferred_for_check(net, x, input_shape, seed, wrap_kwargs, network=True)
        wrap_kwargs = {}
    wrapped, x, shape = _wrapped_input(net, spec, x, input_shape, wrap_kwargs)
    spec = wrapped.spec
    rng = np.random.default_rng(seed)
    resources.require(resources.network_estimate(spec, shape), f"checking the network on input {shape}")
    # random_input: a standard normal draw, or int64 indices for a network opened by an Embedding
    x = canonical_input(spec, random_input(spec, shape, rng) if x is None else x)
    out_shape = spec.output_shape(x.shape)
    g = upstream(rng, out_shape, x, seed)
    report = Report(seed=seed)
    if isinstance(net, LossModel):
        target = y if y is not None else loss_targets(net.loss, out_shape, rng)
        if progress:
            progress("(network)", 0, 1)
        with net.preserved():
            report.layers.append(loss_model_entry(net, x, target, rng, fd_probes, tol_scale))
    else:
        tick = progress or (lambda name, done, total: None)
        _check_wrapped(
            wrapped, x, g, report, loss=loss, y=y, rng=rng, fd_probes=fd_probes, tol_scale=tol_scale, tick=tick
        )
    if inference is not None:
        from .inference.api import attach

        attach(report, inference)
    return report


def _refuse_options(net: Any, spec: Layer | None, wrap_kwargs: dict[str, Any]) -> None:
    """An option no wrapper takes; with an already-wrapped network (or loss model) any wrap
    option, or another ``spec`` than its own (:mod:`harness.check_options`)."""
    from .adapters.network import LossModel, WrappedNetwork
    from .check_options import network_wrap_options, refuse_options, refuse_other_spec

    wrapped = net if isinstance(net, (LossModel, WrappedNetwork)) else None
    what = "loss model" if isinstance(net, LossModel) else "network"
    refuse_options(check_network, "check_network", wrap_kwargs, network_wrap_options(), wrapped=wrapped, what=what)
    if wrapped is not None:
        refuse_other_spec("check_network", spec, wrapped, what=what)


def _refuse_loss_arguments(net: Any, loss: Any, y: Any) -> None:
    """``loss=`` must be a wrapped loss; ``y=`` needs a loss to be the targets of."""
    from .adapters.loss import WrappedLoss
    from .adapters.network import LossModel

    if loss is not None and not isinstance(loss, WrappedLoss):
        raise TypeError(
            f"check_network: loss= takes the user's loss wrapped with harness.wrap_loss(fn, "
            f"SoftmaxCrossEntropy(), ...), got {type(loss).__name__}"
        )
    from .inference.loss_model import is_loss_model

    if y is not None and loss is None and not isinstance(net, LossModel) and not is_loss_model(net):
        raise TypeError("check_network: y= (targets) needs loss= (the user's loss, from harness.wrap_loss)")


def _check_wrapped(
    wrapped: Any,
    x: np.ndarray,
    g: np.ndarray,
    report: Report,
    *,
    loss: Any,
    y: Any,
    rng: np.random.Generator,
    fd_probes: int,
    tol_scale: float,
    tick: Callable[[str, int, int], None],
) -> None:
    """Append to ``report`` every layer checked alone, then the loss's ``(loss)`` entry and
    the network's own ``(network)`` entry when there are, all against one reference pass of
    the whole network at canonical input ``x`` and upstream gradient ``g``."""
    from reference_models import build

    total = len(wrapped.layers) + (loss is not None) + wrapped.end_to_end
    expect_inputs(wrapped, x.shape)  # a layer whose forward draws its dropout mask is primed at its own input shape
    with wrapped.preserved():
        params = wrapped.get_params()
        spec = wrapped.spec  # built inside the calls: a first check imports jax beside torch (reference_pair)
        ref, jax_ref = both(
            lambda: build("torch", spec).vjp(params, x, g),
            lambda: build("jax", spec).vjp(params, x, g),
            values_in(x, params),
        )
        for path in wrapped.layers:
            tick(path, len(report.layers), total)
            report.layers.append(_isolated(wrapped, path, ref, jax_ref, rng, fd_probes, tol_scale, report))
        poisoned = not np.isfinite(ref.output).all()
        if loss is not None:
            tick("(loss)", len(report.layers), total)
            target = y if y is not None else loss_targets(loss.spec, g.shape, rng)
            report.layers.append(
                _unreachable("(loss)", loss.spec.kind, str(loss.dtype), report)
                if poisoned
                else loss_entry(loss, ref.output, target, rng, fd_probes, tol_scale)
            )
        if wrapped.end_to_end:
            tick("(network)", len(report.layers), total)
            report.layers.append(
                _unreachable("(network)", "network", str(wrapped.dtype), report)
                if poisoned
                else _whole_network(wrapped, x, g, ref, jax_ref, tol_scale, report)
            )
            if not report.layers[-1].ok:  # a shared object fails only there: say so on each place it is mapped
                note_shared(report, wrapped.layers)


def _whole_network(
    wrapped: Any, x: np.ndarray, g: np.ndarray, ref: Any, jax_ref: Any, tol_scale: float, report: Report
) -> LayerResult:
    """The ``(network)`` entry: the user's own passes against the references, told which
    layers already failed or were inconclusive alone."""
    # the network runs on g, not the loss's gradient: only a layer that really fails explains it
    first = next(
        (
            layer.name
            for layer in report.layers[: len(wrapped.layers)]
            if layer.verdict in ("forward", "backward", "both", "error")
        ),
        None,
    )
    unsure = [layer.name for layer in report.layers[: len(wrapped.layers)] if layer.verdict == "inconclusive"]
    return _end_to_end(wrapped, x, g, ref, jax_ref, tol_scale, first, unsure)


def _wrapped_input(
    net: Any, spec: Layer | None, x: Any, input_shape: Any, wrap_kwargs: dict[str, Any]
) -> tuple[Any, np.ndarray | None, tuple[int, ...]]:
    """(the network wrapped, its canonical input or None, the canonical input shape): ``x``
    / ``input_shape`` read in the network's declared layout (:mod:`harness.adapters.inputs`).
    A mapping is wrapped here with ``wrap_kwargs`` and told the input's shape (an HWC flatten
    needs its (C, H, W)); an input that does not fit is refused under the name it was given."""
    from .adapters.layouts import Layout
    from .adapters.network import LossModel, WrappedNetwork, wrap_network

    if x is None and input_shape is None:
        raise ValueError("check_network needs x= or input_shape=")
    if isinstance(net, (LossModel, WrappedNetwork)):
        wrapped = net
    else:
        given = tuple(np.shape(x)) if x is not None else input_shape
        if isinstance(spec, Layer) and isinstance(wrap_kwargs.get("layout", Layout()), Layout):
            read_shape(
                given,
                spec,
                wrap_kwargs.get("layout", Layout()),
                "x" if x is not None else "input_shape",
                is_array=x is not None,
            )
        wrapped = wrap_network(net, spec, input_shape=given, **wrap_kwargs)  # type: ignore[arg-type]  # None: it says a spec is needed
    x = read_input(x, wrapped.spec, wrapped.layout) if x is not None else None
    return wrapped, x, (x.shape if x is not None else read_shape(input_shape, wrapped.spec, wrapped.layout))


def _isolated(
    wrapped: Any,
    path: str,
    ref: Any,
    jax_ref: Any,
    rng: np.random.Generator,
    fd_probes: int,
    tol_scale: float,
    report: Report,
) -> LayerResult:
    """The layer at ``path`` checked alone at the reference's own input to it (moved off
    kinks) and upstream gradient; reference values the whole-network passes already hold
    are reused. Not checked when the reference's values reaching it hold NaN/Inf."""
    layer = wrapped.layers[path]
    if not np.isfinite(ref.inputs[path]).all() or not np.isfinite(ref.output_grads[path]).all():
        return _unreachable(path, type(layer.spec).__name__, str(layer.dtype), report)
    feeds = _sequence_inputs(wrapped.spec)
    x_layer = off_kinks(layer.spec, ref.inputs[path], rng, precision.of(layer))  # bfloat16 by name: its FD step
    # a layer checked at the network's own point already has both references' values
    refs = (
        None
        if x_layer is not ref.inputs[path] or path not in feeds
        else tuple(_layer_values(r, path, feeds[path], layer.spec.name) for r in (ref, jax_ref))
    )
    return check_point(
        layer, x_layer, ref.output_grads[path], rng, fd_probes=fd_probes, tol_scale=tol_scale, name=path, refs=refs
    )


def _unreachable(name: str, kind: str, dtype: str, report: Report) -> LayerResult:
    """An entry that cannot be checked: the reference's own values reaching it hold NaN/Inf
    (the parameters of an earlier layer do, or the network overflows at this input)."""
    first = next((layer.name for layer in report.layers if layer.verdict == "error"), None)
    why = f"see '{first}'" if first else "the network overflows at this input: check a smaller or normalised input"
    return LayerResult(
        name=name,
        kind=kind,
        verdict="error",
        dtype=dtype,
        downstream_of=first,
        message=f"not checked: the reference's values reaching it hold NaN/Inf ({why})",
    )


def _sequence_inputs(spec: Layer) -> dict[str, str | None]:
    """``{leaf path: the path whose output is the leaf's input and feeds nothing else, or None
    for the network's input}``: for these leaves the whole network's reference pass holds
    the isolated layer's values too (its input gradient is the upstream gradient of what
    feeds it). Left out: leaves whose input is shared (the first layer of a residual block
    and of its shortcut, which both read the block's input)."""
    out: dict[str, str | None] = {}

    def seq(nodes: Any, prefix: str, feed: str | None, shared: bool) -> str | None:
        for i, node in enumerate(nodes):
            feed = visit(node, join_path(prefix, node.name), feed, shared and i == 0)
        return feed

    def visit(node: Layer, path: str, feed: str | None, shared: bool) -> str | None:
        if isinstance(node, Residual):
            last = seq(node.block, path, feed, True)
            if node.shortcut is not None:
                visit(node.shortcut, join_path(path, node.shortcut.name), feed, True)
            # d objective / d (block + shortcut) is the gradient at the block's last output
            return seq(node.post, path, last, False) if node.post else path
        if node.children():
            seq(node.children(), path, feed, shared)
            return path
        if not shared:
            out[path] = feed
        return path

    if isinstance(spec, Sequential):
        seq(spec.children(), spec.name, None, False)
    return out


def _layer_values(result: Any, path: str, feed: str | None, name: str) -> Any:
    """One layer's reference values, read off a whole-network result, with its parameter
    gradients keyed as a reference of that layer alone names them (``name.weight``, where
    ``name`` is the layer's own spec name and ``path`` its place in the network)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        output=result.outputs[path],
        input_grad=result.input_grad if feed is None else result.output_grads[feed],
        param_grads={
            join_path(name, k[len(path) + 1 :]): v for k, v in result.param_grads.items() if k.startswith(path + ".")
        },
    )


__all__ = ["check_network"]
