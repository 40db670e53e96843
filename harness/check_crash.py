"""When one layer's check meets the user's code failing: the verdict ``error``, on the side
whose code ran, with the user's frame, where in the check it happened, and the hints that
name the likely fix; a forward that ran before its backward crashed is still compared.

The rule of :mod:`harness.faults` decides: the code's faults become the verdict, a
configuration error (a wrong layout, parameter name or argument) is re-raised as the
:class:`~harness.spec.SpecError` it is. The check itself: :mod:`harness.check`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .adapters.effects import apply_effects
from .adapters.feed import fault_hint
from .adapters.layer import WrappedLayer
from .adapters.layouts import CANONICAL, user_data_shape
from .adapters.options import call_hint
from .adapters.wrapped import ONE_EXAMPLE_GUESS
from .compare import relative_with_floor
from .faults import CodeFault, codes_fault
from .frames import user_frame
from .hints import call_error, per_example_hint
from .judge import Compared, _hints, _judge
from .results import LayerResult
from .spec import Sequential, join_path


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


def _crashed(
    result: LayerResult,
    wrapped: WrappedLayer,
    exc: Exception,
    point: tuple[np.ndarray, np.ndarray],
    seen: dict[str, Any],
    refs: Any,
    tol_scale: float,
) -> LayerResult:
    """The verdict ``error`` for ``exc`` met in the check's first calls (the warm-up forward,
    the forward and backward at the point, the forward again), on the side that ran it
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
