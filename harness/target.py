"""What ``trigrad check TARGET`` checks: a user function, found by name, that returns it.

TARGET is ``path/to/file.py:function`` or ``package.module:function``. The function takes
no arguments, or ``seed`` / ``dtype`` if it wants them (trigrad passes ``--seed`` and
``--dtype``), and returns one of:

* a wrapped layer (:func:`harness.wrap_layer`, :func:`harness.wrap_functions`): checked
  with :func:`harness.check_layer`;
* a wrapped network (:func:`harness.wrap_network`) or CS231n model
  (:func:`harness.wrap_loss_model`): checked with :func:`harness.check_network`; a CS231n
  CaptioningRNN, as written or wrapped (:func:`harness.wrap_captioning`), too, with no input
  needed (its features and captions are drawn, or ``x`` / ``y`` given);
* a wrapped loss (:func:`harness.wrap_loss`): checked with :func:`harness.check_loss`;
* a dict ``{"check": ..., "spec": ..., "x": ..., "y": ..., "loss": ..., "input_shape": ...,
  "layout": ..., "options": {...}}`` where ``check`` is one of the above, or the user's raw
  layer object (then ``spec`` is its spec layer; a composite object holding its sub-layers
  takes a ``Sequential`` / ``Residual`` spec) or ``{spec path: layer object}`` mapping (then
  ``spec`` is the network's), or the user's raw loss function / object (then ``spec`` is a
  loss spec, ``SoftmaxCrossEntropy()`` or ``MSE()``, and ``"scores"`` (or ``"x"``) the
  ``(N, K)`` scores, ``"y"`` the targets); ``options`` are further wrap keywords;
* a tuple ``(check, spec)`` or ``(check, spec, x)``, short for that dict;
* a tuple ``(obj, x)``: the user's unwrapped layer or network object and an example input
  (an array, as the code takes it), or a dict with ``check`` and ``x`` / ``input_shape`` but
  no ``spec``: the spec, layout and parameter names are inferred
  (:func:`harness.inference.api.infer`) and the report says so (``inferred``);
* a :class:`harness.Report` already made.

``x`` and ``input_shape`` are in the declared layout (``layout``, or the wrapped code's):
4-D in ``layout.data``, e.g. ``(N, H, W, C)`` under ``Layout(data="NHWC")`` (the rule of
:mod:`harness.adapters.inputs`); a wrapped network's own ``input_shape`` is used when
neither is given.

Everything that goes wrong before the check runs is a :class:`TargetError` (exit code 2).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .frames import user_frame

KEYS = ("check", "spec", "x", "scores", "y", "loss", "input_shape", "layout", "options")


class TargetError(Exception):
    """The target cannot be found, loaded, called or understood: a usage error."""


def _import_failed(where: str, e: Exception, debug: bool) -> None:
    """The user's module raised while importing: its traceback with --debug, else one line."""
    if debug:
        raise e
    raise TargetError(f"importing {where} failed: {user_frame(e)} (rerun with --debug for the traceback)") from e


def target_file(target: str) -> Path | None:
    """The file a ``file.py:function`` TARGET names (None for ``package.module:function``)."""
    where = target.rpartition(":")[0]
    return Path(where).expanduser() if where.endswith(".py") or "/" in where or "\\" in where else None


