"""Findings beyond the verdict on a checked point, each confirmed before it is said: a
layout that reproduces every tensor, NaN/Inf parameters, gradients that accumulate across
backward calls, a stale cache, a conv input gradient computed with the kernel not rotated.
(Calls that are not deterministic: :mod:`harness.spread`.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .adapters.arrays import NonFinite
from .adapters.layer import WrappedLayer
from .compare import relative_with_floor
from .diagnose import accumulates
from .results import LayerResult
from .spec import Conv1d, Conv2d, ConvTranspose2d, Layer, join_path


def layout_hint(wrapped: WrappedLayer, x: np.ndarray, g: np.ndarray, result: LayerResult) -> list[str]:
    """When the forward disagrees, ask whether another declared layout would reproduce the
    reference: a layout mismatch looks exactly like a forward bug. Said only when that
    layout reproduces every compared tensor within its tolerance."""
    from .adapters.detect import detect_canonical
    from .hypotheses import reproduces_under

    if wrapped.spec is None:  # nothing to detect against (detect_canonical would raise)
        return []
    try:
        found = detect_canonical(wrapped, x.shape)  # x is canonical here
    except Exception:  # detection is a hint; a layer it cannot run under other layouts gets none
        return []
    for better in found.preferred(wrapped.layout, wrapped.spec):  # the smallest change first
        if reproduces_under(wrapped, better, x, g, result):
            return [
                f"layout: the forward matches the reference under {better} (declared: {wrapped.layout}); "
                "declare that layout"
            ]
    return []


def bad_params_message(bad: Mapping[str, NonFinite]) -> str:
    return (
        "the user's parameters hold NaN/Inf before any call: "
        + "; ".join(f"{k}: {v}" for k, v in bad.items())
        + " (user layout); likely cause: a diverged training run, an uninitialised array (np.empty) or a division "
        "by zero in the initialisation"
    )


def accumulating(first: dict[str, np.ndarray], again: dict[str, np.ndarray], dtype: Any = np.float64) -> list[str]:
    """The parameters whose gradient a second backward at the same point doubled (``first``,
    ``again``: the two calls' gradients by name). ``dtype``: what the code computes in; float32
    sums of the same terms in another order (first + g rather than 2 g) round differently, so
    the doubling is judged to a tolerance of that dtype."""
    tol = max(1e-9, 100 * float(np.finfo(np.dtype(dtype)).eps)) if np.issubdtype(dtype, np.floating) else 1e-9
    return [k for k, value in first.items() if accumulates(value, again[k], tol)]


def accumulation(
    result: LayerResult, first: dict[str, np.ndarray], again: dict[str, np.ndarray], dtype: Any = np.float64
) -> None:
    """A second backward at the same point that doubles a gradient: code that accumulates
    instead of overwriting (a failure even when the first call was right; see :func:`accumulating`)."""
    for k in accumulating(first, again, dtype):
        result.diagnosis.append(
            f"{k}: doubled on a second backward call: gradients accumulate instead of "
            "being overwritten (declare zero_grad= if the code expects a flush)"
        )
        if result.verdict == "pass":
            result.verdict = "backward"


def backward_hypotheses(
    result: LayerResult,
    tensors: list[tuple],
    forward_ok: bool,
    torch_ref: Any,
    spec: Layer,
    params: dict[str, np.ndarray],
    point: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> list[str]:
    """Hypotheses that need the reference again, at ``point`` = (earlier input, input,
    upstream gradient): a stale cache (every failing gradient is the reference's at the
    earlier input) and a conv input gradient computed with the kernel not rotated."""
    x_warm, x, g = point
    full = lambda p: {join_path(spec.name, k): v for k, v in p.items()}  # noqa: E731
    by_name = {name: user for name, _, user, *_ in tensors}
    found = []
    stale = torch_ref.vjp(full(params), x_warm, g)
    stale_values = {
        "input": stale.input_grad,
        **{k: stale.param_grads[join_path(spec.name, k)] for k in by_name if k not in ("output", "input")},
    }
    failing = [tr for tr in result.tensors if tr.side == "backward" and not tr.ok]
    if all(relative_with_floor(by_name[tr.name], stale_values[tr.name]) <= tr.tolerance for tr in failing):
        found.append(
            f"{', '.join(tr.name for tr in failing)}: the backward uses a stale cache: it matches the gradient "
            "at the input of an earlier forward call, not the latest"
        )
    dx = next((tr for tr in result.tensors if tr.name == "input"), None)  # None: input_grad=False
    if isinstance(spec, (Conv2d, Conv1d, ConvTranspose2d)) and forward_ok and dx is not None and not dx.ok:
        w = params["weight"]
        rotated = {**params, "weight": np.flip(w, axis=tuple(range(2, w.ndim)))}
        if relative_with_floor(by_name["input"], torch_ref.vjp(full(rotated), x, g).input_grad) <= dx.tolerance:
            found.append(_rotation_line(spec))
    return found


def _rotation_line(spec: Layer) -> str:
    """What an input gradient computed with the kernel rotated the wrong way means for ``spec``."""
    if isinstance(spec, ConvTranspose2d):  # its forward scatters the kernel: the backward correlates with it as is
        return (
            "input: computed with the kernel rotated 180 degrees (a transposed conv's input gradient correlates "
            "the upstream gradient with the kernel as it is, the windows its forward scattered into; "
            "this flipped it, as for a convolution)"
        )
    return (
        "input: computed with the kernel not rotated 180 degrees (the input gradient correlates the "
        "upstream gradient with the kernel rotated; this used it as is)"
    )


__all__ = ["accumulating", "accumulation", "backward_hypotheses", "bad_params_message", "layout_hint"]
