"""Hints that name the option a missing declaration needs, each said only on evidence.

A quirk of real code run without the declaration that handles it fails in its own way: the
user's exception, a gradient off by a factor. These hints look at that failure and, when
the evidence points at a declaration, name it (the acceptance of issue 13: every misuse
message names the option to use):

- every parameter gradient is the reference divided by the batch size while the input
  gradient is right: ``grad_scale='batch'`` (:func:`scale_hint`);
- the user's function was called with an argument missing (a ``TypeError`` raised by the
  call itself, not inside it): ``args=`` / ``kwargs=`` for a function pair,
  ``forward_args=`` / ``forward_kwargs=`` ... for an object — a configuration error
  (:func:`call_error`);
- the forward raised on a batch, and runs on each example alone: ``batched=False`` (with
  ``channel_axis=False`` when it runs only on ``(H, W)`` examples) (:func:`per_example_hint`).

A hint confirmed against the reference says so; one only made likely is phrased
"likely cause: ...; declare X if so". The user's model is never changed: a retry runs on a
copy of the wrapper, inside :meth:`~harness.adapters.wrapped.WrappedLayer.preserved`.
"""

from __future__ import annotations

import copy
import re
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from . import faults
from .adapters.layouts import user_data_shape
from .adapters.refs import AdapterError
from .compare import relative_with_floor
from .results import LayerResult
from .spec import Sequential, join_path


def scale_hint(wrapped: Any, result: LayerResult, tensors: list[tuple], batch: int) -> list[str]:
    """A diagnosis line when every parameter gradient is off by exactly the batch size and
    nothing else is: undeclared, divided by it (``grad_scale='batch'`` declares a mean loss
    folded into the layer); declared ``grad_scale='batch'``, not divided by it. ``tensors``:
    check's compared (name, side, user, torch, jax, reduction, floor), canonical."""
    by_name = {tr.name: tr for tr in result.tensors}
    grads = [t for t in tensors if t[1] == "backward" and t[0] != "input" and t[0] in by_name]
    declared = getattr(wrapped, "grad_scale", None)
    factor = {None: 1.0 / batch, "batch": float(batch)}.get(declared) if batch > 1 else None
    if factor is None or not grads or not all(by_name[k].ok for k in ("output", "input") if k in by_name):
        return []
    for name, _, user, ref, _, _, floor in grads:
        tr = by_name[name]
        if tr.ok or relative_with_floor(user, factor * np.asarray(ref, np.float64), floor) > tr.tolerance:
            return []
    names = ", ".join(t[0] for t in grads)
    if declared is None:
        return [
            f"{names}: every parameter gradient is the reference divided by the batch size {batch}, the input "
            "gradient is right: if your code divides by the batch size on purpose (a mean loss folded into the "
            "layer), declare grad_scale='batch'"
        ]
    return [
        f"{names}: every parameter gradient is the reference times the batch size {batch} under the declared "
        "grad_scale='batch': the code does not divide by the batch size; drop grad_scale="
    ]


# --------------------------------------------------------------------------- a call missing an argument

_MISSING = re.compile(r"missing \d+ required (positional|keyword-only) arguments?: (.+)$")
_TOO_MANY = re.compile(r"takes \d+ positional arguments? but \d+ (?:was|were) given")
_UNEXPECTED = re.compile(r"got an unexpected keyword argument '([^']+)'")


def _at_call(exc: BaseException) -> bool:
    """``exc`` was raised by the call into the user's function itself (binding its
    arguments), not by a line inside it: the innermost frame is :func:`faults.call_user`'s."""
    frames = traceback.extract_tb(exc.__traceback__)
    return (
        bool(frames)
        and frames[-1].name == "call_user"
        and Path(frames[-1].filename).resolve() == Path(faults.__file__).resolve()
    )


def _call_shape(wrapped: Any, phase: str) -> tuple[str, str, str, str, str] | None:
    """(the called function's name, how the harness calls it, its positional and keyword
    options, the parameters' option) for ``phase``; None where no option adds arguments (a
    function pair's backward)."""
    if hasattr(wrapped, "_f"):  # a function pair: forward(x, *params, *args, **kwargs)
        if phase != "forward":
            return None
        name = getattr(wrapped._f, "__name__", "forward")
        args = [f"args[{i}]" for i in range(len(getattr(wrapped, "_args", ())))]
        kwargs = [f"{k}=..." for k in getattr(wrapped, "_kwargs", {})]
        return (
            name,
            f"{name}({', '.join(['x', *wrapped._param_names(), *args, *kwargs])})",
            "args",
            "kwargs",
            "params= and ",
        )
    method = getattr(wrapped, f"_{phase}_name", None)
    if method is None or not hasattr(wrapped, "obj"):
        return None
    args = [f"{phase}_args[{i}]" for i in range(len(getattr(wrapped, f"{phase}_args", ())))]
    kwargs = [f"{k}=..." for k in getattr(wrapped, f"{phase}_kwargs", {})]
    first = "x" if phase == "forward" else "dy"
    call = f"{type(wrapped.obj).__name__}.{method}({', '.join([first, *args, *kwargs])})"
    return method, call, f"{phase}_args", f"{phase}_kwargs", ""