def load(target: str, *, debug: bool = False, objects: bool = False) -> Any:
    """The function ``target`` names (``file.py:function`` or ``package.module:function``);
    with ``objects=True`` (``trigrad infer``) also an object it names (``file.py:relu``)."""
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise TargetError(f"TARGET must be path/to/file.py:function or package.module:function, got {target!r}")
    if (file := target_file(target)) is not None:
        path = file.resolve()
        if not path.is_file():
            raise TargetError(f"no file {where!r} (TARGET {target!r}; looked at {path})")
        module_name = f"trigrad_target_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.path.insert(0, str(path.parent))  # the file's own sibling imports resolve
        try:
            sys.modules[module_name] = module
            spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as e:
            sys.modules.pop(module_name, None)
            _import_failed(where, e, debug)
        finally:
            sys.path.remove(str(path.parent))
    else:
        sys.path.insert(0, str(Path.cwd()))  # as `python -m`: modules in the current folder
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as e:
            if e.name and where.startswith(e.name):
                raise TargetError(
                    f"no module {where!r} (TARGET {target!r}): not importable from {Path.cwd()} or "
                    "the installed packages"
                ) from e
            _import_failed(where, e, debug)
        except Exception as e:
            _import_failed(where, e, debug)
        finally:
            sys.path.remove(str(Path.cwd()))
    fn = getattr(module, name, None)
    if objects and fn is not None and not callable(fn):
        return fn
    if not callable(fn):
        names = [
            k
            for k, v in vars(module).items()
            if callable(v) and not k.startswith("_") and getattr(v, "__module__", None) == module.__name__
        ]
        close = difflib.get_close_matches(name, names, n=1)
        hint = (
            f"; did you mean {close[0]!r}?" if close else (f"; it defines {', '.join(sorted(names))}" if names else "")
        )
        what = "nothing" if fn is None else f"a {type(fn).__name__}, not a function"
        raise TargetError(f"{where} has {what} named {name!r}{hint}")
    return fn


def call(fn: Callable[..., Any], *, seed: int, dtype: str | None, debug: bool = False) -> Any:
    """``fn()``, with ``seed=`` / ``dtype=`` when its signature takes them."""
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs: dict[str, Any] = {}
    if "seed" in params:
        kwargs["seed"] = seed
    if dtype is not None:
        if "dtype" not in params:
            raise TargetError(
                f"--dtype {dtype} given, but {fn.__name__}() takes no 'dtype' argument; add one "
                f"(def {fn.__name__}(dtype=np.float64): ...) to build the layer in that dtype"
            )
        kwargs["dtype"] = np.dtype(dtype)
    try:
        return fn(**kwargs)
    except Exception as e:
        if debug:
            raise
        raise TargetError(f"{fn.__name__}() raised {user_frame(e)} (rerun with --debug for the traceback)") from e


def _is_input(value: Any) -> bool:
    """An example input (an array with a batch axis), not a spec."""
    return isinstance(value, np.ndarray) and value.ndim >= 1


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, tuple):
        if len(value) == 2 and _is_input(value[1]):  # (layer or network object, example x): no spec
            return {"check": value[0], "x": value[1]}
        if not 2 <= len(value) <= 3:
            raise TargetError(
                f"the target returned a tuple of {len(value)}; expected (check, spec) or (check, spec, x)"
            )
        return dict(zip(("check", "spec", "x"), value))
    if isinstance(value, Mapping) and "check" in value:
        unknown = [k for k in value if k not in KEYS]
        if unknown:
            raise TargetError(f"the target's dict has unknown key(s) {unknown}; known: {', '.join(KEYS)}")
        return dict(value)
    return {"check": value}


