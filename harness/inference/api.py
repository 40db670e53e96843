"""The front door of inference: :func:`infer` decides what the user handed it (a layer object,
a CS231n function pair, a network object or a list/dict of layer objects) and hands it to
:func:`harness.inference.layer.infer_layer` or :func:`harness.inference.network.infer_network`;
:func:`inferred_for_check` is what ``check_layer`` / ``check_network`` call when no spec is
given, and :func:`report_note` what they attach to the report.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..adapters.refs import AdapterError
from ..adapters.replay import kept_random_state
from .loss_model import infer_loss_model, is_loss_model
from .result import Inference


def _is_pair(target: Any) -> bool:
    return isinstance(target, tuple) and len(target) == 2 and all(callable(f) for f in target)


# method names for the two passes, as from-scratch code names them (forward/backward first)
METHOD_PAIRS = (
    ("forward", "backward"),
    ("forward", "backprop"),
    ("forward", "backward_pass"),
    ("forward_pass", "backward_pass"),
    ("fprop", "bprop"),
    ("forward_prop", "backward_prop"),
    ("forward_propagation", "backward_propagation"),
    ("feedforward", "backprop"),
    ("feed_forward", "back_propagation"),
    ("__call__", "backward"),
    ("call", "backward"),
)


def _methods(obj: Any, kw: dict[str, Any]) -> dict[str, str] | None:
    """The names of ``obj``'s two passes: declared (``forward=`` / ``backward=``), else the
    first pair of :data:`METHOD_PAIRS` it has; None when it has none."""
    declared = {k: kw[k] for k in ("forward", "backward") if isinstance(kw.get(k), str)}
    for fwd, bwd in METHOD_PAIRS:
        f, b = declared.get("forward", fwd), declared.get("backward", bwd)
        if callable(getattr(obj, f, None)) and callable(getattr(obj, b, None)):
            return {} if (f, b) == ("forward", "backward") else {"forward": f, "backward": b}
    return None


def _layer_like(obj: Any) -> bool:
    """A layer object a network's watched forward can see (:func:`.structure.is_layer`: a
    ``forward``, or a class-defined ``__call__`` and a ``backward``)."""
    from .structure import is_layer

    return is_layer(obj)


def layer_container(target: Any) -> tuple[str, Any] | None:
    """(name, value) of the first attribute of ``target`` that is a non-empty list, tuple or
    dict of layer objects (``self.layers``): how a network without passes of its own (a
    "deep learning from scratch" net with ``predict`` and an ``OrderedDict`` of layers) holds
    them; None when it has none."""
    for name, value in vars(target).items() if hasattr(target, "__dict__") else ():
        items = (
            list(value.values()) if isinstance(value, Mapping) else value if isinstance(value, (list, tuple)) else []
        )
        if items and all(_layer_like(v) for v in items):
            return name, value
    return None


def is_network(target: Any) -> bool:
    """A list / tuple / dict of layer objects, or an object with a forward that holds layer
    objects (as attributes, or in a list, tuple or dict attribute): a network or a composite
    block. A layer object holding only arrays is a layer."""
    if isinstance(target, Mapping):
        return bool(target) and all(_layer_like(v) for v in target.values())
    if isinstance(target, (list, tuple)) and not _is_pair(target):
        return bool(target) and all(_layer_like(v) for v in target)
    if not _layer_like(target):
        return not isinstance(target, type) and layer_container(target) is not None
    for value in vars(target).values() if hasattr(target, "__dict__") else ():
        if _layer_like(value):
            return True
        items = value.values() if isinstance(value, Mapping) else value if isinstance(value, (list, tuple)) else ()
        if any(_layer_like(v) for v in items):
            return True
    return False


def _example(x: Any, input_shape: Any, seed: int, what: str) -> Any:
    """The example input: ``x`` as given, else a standard normal array of ``input_shape``."""
    if x is not None:
        return x
    if input_shape is None:
        raise AdapterError(
            f"infer: {what}: pass x= (an example input, as your code takes it) or input_shape= "
            "(its shape in your code's layout, e.g. (N, C, H, W) or (N, H, W, C)); the shapes of the "
            "parameters alone do not say the input's spatial size"
        )
    from ..adapters.inputs import as_shape

    return np.random.default_rng(seed).standard_normal(as_shape(input_shape, f"infer: {what}: input_shape"))


def is_loss(target: Any) -> bool:
    """A loss: a plain function (not a pair, a class or a layer), or an object whose
    ``forward`` requires (scores, y)."""
    if isinstance(target, type) or _is_pair(target) or is_loss_model(target):
        return False
    forward = getattr(target, "forward", None)
    if callable(forward) and callable(getattr(target, "backward", None)):
        from .loss_read import required, takes_targets

        return required(forward) == 2 and takes_targets(forward)  # not forward(x, training)
    if not callable(target) or isinstance(target, (np.ndarray, Mapping, list, tuple)):
        return False
    if inspect.isroutine(target) or isinstance(target, functools.partial):
        return True
    # a callable object is a loss only when it has no passes of a layer and is called as (scores, targets)
    if _methods(target, {}) is not None or layer_container(target) is not None:
        return False
    from .loss_read import required, takes_targets

    return required(target.__call__) == 2 and takes_targets(target.__call__)


def inferable(obj: Any) -> bool:
    """What :func:`infer` takes: a layer object (its passes under any name of
    :data:`METHOD_PAIRS`), a function pair, a network (or a list / dict of layers), a loss
    or a CS231n loss model."""
    if isinstance(obj, type):
        return False
    return _is_pair(obj) or _methods(obj, {}) is not None or is_network(obj) or is_loss_model(obj) or is_loss(obj)


def _what(target: Any) -> str:
    if _is_pair(target):
        return f"the function pair {getattr(target[0], '__name__', '?')} / {getattr(target[1], '__name__', '?')}"
    return f"a {type(target).__name__}"


def infer(
    target: Any,
    x: Any = None,
    *,
    input_shape: tuple[int, ...] | None = None,
    seed: int = 0,
    **wrap_kwargs: Any,
) -> Inference:
    """Infer the spec, the layout and where every parameter and gradient lives.

    ``target``: a layer object (``forward(x)`` / ``backward(dy)``), a loss (a function
    ``fn(scores, y) -> (loss, dscores)`` or an object with ``forward(scores, y)``, ``x`` the
    scores ``(N, K)``, ``y=`` the targets: :func:`harness.inference.loss.infer_loss`), a CS231n-style loss model
    (``model.loss(X, y) -> (loss, grads)`` over ``model.params``:
    :func:`harness.inference.loss_model.infer_loss_model`), a CS231n function pair
    ``(forward, backward)`` (its parameter arrays as ``params=[w, b]``, extra arguments as
    ``args=`` / ``kwargs=``, as :func:`~harness.wrap_functions` takes them), a network object
    whose attributes (or ``layers`` list) hold layer objects, or a list / dict of layer
    objects. ``x``: an example input exactly as the code takes it (``(N, C, H, W)`` or
    ``(N, H, W, C)``, ``(N, D)`` ...), else one drawn from ``seed`` with ``input_shape``.
    ``wrap_kwargs``: options inference cannot see (``sgd=(None, lr)``, ``lazy=True``,
    ``forward_kwargs=`` ...), passed to the wrapper.

    Returns an :class:`~harness.inference.result.Inference`: ``.spec``, ``.layout``, one
    :class:`~harness.inference.result.LayerInference` per layer with its status (``exact``,
    ``ambiguous``, ``unmatched``), ``.wrap()`` and ``.to_python()``. The user's objects are
    not changed (parameters restored bit for bit), nor is what its global random generators
    draw next.
    """
    if isinstance(target, type):
        raise AdapterError(f"infer: got the class {target.__name__}, not an instance: pass {target.__name__}(...)")
    t0 = time.perf_counter()
    x = _example(x, input_shape, seed, _what(target))
    with kept_random_state():  # the user's code may draw from the global generators: what it draws next is kept
        inference = _dispatch(target, x, seed, wrap_kwargs)
    inference.seconds = time.perf_counter() - t0
    return inference


def _dispatch(target: Any, x: Any, seed: int, wrap_kwargs: dict[str, Any]) -> Inference:
    """:func:`infer` once the example input is there: a loss, a network or a layer."""
    from ..adapters.layouts import Layout

    if is_loss(target) or is_loss_model(target):
        return _infer_loss_like(target, x, seed, wrap_kwargs)
    if is_network(target):
        from .network import infer_network

        held = None if _layer_like(target) else layer_container(target)
        inference = infer_network(held[1] if held else target, x, seed=seed, **wrap_kwargs)
        if held:  # no passes of its own: its layers run in order, as they are held
            inference.notes.append(f"a {type(target).__name__} has no forward / backward: its {held[0]} run in order")
    else:
        methods = {} if _is_pair(target) else _methods(target, wrap_kwargs)
        if methods is None:
            raise AdapterError(
                f"infer: {_what(target)} has no forward() / backward(dy) (nor fprop / bprop, forward_pass / "
                "backward_pass ...): pass a layer or network object, forward= / backward= with its methods' names, "
                "a function pair (forward, backward) with params=[...], or a list of layer objects"
            )
        wrap_kwargs = {**wrap_kwargs, **methods}
        from .layer import infer_layer

        li = infer_layer(target, x, seed=seed, **wrap_kwargs)
        data = li.layout.data if np.ndim(x) == 4 else "NCHW"
        inference = Inference(li.spec, Layout(data=data), [li], tuple(np.shape(x)))
    return inference


def _infer_loss_like(target: Any, x: Any, seed: int, wrap_kwargs: dict[str, Any]) -> Inference:
    """A loss (``fn(scores, y)`` or ``forward(scores, y)`` / ``backward()``; ``x`` the scores,
    ``y=`` the targets) or a CS231n loss model (``model.loss(X, y)`` over ``model.params``)."""
    if is_loss(target):
        from .loss import inferred_loss

        return inferred_loss(target, x, wrap_kwargs.pop("y", None), seed, wrap_kwargs)
    if wrap_kwargs:
        raise AdapterError(
            f"infer: {_what(target)} is a CS231n-style loss model; {sorted(wrap_kwargs)} are not inferred for it: "
            "wrap it by hand with harness.wrap_loss_model"
        )
    return infer_loss_model(target, x, seed=seed)


def report_note(inference: Inference) -> dict[str, Any]:
    """What a report says about an inferred spec: ``{"status", "seconds", "layers": [one
    line per layer], "python": the spec to pin}`` (JSON-ready; the report schema's
    ``inferred``)."""
    try:
        python = inference.to_python()
    except Exception as e:  # the note must not cost the check: say why there is no source
        python = f"# could not write the spec as Python: {type(e).__name__}: {e}"
    return {
        "status": inference.status,
        "seconds": round(inference.seconds, 3),
        "layers": [li.summary() for li in inference.layers] + list(inference.notes),
        "python": python,
    }


def inferred_for_check(
    target: Any, x: Any, input_shape: Any, seed: int, wrap_kwargs: dict[str, Any], *, network: bool
) -> tuple[Any, Any, Any, Inference]:
    """For ``check_layer(obj, x=x)`` / ``check_network(net, x=x)`` with no spec: (the target
    wrapped as inferred, the ``x`` and ``input_shape`` the check then takes, the inference).
    Given only ``input_shape``, inference runs on an example drawn from it and the check
    still draws its own input (kept off kinks and ties). Code taking one example at a time is
    checked on a batch of two: the example and another. A check runs against ``best`` even
    when it is ambiguous or unmatched: the verdict then says ``forward`` where the forward
    matches nothing."""
    from ..adapters.autograd import refuse_without_spec

    refuse_without_spec(target)  # custom autograd code: inference reads numpy code
    if network and not is_network(target) and not is_loss_model(target):
        raise AdapterError(
            f"check_network: {_what(target)} holds no layer objects (attributes, or a list or dict of "
            "objects with forward()): a single layer is checked with check_layer"
        )
    if is_loss(target):
        raise AdapterError(
            f"check_{'network' if network else 'layer'}: {getattr(target, '__name__', None) or _what(target)} is a "
            "loss (it takes scores and targets): "
            "check it with harness.check_loss(fn, scores=..., y=...)"
        )
    example = _example(x, input_shape, seed, _what(target))
    inference = infer(target, example, seed=seed, **wrap_kwargs)
    one = inference.layers[0].wrap_kwargs if inference.network is None else {}
    if one.get("batched") is False:  # one example at a time: a batch of it and another
        from .layer import as_batch

        xb = as_batch(np.asarray(example, dtype=np.float64), one)
        if x is not None:
            x = np.concatenate([xb, np.random.default_rng(seed + 1).standard_normal(xb.shape)])
        else:
            input_shape = (2, *xb.shape[1:])
    if not network and inference.network is not None:  # a composite block checked as one layer (a Residual)
        from .network import wrap_inferred_layer

        return wrap_inferred_layer(inference), x, input_shape, inference
    return inference.wrap(), x, input_shape, inference


def attach(report: Any, inference: Inference | None) -> Any:
    """``report`` saying what was inferred (``Report.inferred``), when anything was."""
    if inference is not None:
        report.inferred = report_note(inference)
    return report


__all__ = ["attach", "infer", "inferable", "inferred_for_check", "is_loss", "is_network", "report_note"]