def call_error(wrapped: Any, exc: BaseException, phase: str) -> AdapterError | None:
    """An :class:`AdapterError` naming the option when the call into the user's ``phase``
    function failed to bind its arguments (a ``TypeError`` from the call itself: a
    ``conv_param`` not passed, a keyword it does not take); else None."""
    if not isinstance(exc, TypeError) or not faults.from_user_code(exc) or not _at_call(exc):
        return None
    shape = _call_shape(wrapped, phase)
    text = str(exc)
    # Python names the function first ("Dense.forward() missing ..."): another call of the
    # phase (a zero_grad= method before the backward) is not this one
    if shape is None or text.partition("(")[0].rpartition(".")[2] != shape[0]:
        return None
    _, call, positional, keyword, params = shape
    if missing := _MISSING.search(text):
        names = re.findall(r"'([^']+)'", missing.group(2))
        kw = "{" + ", ".join(f"{n!r}: ..." for n in names) + "}"
        it = "it" if len(names) == 1 else "them"
        fix = (
            f"pass {it} with {keyword}={kw}"
            if missing.group(1) == "keyword-only"
            else f"pass {it} with {positional}=({', '.join(names)},) or {keyword}={kw}"
        )
    elif _TOO_MANY.search(text):
        fix = f"it takes fewer positional arguments: check {params}{positional}="
    elif unexpected := _UNEXPECTED.search(text):
        fix = f"it takes no keyword '{unexpected.group(1)}': check {keyword}="
    else:
        return None
    return AdapterError(f"layer '{wrapped.name}': {text} (called as {call}); {fix}")


# --------------------------------------------------------------------------- code for one example at a time


def _retry(wrapped: Any, x: np.ndarray, options: dict[str, bool]) -> np.ndarray | None:
    """The canonical output of the user's forward on ``x`` run under ``options`` (on a copy
    of the wrapper; the parameters restored bit for bit), or None when it fails there too."""
    trial = copy.copy(wrapped)
    trial.__dict__.update(options)
    trial._init_effects()  # its own record of writes: the check's stays as it was
    trial.returned, trial.nonfinite_grads = {}, {}
    with wrapped.preserved():
        try:
            return trial.forward(x)
        except Exception:  # it does not run that way either: no hint from this retry
            return None


def _reproduces(wrapped: Any, x: np.ndarray, y: np.ndarray) -> bool:
    """``y`` is the reference's output at ``x`` with the user's parameters (within the
    tolerance layout detection uses for a forward)."""
    from reference_models import build

    from .adapters.detect import MATCH_TOL

    spec = wrapped.spec
    try:
        params = {join_path(spec.name, k): v for k, v in wrapped.get_params().items()}
        ref = build("torch", Sequential([spec])).forward(params, x).output
    except Exception:  # parameters unreadable, or a reference that cannot take x: unconfirmed
        return False
    return ref.shape == y.shape and relative_with_floor(y, ref) <= MATCH_TOL.get(wrapped.dtype, 1e-4)


def per_example_hint(wrapped: Any, exc: BaseException, x: np.ndarray) -> str:
    """After the user's forward failed on the batch ``x`` (canonical): run it on each
    example alone (``batched=False``; with ``channel_axis=False`` when a single-channel
    example is wanted as ``(H, W)``). ``"; the code takes one example at a time ...; declare
    batched=False"`` when it then reproduces the reference, a "likely cause" when it only
    runs, else ``""``."""
    if wrapped.spec is None or getattr(wrapped, "batched", None) is None:
        return ""  # a calling style without the option
    if not (faults.from_user_code(exc) or isinstance(exc, faults.CodeFault)):
        return ""
    tries = [{"batched": False}] if wrapped.batched else []
    if x.ndim == 4 and x.shape[1] == 1 and getattr(wrapped, "channel_axis", True):
        tries.append({"batched": False, "channel_axis": False})
    runs = None
    for options in tries:
        y = _retry(wrapped, x, options)
        if y is None:
            continue
        declare = ", ".join(f"{k}=False" for k in options if getattr(wrapped, k, True))
        one = user_data_shape(x.shape, wrapped.layout)[1:]
        if not options.get("channel_axis", True):
            one = tuple(n for i, n in enumerate(one) if i != (0 if wrapped.layout.data == "NCHW" else 2))
        what = {
            "batched=False": "one example at a time",
            "channel_axis=False": "its single-channel examples as (H, W), with no channel axis",
        }.get(declare, "one example at a time, as (H, W) with no channel axis")
        if _reproduces(wrapped, x, y):
            return (
                f"; the code takes {what}: run on each example alone, as {one}, it runs and reproduces the "
                f"reference; declare {declare}"
            )
        runs = runs or (
            f"; likely cause: the code takes {what} (run on each example alone, as {one}, it runs, but "
            f"its output differs from the reference); declare {declare} if so"
        )
    return runs or ""


__all__ = ["call_error", "per_example_hint", "scale_hint"]