def run(
    value: Any,
    *,
    seed: int = 0,
    fd_probes: int | None = None,
    tol_scale: float = 1.0,
    progress: Callable[[str, int, int], None] | None = None,
) -> Any:
    """Check what the target function returned (see the module docstring); a Report."""
    from .adapters.loss import WrappedLoss
    from .adapters.network import LossModel, WrappedNetwork
    from .results import Report
    from .spec import Loss, SpecError

    if isinstance(value, Report):
        return value
    d = _as_dict(value)
    obj, spec = d["check"], d.get("spec")
    wrap = dict(d.get("options") or {})
    if d.get("layout") is not None:
        wrap["layout"] = d["layout"]
    input_shape = tuple(d["input_shape"]) if d.get("input_shape") is not None else None
    _check_spec(obj, spec, d)
    target = _Target(obj, spec, d, wrap, input_shape)
    common: dict[str, Any] = {"seed": seed, "tol_scale": tol_scale}  # every check takes these
    if fd_probes is not None:
        common["fd_probes"] = fd_probes
    try:
        if isinstance(obj, WrappedLoss) or isinstance(spec, Loss):
            return _run_loss(target, common, progress)
        if _captioning(obj):  # draws its own features and captions: no input needed
            from .check import check_network

            return check_network(obj, spec, d.get("x"), d.get("y"), progress=progress, **common, **wrap)
        if spec is None and _raw(obj):  # no spec: check_layer / check_network infer it
            _inferable(obj, d, input_shape)
            from .inference.api import is_network

            if is_network(obj):
                return _run_network(target, common, progress)
        # a raw object with a composite spec is one composite layer; a mapping is a network
        if isinstance(obj, (WrappedNetwork, LossModel, Mapping)):
            return _run_network(target, common, progress)
        return _run_layer(target, common, progress)
    except (SpecError, TypeError, ValueError) as e:
        raise TargetError(str(e)) from e


def _captioning(obj: Any) -> bool:
    """A CS231n CaptioningRNN, wrapped (:func:`harness.wrap_captioning`) or as written."""
    from .adapters.captioning import CaptioningModel, is_captioning

    return isinstance(obj, CaptioningModel) or (_raw(obj) and is_captioning(obj))


def _raw(obj: Any) -> bool:
    """The user's own object, not wrapped by trigrad."""
    from .adapters.layer import WrappedLayer
    from .adapters.loss import WrappedLoss
    from .adapters.network import LossModel, WrappedNetwork

    return not isinstance(obj, (WrappedLayer, WrappedNetwork, LossModel, WrappedLoss))


def _inferable(obj: Any, d: Mapping[str, Any], input_shape: Any) -> None:
    """A target with no spec is inferred from its code and an example input: it must be a layer
    or network object (or a mapping / list of them) and come with ``x`` or ``input_shape``."""
    from .inference.api import inferable

    if not inferable(obj):
        raise TargetError(
            f"the target returned a {type(obj).__name__}: return a wrapped layer or network "
            "(harness.wrap_layer / wrap_functions / wrap_network), {'check': obj, 'spec': ...}, or "
            f"(layer_or_network_object, example_x) to have the spec inferred (a {type(obj).__name__} has no "
            "forward())"
        )
    if d.get("x") is None and input_shape is None:
        raise TargetError(
            f"no spec for the {type(obj).__name__}, so it is inferred from the code and an example input: "
            "return (obj, x) with x as your code takes it, or {'check': obj, 'input_shape': (N, C, H, W)} "
            "(in your code's layout)"
        )


@dataclass(frozen=True)
class _Target:
    """What the target function returned, read: the object to check, its ``spec`` (or None),
    the whole dict ``d``, the wrap keywords (``options`` and ``layout``) and the input shape
    (in the declared layout) if given."""

    obj: Any
    spec: Any
    d: Mapping[str, Any]
    wrap: dict[str, Any]
    input_shape: tuple[int, ...] | None


def _check_spec(obj: Any, spec: Any, d: Mapping[str, Any]) -> None:
    """``spec`` is a spec layer or a loss spec (or None); ``scores`` only come with a loss."""
    from .adapters.loss import WrappedLoss
    from .spec import Layer, Loss

    if spec is not None and not isinstance(spec, (Layer, Loss)):
        raise TargetError(
            f"'spec' must be a harness spec layer (harness.Conv2d(...), harness.Sequential([...])) or a "
            f"loss spec (harness.SoftmaxCrossEntropy()), got {type(spec).__name__}"
        )
    if d.get("scores") is not None and not (isinstance(obj, WrappedLoss) or isinstance(spec, Loss)):
        raise TargetError(
            "'scores' is for a loss check: return {'check': loss_fn, 'spec': SoftmaxCrossEntropy(), "
            "'scores': scores}; a layer or network takes 'x'"
        )


