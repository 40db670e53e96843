"""How code for a recurrent step with two outputs is called: an LSTM step returns ``next_h``
and ``next_c`` and its backward takes both upstream gradients.

The spec's :class:`~harness.spec.LSTMCell` outputs ``(N, 2, H)`` = ``stack([next_h, next_c], 1)``;
code written the usual ways is read into that form and called back in its own:

- CS231n: ``lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b) -> (next_h, next_c, cache)`` and
  ``lstm_step_backward(dnext_h, dnext_c, cache)``;
- ``forward -> ((next_h, next_c), cache)``, an object's ``forward(x) -> (next_h, next_c)``, and a
  backward taking the pair as one argument ``backward((dnext_h, dnext_c), cache)``;
- code that stacks them itself (``(N, 2, H)``) is called as any other layer.

Whether the backward takes the two gradients as two arguments is read off its signature: two
required positional parameters before the ones the harness passes anyway (the cache, declared
``backward_args``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from ..spec import Layer, LSTMCell, _Recurrent
from .refs import AdapterError


def _is_array(value: Any) -> bool:
    return not isinstance(value, (list, tuple, dict, str)) and hasattr(value, "shape")


def paired(spec: Layer | None) -> bool:
    """Whether ``spec``'s output is a stacked pair (an LSTM step's ``(next_h, next_c)``)."""
    return isinstance(spec, LSTMCell)


def forward_result(spec: Layer | None, result: Any) -> Any:
    """A function pair's forward result as ``(out, cache)``: CS231n's ``(next_h, next_c, cache)``
    for an LSTM step becomes ``((next_h, next_c), cache)``; anything else as it is."""
    if paired(spec) and isinstance(result, tuple) and len(result) == 3 and _is_array(result[0]):
        return (result[0], result[1]), result[2]
    return result


def stacked(spec: Layer | None, y: Any) -> tuple[Any, bool]:
    """``(output, was a pair)``: an LSTM step's ``(next_h, next_c)`` stacked to ``(N, 2, H)`` in
    the arrays' own dtype; anything else as it is."""
    if not (paired(spec) and isinstance(y, (tuple, list)) and len(y) == 2 and all(map(_is_array, y))):
        return y, False
    h, c = (np.asarray(v) for v in y)
    if h.shape != c.shape:
        from .refs import ValueFinding

        raise ValueFinding(
            f"layer '{spec.name}': forward returned next_h of shape {h.shape} and next_c of shape {c.shape}; "  # type: ignore[union-attr]
            "both must be (N, H)"
        )
    return np.stack([h, c], axis=1), True


def upstream(spec: Layer | None, backward: Callable, dy: Any, pair: bool, passed: int) -> tuple[Any, ...]:
    """The upstream-gradient arguments for ``backward``: ``(dnext_h, dnext_c)`` when it takes
    them as two arguments (``passed``: how many positional arguments follow, the cache or the
    declared ``backward_args``), ``((dnext_h, dnext_c),)`` when the forward returned a pair,
    else ``(dy,)`` (views of ``dy``: a backward that writes into one writes into the upstream
    gradient, which the check reports)."""
    if not paired(spec):
        return (dy,)
    split = (dy[:, 0], dy[:, 1])
    if _required_positional(backward) >= passed + 2:
        return split
    if pair:
        return (split,)
    return (dy,)


def _required_positional(fn: Callable) -> int:
    """How many positional parameters ``fn`` requires (0 when its signature cannot be read)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 0
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


def check_state_batch(spec: Layer | None, states: dict[str, Any], x_shape: tuple[int, ...], name: str) -> None:
    """A recurrent layer's states ``(N, H)`` (``states``: the user's arrays by local name) are
    sized by the batch: an input of another batch is an :class:`AdapterError` before any call."""
    if not isinstance(spec, _Recurrent):
        return
    for local in spec.state_names():
        shape = tuple(np.shape(states[local])) if states.get(local) is not None else ()
        if len(shape) == 2 and shape[0] != x_shape[0]:
            raise AdapterError(
                f"layer '{name}': its state '{local}' has shape {shape}, a batch of {shape[0]}, but the input "
                f"{tuple(x_shape)} has N={x_shape[0]}; check the layer on an input of batch {shape[0]} "
                "(x= or input_shape=)"
            )


def state_input(spec: Layer | None, peek: Callable[[str], Any]) -> tuple[int, ...] | None:
    """A recurrent layer's input shape as its kept state tells it: ``(N, D)`` for a cell,
    ``(N, 5, D)`` for a sequence (the length of :func:`~harness.spec.example_input_shape`'s),
    ``N`` the state's batch; None for other layers or when no state is kept."""
    if not isinstance(spec, _Recurrent):
        return None
    for local in spec.state_names():
        shape = tuple(np.shape(peek(local))) if peek(local) is not None else ()
        if len(shape) == 2:
            return (shape[0], spec.input_size) if spec.step else (shape[0], 5, spec.input_size)
    return None


def refuse_time_axis(spec: Layer | None, layout: Any, name: str) -> None:
    """A one-step cell has no time axis: a declared ``sequence`` other than batch-first would
    reorder its ``(N, 2, H)`` output. An :class:`AdapterError` saying so."""
    if isinstance(spec, LSTMCell) and layout.sequence != "NTD":
        raise AdapterError(
            f"layer '{name}': an LSTMCell is one step (x (N, D), output (N, 2, H)); Layout(sequence="
            f"{layout.sequence!r}) is for whole sequences: drop it for the cell"
        )


__all__ = ["check_state_batch", "forward_result", "state_input", "paired", "refuse_time_axis", "stacked", "upstream"]
