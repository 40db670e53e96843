"""The input a sweep configuration is checked at (:mod:`harness.sweep_styles`): its shape read
in the code's declared layout (:func:`fitted_shape`: one the spec refuses rejects the
configuration) and, when the spec factory asks for ``input_scale`` / ``input_shift``, the
input itself (:func:`generated`).

The scaled input is ``shift + scale * z`` with ``z`` drawn as the check draws its own inputs
(standard normal, kept off a ReLU's kink and a max pool's ties) and moved off the kinks again
after the shift. It comes from its own stream, ``default_rng([seed, 2])``: the check, handed an
input, draws its upstream gradient from ``default_rng(seed)``, and an input from that same
stream would be the gradient's own numbers scaled (under which, e.g., a ReLU mask taken from
the gradient instead of the input cannot be told from the right one).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .spec import Layer, Loss, SpecError


def fitted_shape(point: Any, x: Any, layout: Any) -> tuple[int, ...] | None:
    """The input's shape at ``point`` (``x``'s when given; it must then agree with the
    factory's ``input_shape``), checked against a layer spec in ``layout`` (the code's
    declared one; the default when it is not a Layout, which the wrap then refuses):
    :class:`~harness.sweep_styles.Rejected` when the spec refuses it."""
    from .adapters.inputs import read_shape
    from .adapters.layouts import CANONICAL, Layout
    from .sweep_styles import Rejected, UsageError

    shape = point.input_shape
    if x is not None:
        given = tuple(np.shape(x))
        if shape is not None and given != shape:
            raise UsageError(f"the spec factory gives x of shape {given} and input_shape={shape}; pass one of them")
        shape = given
    if shape is not None and isinstance(point.spec, Layer):
        what = "x" if x is not None else "input_shape"
        try:
            read_shape(
                shape, point.spec, layout if isinstance(layout, Layout) else CANONICAL, what, is_array=x is not None
            )
        except SpecError as e:
            raise Rejected(str(e)) from None
    return shape


def generated(
    spec: Layer | Loss, shape: tuple[int, ...] | None, layout: Any, seed: int, scaling: tuple[Any, Any], dtype: Any
) -> np.ndarray | None:
    """The input ``shift + scale * z`` in the code's layout (see the module docstring); None
    for scale 1 and shift 0, where the check draws its own input as it always does."""
    from .adapters.inputs import read_shape
    from .adapters.layouts import CANONICAL, Layout, data_to_user
    from .kinks import off_kinks, random_input
    from .spec import index_layer
    from .sweep_styles import UsageError

    scale, shift = scaling
    if scale == 1 and shift == 0:
        return None
    if shape is None:
        raise UsageError("input_scale / input_shift scale the input the check draws: return 'input_shape' too")
    rng = np.random.default_rng([seed, 2])
    if isinstance(spec, Loss):  # the scores: (N, K), the same in every layout
        return shift + scale * rng.standard_normal(shape)
    if index_layer(spec) is not None:
        raise UsageError(f"input_scale / input_shift: '{spec.name}' takes integer indices, which are not scaled")
    layout = layout if isinstance(layout, Layout) else CANONICAL
    coarse = _coarse(dtype)
    x = shift + scale * random_input(spec, read_shape(shape, spec, layout), rng, coarse)
    if not spec.children():  # a shift can bring a ReLU's inputs to its kink, a pool's maxima together
        x = off_kinks(spec, x, rng, coarse)
    return data_to_user(x, layout)


def _coarse(dtype: Any) -> Any:
    """The dtype whose finite-difference step sets how far from a kink the input is kept:
    the declared one when it is coarser than float32, else float32 (a layer built in float32
    without saying so still gets its margin)."""
    from . import fd

    try:
        key = fd.key(dtype) if dtype is not None else None
    except TypeError:  # a torch or jax dtype
        key = None
    return dtype if key is not None and fd.STEP.get(key, 0.0) > fd.STEP[np.dtype(np.float32)] else np.float32


def _real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def checked_numbers(common: dict[str, Any], scaling: tuple[Any, Any]) -> None:
    """A UsageError for an option that cannot be right: ``fd_probes`` below 1, a ``tol_scale``
    that is not positive and finite, an ``input_scale`` of 0 or a non-finite scale or shift."""
    from .sweep_styles import UsageError

    probes, tol = common.get("fd_probes", 1), common.get("tol_scale", 1.0)
    if not isinstance(probes, numbers.Integral) or isinstance(probes, bool) or probes < 1:
        raise UsageError(f"fd_probes must be an integer of at least 1, got {probes!r}")
    if not _real(tol) or tol <= 0:
        raise UsageError(f"tol_scale must be positive and finite, got {tol!r}")
    scale, shift = scaling
    if not _real(scale) or scale == 0 or not _real(shift):
        raise UsageError(
            f"input_scale must be a finite non-zero number and input_shift finite, got {scale!r}, {shift!r}"
        )


__all__ = ["checked_numbers", "fitted_shape", "generated"]