def _run_network(t: _Target, common: dict[str, Any], progress: Any) -> Any:
    """A network check: ``obj`` a WrappedNetwork, a LossModel or a ``{spec path: layer object}``
    mapping (with the network's ``spec``); its input is ``"x"``, ``"input_shape"`` or, failing
    both, the wrapped network's own ``input_shape``."""
    obj, spec, d, wrap, input_shape = t.obj, t.spec, t.d, t.wrap, t.input_shape
    from .check import check_network

    if d.get("x") is None and input_shape is None:
        input_shape = getattr(obj, "input_shape", None)
    if d.get("x") is None and input_shape is None:
        raise TargetError(
            "a network needs an input: return {'check': net, 'x': x} or "
            "{'check': net, 'input_shape': (N, C, H, W)} (in the declared layout: "
            "(N, H, W, C) under Layout(data='NHWC'))"
        )
    return check_network(
        obj,
        spec,
        d.get("x"),
        d.get("y"),
        loss=d.get("loss"),
        input_shape=input_shape,
        progress=progress,
        **common,
        **wrap,
    )


def _run_layer(t: _Target, common: dict[str, Any], progress: Any) -> Any:
    """A layer check: ``obj`` a WrappedLayer, or the user's raw layer object with its ``spec``
    layer (``options`` are wrap keywords), or without one (then :func:`~harness.check_layer`
    infers it and the report says so); no ``y`` or ``loss``."""
    obj, spec, d, wrap, input_shape = t.obj, t.spec, t.d, t.wrap, t.input_shape
    from .check import check_layer

    if d.get("y") is not None or d.get("loss") is not None:
        raise TargetError("'y' and 'loss' are for networks; a single layer is checked with a random upstream gradient")
    if progress:
        progress(getattr(obj, "name", None) or (spec.name if spec is not None else ""), 0, 1)
    return check_layer(obj, spec, x=d.get("x"), input_shape=input_shape, **common, **wrap)


def _run_loss(t: _Target, common: dict[str, Any], progress: Any) -> Any:
    """A loss check: ``obj`` a WrappedLoss, or the user's raw loss with a loss ``spec``
    (wrapped with ``options`` as wrap_loss keywords); scores from ``"scores"`` or ``"x"``."""
    obj, spec, d, wrap, input_shape = t.obj, t.spec, t.d, t.wrap, t.input_shape
    from .adapters.loss import WrappedLoss, wrap_loss
    from .loss_check import check_loss

    if d.get("scores") is not None and d.get("x") is not None:
        raise TargetError("the target gives both 'scores' and 'x'; a loss check takes one of them (the (N, K) scores)")
    if d.get("loss") is not None:
        raise TargetError("'loss' is for networks (the loss after them); a loss checked alone is the 'check' itself")
    if "layout" in wrap:
        raise TargetError("'layout' is for layers and networks; a loss takes (N, K) scores, the same in every layout")
    if wrap and isinstance(obj, WrappedLoss):
        raise TargetError(
            f"'options' {sorted(wrap)} are wrap_loss keywords; the loss is already wrapped: pass them to "
            "harness.wrap_loss instead"
        )
    if wrap:  # a raw loss (it has a loss spec): options are wrap_loss keywords
        obj = wrap_loss(obj, spec, **wrap)
    scores = d.get("scores") if d.get("scores") is not None else d.get("x")
    if scores is None and input_shape is None:
        raise TargetError(
            "a loss needs its scores: return {'check': loss, 'scores': scores} or "
            "{'check': loss, 'input_shape': (N, K)}"
        )
    return check_loss(
        obj,
        spec,
        scores=scores,
        y=d.get("y"),
        input_shape=input_shape,
        progress=progress,
        **common,
    )


__all__ = ["KEYS", "TargetError", "call", "load", "run", "target_file"]
