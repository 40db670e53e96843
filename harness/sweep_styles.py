"""What one sweep configuration is and which check judges it: the spec factory's answer read
(:func:`read_factory`), the calling style of what ``make`` returned (:func:`style_of`), and
that style's check run with the configuration's options (:func:`run_check`).

A sweep checks whatever calling style the user's code comes in, with the check for it:

* ``"layer"``: a raw layer object, or :func:`harness.wrap_layer` / :func:`harness.wrap_functions`
  / :func:`harness.wrap_autograd`'s result, with a spec layer: :func:`harness.check_layer`;
* ``"loss"``: a loss function ``fn(scores, y) -> (loss, dscores)``, a loss object or
  :func:`harness.wrap_loss`'s result, with a loss spec (``harness.SoftmaxCrossEntropy()``):
  :func:`harness.check_loss`;
* ``"network"``: a ``{spec layer name: layer}`` mapping or :func:`harness.wrap_network`'s
  result, with the network's spec: :func:`harness.check_network`;
* ``"loss model"``: a CS231n-style model (``model.loss(X, y) -> (loss, grads)``) or
  :func:`harness.wrap_loss_model`'s result, with the network's spec (and, raw, the loss spec
  under ``"loss"``): :func:`harness.check_network`, which checks it under its loss.

Three outcomes besides a report, told apart so a sweep never calls a usage error a bug:
:class:`UsageError` (the setup is wrong: nothing the user's code computed was judged; the
sweep stops at once), :class:`Rejected` (the spec, or the machine, refuses this
configuration: skipped), and the user's code raising (a report whose verdict is ``error``: a
real failure). Which is which follows :mod:`harness.faults`, not the messages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .spec import Layer, Loss, SpecError
from .sweep_result import _name, format_config

STYLES = ("layer", "loss", "network", "loss model")
# what a spec factory may return in its dict; every other key is a usage error
FACTORY_KEYS = (
    "spec",
    "input_shape",
    "x",
    "y",
    "loss",
    "dtype",
    "input_scale",
    "input_shift",
    "tol_scale",
    "fd_probes",
)
# keys check_kwargs cannot hold: the sweep's own seed and the spec factory's answer
RESERVED = ("seed", "spec", "input_shape")


class UsageError(ValueError):
    """The sweep cannot check this configuration because of how it was set up (``make``
    returned something no check takes, a declaration or option does not fit, the spec
    factory returned an unknown key or a wrong type): nothing the user's code computed was
    judged, so it is never a failing configuration."""


class Rejected(SpecError):
    """The spec refuses this configuration's input (it does not fit the spec in the code's
    declared layout), or the check would need more memory than the machine has: skipped."""


@dataclass
class Point:
    """One configuration as the spec factory describes it: ``spec`` (a spec layer or a loss
    spec), ``input_shape`` (in the code's declared layout, or None) and ``options`` (the other
    :data:`FACTORY_KEYS` it returned, for this configuration's check)."""

    spec: Layer | Loss
    input_shape: tuple[int, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- the spec factory


def read_factory(spec_factory: Callable[..., Any], cfg: Mapping[str, Any]) -> Point:
    """``spec_factory(**cfg)`` read: ``(spec, input shape)`` or a dict of :data:`FACTORY_KEYS`.
    A SpecError it raises, or a 4-D shape that fits the spec in neither data order, rejects
    the configuration (the SpecError propagates); anything else wrong is a UsageError."""
    from .adapters.inputs import canonical_shape, refusal
    from .frames import user_frame

    name = _name(spec_factory)
    try:
        value = spec_factory(**cfg)
    except SpecError:
        raise
    except Exception as e:
        raise UsageError(f"{name}({format_config(cfg)}) raised {user_frame(e)}") from e
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in FACTORY_KEYS]
        if unknown:
            raise UsageError(
                f"{name}() returned the key(s) {unknown}, which a sweep does not use; the keys it takes: "
                f"{', '.join(FACTORY_KEYS)}"
            )
        if "spec" not in value:
            raise UsageError(f"{name}() returned a dict without 'spec'; it needs {{'spec': ..., 'input_shape': ...}}")
        options = dict(value)
    elif isinstance(value, tuple) and len(value) == 2:
        options = {"spec": value[0], "input_shape": value[1]}
    else:
        raise UsageError(
            f"{name}() must return (spec, input shape) or a dict {{'spec': ..., 'input_shape': ...}}, got "
            f"{type(value).__name__}" + (f" of {len(value)}" if isinstance(value, tuple) else "")
        )
    spec, shape = options.pop("spec"), options.pop("input_shape", None)
    if not isinstance(spec, (Layer, Loss)):
        raise UsageError(
            f"{name}() returned a {type(spec).__name__} as the spec; it must be a spec layer (harness.Conv2d(...), "
            "harness.Sequential([...])) or a loss spec (harness.SoftmaxCrossEntropy(), harness.MSE())"
        )
    if shape is not None:
        try:
            shape = tuple(int(n) for n in shape)
        except (TypeError, ValueError):
            raise UsageError(f"{name}() returned the input shape {shape!r}; it must be a tuple of ints") from None
        # 3-D sequences may be laid out time first: read only in the code's layout, after make
        if isinstance(spec, Layer) and len(shape) != 3 and refusal(spec, canonical_shape(shape, "NHWC")) is not None:
            spec.output_shape(shape)  # fits read neither way: the NCHW reading's refusal
    return Point(spec, shape, options)


# --------------------------------------------------------------------------- the calling style


def style_of(obj: Any, point: Point, check_kwargs: Mapping[str, Any]) -> str:
    """The calling style of ``obj`` (what ``make`` returned) under ``point``'s spec, one of
    :data:`STYLES`; a UsageError when no check takes that combination."""
    from .adapters.captioning import CaptioningModel, is_captioning
    from .adapters.layer import WrappedLayer
    from .adapters.loss import WrappedLoss
    from .adapters.network import LossModel, WrappedNetwork

    spec = point.spec
    if isinstance(spec, Loss):
        if isinstance(obj, WrappedLoss):
            return "loss"
        others = (WrappedLayer, WrappedNetwork, LossModel, CaptioningModel, Mapping, type)
        if not isinstance(obj, others) and _is_loss(obj, check_kwargs):
            return "loss"
        raise UsageError(
            f"the spec factory gives the loss spec {spec!r}, but make returned {_what(obj)}: a loss spec goes with "
            "the user's loss (a function fn(scores, y) -> (loss, dscores), an object with forward(scores, y) and "
            "backward(), or harness.wrap_loss(...)); a layer, network or loss model takes the spec of what it "
            "computes (a loss model's loss spec goes under 'loss')"
        )
    if isinstance(obj, WrappedLoss):
        raise UsageError(
            f"make returned a wrapped loss, but the spec factory gives the layer spec {type(spec).__name__} "
            f"'{spec.name}': a loss takes a loss spec (harness.SoftmaxCrossEntropy()); a network checked under a "
            "loss takes it as 'loss'"
        )
    if isinstance(obj, LossModel):
        return "loss model"
    if isinstance(obj, (WrappedNetwork, CaptioningModel, Mapping)) or is_captioning(obj):
        return "network"
    if isinstance(obj, WrappedLayer):
        return "layer"
    forward = check_kwargs.get("forward", "forward")
    has_forward = isinstance(forward, str) and callable(getattr(obj, forward, None))
    method = check_kwargs.get("method", "loss")
    loss_model = not isinstance(obj, type) and isinstance(method, str) and callable(getattr(obj, method, None))
    loss_spec = isinstance(point.options.get("loss", check_kwargs.get("loss")), Loss)
    if loss_model and (not has_forward or loss_spec):  # an object with both is a loss model when given its loss
        return "loss model"
    from .adapters.autograd import routes_to_autograd

    if has_forward or routes_to_autograd(obj):
        return "layer"
    raise UsageError(_taken_by_none(obj, forward))


def _is_loss(obj: Any, check_kwargs: Mapping[str, Any]) -> bool:
    """A raw loss: an object with its forward and backward methods, or a function; one whose
    forward (or itself) takes a single required argument is a layer's, not a loss's (scores, y)."""
    forward, backward = check_kwargs.get("forward", "forward"), check_kwargs.get("backward", "backward")
    methods = all(isinstance(m, str) and callable(getattr(obj, m, None)) for m in (forward, backward))
    if not methods and not callable(obj):
        return False
    return _required(getattr(obj, forward) if methods else obj) != 1


def _required(fn: Any) -> int | None:
    """How many positional arguments ``fn`` requires (None when it has no signature to read)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in kinds and p.default is inspect.Parameter.empty for p in params)


def _what(obj: Any) -> str:
    return f"a {type(obj).__name__}" if not isinstance(obj, type) else f"the class {obj.__name__}"


def _taken_by_none(obj: Any, forward: Any) -> str:
    """Why no check takes ``obj``, and what each one would take."""
    pair = (
        "; a (forward, backward) pair of functions is wrapped with harness.wrap_functions(forward, backward, "
        "spec, params)"
        if isinstance(obj, tuple) and len(obj) == 2 and all(callable(f) for f in obj)
        else ""
    )
    made = " (make returned the class itself: call it)" if isinstance(obj, type) else ""
    return (
        f"make returned {_what(obj)}{made}, which no check takes: {type(obj).__name__} has no method {forward}() "
        "(a layer: forward() and backward(), or harness.wrap_layer / wrap_functions / wrap_autograd), no "
        "loss(X, y) (a loss model) and is not a {spec layer name: layer} mapping (a network, or "
        f"harness.wrap_network){pair}"
    )


# --------------------------------------------------------------------------- one check


def run_check(style: str, obj: Any, point: Point, seed: int, check_kwargs: Mapping[str, Any]) -> Any:
    """The Report of ``style``'s check of ``obj`` at ``point``, with ``check_kwargs`` and the
    factory's options (a key given by both is a UsageError). Raises :class:`Rejected` when
    the input does not fit the spec in the code's declared layout; configuration errors of
    the check itself propagate as they are (the caller turns them into a UsageError)."""
    from .sweep_inputs import checked_numbers

    bad = [k for k in RESERVED if k in check_kwargs]
    if bad:
        raise UsageError(
            f"check_kwargs holds {bad}: the seed is sweep(seed=)'s and the spec and input shape come from the "
            "spec factory"
        )
    both = sorted(set(point.options) & set(check_kwargs))
    if both:
        raise UsageError(
            f"{both} given both in check_kwargs and by the spec factory; pass each in one place (the factory's "
            "may vary with the configuration)"
        )
    opts = {**check_kwargs, **point.options}
    common: dict[str, Any] = {"seed": seed, **{k: opts.pop(k) for k in ("fd_probes", "tol_scale") if k in opts}}
    scaling = (opts.pop("input_scale", 1.0), opts.pop("input_shift", 0.0))
    checked_numbers(common, scaling)
    run = {"layer": _layer, "loss": _loss, "network": _network, "loss model": _loss_model}[style]
    return run(obj, point, opts, common, scaling)


def _refuse(opts: Mapping[str, Any], keys: tuple[str, ...], why: str) -> None:
    given = [k for k in keys if opts.get(k) is not None]
    if given:
        raise UsageError(f"{given}: {why}")


def _same_spec(obj: Any, point: Point, what: str) -> None:
    """An already wrapped object must have been wrapped with this configuration's spec."""
    if obj.spec != point.spec:
        raise UsageError(
            f"make returned {what} wrapped with the spec {obj.spec!r}, but the spec factory gives {point.spec!r} "
            "for this configuration; wrap it with the factory's spec (or return the raw object)"
        )


def _no_dtype(opts: dict[str, Any], why: str) -> None:
    if opts.get("dtype") is not None:
        raise UsageError(f"'dtype' is a wrap option for a raw layer or loss; {why}")
    opts.pop("dtype", None)


def _layer(obj: Any, point: Point, opts: dict[str, Any], common: dict[str, Any], scaling: tuple[Any, Any]) -> Any:
    from .adapters.layer import WrappedLayer
    from .check import check_layer
    from .sweep_inputs import fitted_shape, generated

    _refuse(
        opts, ("y", "loss"), "a layer is checked with a random upstream gradient; these are for losses and networks"
    )
    spec, layout = point.spec, opts.get("layout")  # the declared layout (a wrapped layer's own)
    assert isinstance(spec, Layer)  # style_of gives "layer" only for a spec layer
    if isinstance(obj, WrappedLayer):
        _same_spec(obj, point, "a layer")
        _no_dtype(opts, "make returned an already wrapped layer: pass dtype= to its wrap call")
        layout = obj.layout
    x = opts.pop("x", None)
    shape = fitted_shape(point, x, layout)
    if x is None:
        x = generated(spec, shape, layout, common["seed"], scaling, opts.get("dtype"))
    return check_layer(obj, spec, input_shape=shape if x is None else None, x=x, **common, **opts)


def _loss(obj: Any, point: Point, opts: dict[str, Any], common: dict[str, Any], scaling: tuple[Any, Any]) -> Any:
    from .adapters.loss import WrappedLoss
    from .loss_check import check_loss
    from .sweep_inputs import fitted_shape, generated

    _refuse(opts, ("loss",), "a loss checked alone is what make returns ('loss' is the loss after a network)")
    if isinstance(obj, WrappedLoss):
        _no_dtype(opts, "make returned an already wrapped loss: pass dtype= to harness.wrap_loss")
        _same_spec(obj, point, "a loss")
    x, y, spec = opts.pop("x", None), opts.pop("y", None), point.spec
    assert isinstance(spec, Loss)  # style_of gives "loss" only for a loss spec
    shape = fitted_shape(point, x, None)
    if x is None:
        x = generated(spec, shape, None, common["seed"], scaling, opts.get("dtype"))
    return check_loss(obj, spec, scores=x, y=y, input_shape=shape if x is None else None, **common, **opts)


def _network(obj: Any, point: Point, opts: dict[str, Any], common: dict[str, Any], scaling: tuple[Any, Any]) -> Any:
    from .adapters.captioning import CaptioningModel, is_captioning
    from .adapters.network import WrappedNetwork
    from .check import check_network
    from .sweep_inputs import fitted_shape, generated

    _no_dtype(opts, "a network computes in its layers' parameters' dtype: build them in it in make")
    x, y, loss = opts.pop("x", None), opts.pop("y", None), opts.pop("loss", None)
    spec, layout = point.spec, opts.get("layout")  # the declared layout (a wrapped network's own)
    assert isinstance(spec, Layer)  # style_of gives "network" only for a spec layer
    if isinstance(obj, CaptioningModel) or is_captioning(obj):  # draws its own features and captions
        return check_network(obj, spec, x, y, loss=loss, input_shape=point.input_shape, **common, **opts)
    if isinstance(obj, WrappedNetwork):
        _same_spec(obj, point, "a network")
        layout = obj.layout
    shape = fitted_shape(point, x, layout) or getattr(obj, "input_shape", None)
    if x is None and shape is None:
        raise UsageError("a network needs its input: return 'input_shape' (or 'x') from the spec factory")
    if x is None:
        x = generated(spec, shape, layout, common["seed"], scaling, None)
    return check_network(obj, spec, x, y, loss=loss, input_shape=shape if x is None else None, **common, **opts)


def _loss_model(obj: Any, point: Point, opts: dict[str, Any], common: dict[str, Any], scaling: tuple[Any, Any]) -> Any:
    from .adapters.network import LossModel, wrap_loss_model
    from .check import check_network
    from .sweep_inputs import fitted_shape, generated

    _no_dtype(opts, "a loss model computes in its parameters' dtype: build them in it in make")
    x, y, loss = opts.pop("x", None), opts.pop("y", None), opts.pop("loss", None)
    spec = point.spec
    assert isinstance(spec, Layer)  # style_of gives "loss model" only for a spec layer
    if isinstance(obj, LossModel):
        _same_spec(obj, point, "a loss model")
        if loss is not None and loss != obj.loss:
            raise UsageError(f"the loss model was wrapped with the loss {obj.loss!r}, but 'loss' is {loss!r}")
        model = obj
    else:
        if not isinstance(loss, Loss):
            raise UsageError(
                f"make returned a loss model ({type(obj).__name__} with loss(X, y)); checking it needs its loss "
                "spec: return 'loss': harness.SoftmaxCrossEntropy() (or harness.MSE()) from the spec factory"
                + (f", got {type(loss).__name__}" if loss is not None else "")
            )
        wrap = {k: opts.pop(k) for k in ("params", "layout", "method") if k in opts}
        fitted_shape(point, x, wrap.get("layout"))  # a shape the spec refuses is a rejection, before the wrap reads it
        model = wrap_loss_model(obj, spec, loss=loss, input_shape=point.input_shape, **wrap)
    if opts:
        raise UsageError(
            f"option(s) {sorted(opts)} for a loss model "
            + (
                "that make returned already wrapped: pass harness.wrap_loss_model's options to it"
                if isinstance(obj, LossModel)
                else "are not harness.wrap_loss_model's (params=, layout=, method=) nor fd_probes= or tol_scale="
            )
        )
    shape = fitted_shape(point, x, model.layout) or model.input_shape
    if x is None and shape is None:
        raise UsageError("a loss model needs its input: return 'input_shape' (or 'x') from the spec factory")
    if x is None:
        x = generated(spec, shape, model.layout, common["seed"], scaling, None)
    return check_network(model, None, x, y, input_shape=shape if x is None else None, **common)


def translated(e: Exception) -> Exception:
    """What an exception out of a check means for a sweep (:mod:`harness.faults`): the user's
    code's fault is returned as it is (the caller reports it as a verdict ``error``); the
    machine's limit is a :class:`Rejected`; a configuration error (a SpecError, or the
    TypeError / ValueError a check raises for arguments that do not fit) is a
    :class:`UsageError`; anything else (a bug in trigrad) is returned unchanged to re-raise."""
    from .faults import codes_fault
    from .resources import ResourceError

    if codes_fault(e) or isinstance(e, (UsageError, Rejected)):
        return e
    if isinstance(e, ResourceError):
        return Rejected(str(e))
    if isinstance(e, (SpecError, TypeError, ValueError)):
        return UsageError(f"{type(e).__name__}: {e}")
    return e


__all__ = ["FACTORY_KEYS", "STYLES", "Point", "Rejected", "UsageError", "read_factory", "run_check", "style_of"]
