"""Whose fault is an exception met during a check: the user's code, or the configuration?

The exit code is the product: a verdict ``error`` (exit 1, "a disagreement") must mean the
user's code is wrong, and a mistake in how the check was set up must reach the caller as
the :class:`~harness.spec.SpecError` it is (``trigrad check`` exits 2 with one line).

**The rule.** An exception is the *code's fault* (reported as the layer's verdict
``error``, never raised) when

1. the user's own code raised it: it came out of a call the harness made into the user's
   code (:func:`call_user` marks it), whatever its type; or
2. the harness raised a :class:`CodeFault`: the user's code *returned* something that no
   declaration can make right — ``None``, a non-array, a complex or integer array, NaN or
   Inf, or an array whose shape fits neither the declared layout nor any other (see
   :class:`~harness.adapters.layer.ValueFinding`).

Everything else the harness raises while converting the user's arrays is a
*configuration error* and propagates unchanged: a :class:`~harness.spec.SpecError`
(``LayoutError``, ``AdapterError``, ``ArrayError``) means a declaration — a layout, a
parameter or gradient location, an option, the spec, an input shape — does not fit, and
changing the declaration alone fixes it. A returned shape that fits the spec under another
data layout is therefore a configuration error (the message names that layout), and a
returned shape no layout explains is the code's fault. Any other exception raised by the
harness itself is a bug in trigrad and propagates too, so it is never reported as the
user's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_MARK = "_trigrad_user_code"


class CodeFault(Exception):
    """Marker base: the user's code returned a value no declaration can make right. Concrete
    classes also derive from a :class:`~harness.spec.SpecError` so callers of the adapters
    alone see the same exception types as before."""


class Declared(Exception):
    """Marker base: a declaration found not to fit by trigrad's own code that runs between the
    user's calls inside one (custom autograd code's ``output=`` index against what its
    forward returned): a configuration error although it passed through :func:`call_user`."""


def call_user(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` — a call into the user's code; an exception it raises is
    marked as coming from the user's code and re-raised unchanged (type, traceback)."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:
        try:
            setattr(e, _MARK, True)
        except (AttributeError, TypeError):  # an exception type without a __dict__: wrap nothing, lose the mark
            pass
        raise


def from_user_code(exc: BaseException) -> bool:
    """Whether ``exc`` came out of a call into the user's code (see :func:`call_user`)."""
    return bool(getattr(exc, _MARK, False))


def codes_fault(exc: BaseException) -> bool:
    """The rule of this module: True when ``exc`` is the user's code's fault (a verdict
    ``error``), False when it is a configuration error or a trigrad bug (re-raise it)."""
    return (from_user_code(exc) and not isinstance(exc, Declared)) or isinstance(exc, CodeFault)


__all__ = ["CodeFault", "Declared", "call_user", "codes_fault", "from_user_code"]
