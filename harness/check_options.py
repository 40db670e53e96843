"""The options :func:`harness.check_layer`, :func:`harness.check_network` and
:func:`harness.check_loss` take beyond their own, checked before anything runs.

Each passes the keywords it does not take itself to the wrapper of raw code
(:func:`~harness.wrap_layer` and its kin, :func:`~harness.wrap_network`,
:func:`~harness.wrap_loss`, or inference, which wraps as it infers). Given with code that is
already wrapped they reach nothing: a ``layout=`` there used to be silently ignored, and the
code was checked under a convention its caller had not meant. So an option that neither a
wrapper nor the check takes is an :class:`~harness.adapters.refs.AdapterError` listing the
known ones (raw or wrapped code alike); a wrap option given with wrapped code is one saying it
belongs to the wrapping call; and a spec given with wrapped code must be the one it was
wrapped with (the same one is fine: it is what gets checked).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .adapters.refs import AdapterError

# positional places the wrappers take the code and its spec in: never options
_NOT_OPTIONS = frozenset({"obj", "fn", "user", "layers", "spec", "loss", "self"})


def _keywords(fns: Iterable[Callable[..., Any]], skip: Iterable[str] = _NOT_OPTIONS) -> set[str]:
    """The names ``fns`` take by keyword (no ``*args`` / ``**kwargs``), less ``skip`` (by
    default the places for the code and its spec): read off their signatures, so a wrapper's
    new option is known here the day it is added."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = {p.name for fn in fns for p in inspect.signature(fn).parameters.values() if p.kind in kinds}
    return names - set(skip)


def layer_wrap_options() -> set[str]:
    """Every option a raw layer can be wrapped with: :func:`~harness.wrap_layer`'s (with the
    object options of :data:`~harness.adapters.layer.OPTIONS`), :func:`~harness.wrap_functions`'
    and :func:`~harness.wrap_autograd`'s (which ``wrap_layer`` routes custom autograd code to)."""
    from .adapters.autograd import wrap_autograd
    from .adapters.layer import OPTIONS, wrap_functions, wrap_layer

    return _keywords([wrap_layer, wrap_functions, wrap_autograd]) | set(OPTIONS)


def network_wrap_options() -> set[str]:
    """Every option a raw network can be wrapped with: :func:`~harness.wrap_network`'s, and
    the layer options inference hands each layer it wraps."""
    from .adapters.network import wrap_network

    return _keywords([wrap_network], skip={*_NOT_OPTIONS, "input_shape"}) | layer_wrap_options()


def loss_wrap_options() -> set[str]:
    """Every option a raw loss can be wrapped with: :func:`~harness.wrap_loss`'s."""
    from .adapters.loss import wrap_loss

    return _keywords([wrap_loss])


def _listed(names: Iterable[str]) -> str:
    return ", ".join(f"{k}=" for k in sorted(names))


def _wrapper(wrapped: Any) -> str:
    """The call that made ``wrapped``, by its class: where its options belong."""
    from .adapters.autograd import AutogradLayer
    from .adapters.function_layer import FunctionLayer
    from .adapters.loss import WrappedLoss
    from .adapters.loss_model import LossModel
    from .adapters.network import WrappedNetwork

    for kind, call in (
        (AutogradLayer, "wrap_autograd"),
        (FunctionLayer, "wrap_functions"),
        (WrappedNetwork, "wrap_network"),
        (LossModel, "wrap_loss_model"),
        (WrappedLoss, "wrap_loss"),
    ):
        if isinstance(wrapped, kind):
            return call
    return "wrap_layer"


def refuse_options(
    check: Callable[..., Any],
    owner: str,
    given: Mapping[str, Any],
    wrap_options: set[str],
    *,
    wrapped: Any = None,
    what: str = "layer",
) -> None:
    """Refuse ``given`` (the keywords ``check`` passed on) when one is no option at all (the
    known ones listed: ``check``'s own and the wrap options for raw code) or when ``wrapped``
    (the already-wrapped code, else None) was given any (they belong to the wrapping call).
    ``owner`` starts the message (``layer 'fc'``, ``check_network``); ``what`` names the code."""
    name = check.__name__
    unknown = sorted(set(given) - wrap_options)
    if unknown:
        own = _keywords([check], skip=list(inspect.signature(check).parameters)[:1])  # all but the code itself
        raise AdapterError(  # the format of the wrappers' own refusal (harness.adapters.object_layer)
            f"{owner}: unknown option(s) {unknown} for {name}; known: {name}'s own {sorted(own)}, and for a raw "
            f"{what} the options it is wrapped with {sorted(wrap_options)}"
        )
    if wrapped is not None and given:
        one = len(given) == 1
        raise AdapterError(
            f"{owner}: {_listed(given)} {'was' if one else 'were'} given to {name} with an already-wrapped {what}, "
            f"which would ignore {'it' if one else 'them'}: pass {'it' if one else 'them'} to "
            f"{_wrapper(wrapped)}(...), the call that wrapped it"
        )


def refuse_other_spec(owner: str, spec: Any, wrapped: Any, what: str = "layer", keyword: str = "spec") -> None:
    """A ``spec`` given with already-wrapped code must be the spec it was wrapped with: the
    wrapped one is what the check runs, and a different one would be silently dropped."""
    if spec is None or _same(spec, wrapped.spec):
        return
    if wrapped.spec is None:
        raise AdapterError(
            f"{owner}: {keyword}={declaration(spec)} was given with a {what} wrapped without a spec: pass it to "
            f"{_wrapper(wrapped)}(...), the call that wrapped it"
        )
    raise AdapterError(
        f"{owner}: {keyword}={declaration(spec)} differs from the spec the {what} was wrapped with, "
        f"{declaration(wrapped.spec)}: pass one of them (the spec goes to {_wrapper(wrapped)}(...))"
    )


def declaration(spec: Any) -> str:
    """``spec`` as the call that declares it, cut short for a whole network's."""
    from .hypotheses.conventions import declaration as full

    try:
        text = full(spec)
    except Exception:  # not a dataclass spec: its repr
        text = repr(spec)
    return text if len(text) <= 120 else text[:117] + "..."


def _same(a: Any, b: Any) -> bool:
    """Specs equal as values (frozen dataclasses); False when they cannot be compared."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # a field holding an array: no single truth value
        return False


__all__ = ["layer_wrap_options", "loss_wrap_options", "network_wrap_options", "refuse_options", "refuse_other_spec"]
