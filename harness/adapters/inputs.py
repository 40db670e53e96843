"""The user's inputs read in the user's declared layout: one rule for every input array and
input shape trigrad is given.

**The rule.** An input ``x`` or ``input_shape`` given to :func:`harness.check_layer`,
:func:`harness.check_network`, :func:`harness.wrap_network`, :func:`harness.wrap_loss_model`,
:func:`harness.record_snapshot`, :func:`harness.check_equivalent`, :func:`harness.sweep`'s
spec factory or the dict a ``trigrad check`` target returns (its ``x`` / ``input_shape``)
is in the layout the code was declared with: a 4-D input follows
``layout.data`` (``Layout(data="NHWC")``: ``(N, H, W, C)``; the default: ``(N, C, H, W)``);
a 3-D sequence follows ``layout.sequence`` (``"TND"``: time first; the default ``(N, T, D)``);
2-D inputs ``(N, D)`` and any other rank are taken as they are. For a single layer the
layout is the wrapped layer's, for a network the network's. :func:`harness.detect_layout`
reads its ``input_shape`` in each candidate layout's own data order. Internally everything
is canonical NCHW; snapshot files keep storing the canonical input, as they always have.

An input that does not fit the spec read that way is an :class:`AdapterError` that says in
which layout it was read and how to fix it, e.g. ``x has shape (2, 3, 6, 6), read as NHWC
(N, H, W, C) as declared by layout=Layout(data='NHWC'): 6 channels, but 'conv1' expects 3;
pass x in NHWC (x.transpose(0, 2, 3, 1)), or, if the code takes NCHW data, declare
layout=Layout() (data='NCHW', the default)``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..spec import BatchNorm2d, Conv2d, Layer, SpecError, index_layer, walk
from ..spec import read_input as read_spec_input
from . import sequences
from .layouts import Layout, data_from_user
from .refs import AdapterError

AXES = {"NCHW": "(N, C, H, W)", "NHWC": "(N, H, W, C)"}


def canonical_shape(shape: tuple[int, ...], data: str) -> tuple[int, ...]:
    """``shape`` given in the data order ``data`` (``"NCHW"`` / ``"NHWC"``) -> canonical
    NCHW; only 4-D shapes are reordered."""
    shape = tuple(shape)
    if len(shape) == 4 and data == "NHWC":
        return (shape[0], shape[3], shape[1], shape[2])
    return shape


def user_shape(shape: tuple[int, ...], data: str) -> tuple[int, ...]:
    """The inverse of :func:`canonical_shape`: a canonical shape in the data order ``data``."""
    shape = tuple(shape)
    if len(shape) == 4 and data == "NHWC":
        return (shape[0], shape[2], shape[3], shape[1])
    return shape


def as_shape(shape: Any, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise AdapterError(f"{what} must be a tuple of ints such as (2, 3, 8, 8), got {shape!r}") from None


def refusal(spec: Layer, canonical: tuple[int, ...]) -> str | None:
    """Why ``spec`` refuses an input of canonical ``canonical`` shape, in words that do not
    depend on the data order (``"6 channels, but 'conv1' expects 3"``), or None if it fits."""
    try:
        spec.output_shape(canonical)
        return None
    except SpecError as e:
        first = next((layer for _, layer in walk(spec) if not layer.children()), spec)
        channels = (
            getattr(first, "in_channels", None)
            if isinstance(first, Conv2d)
            else (first.num_features if isinstance(first, BatchNorm2d) else None)
        )
        if channels is not None and len(canonical) == 4 and canonical[1] != channels:
            return f"{canonical[1]} channels, but '{first.name}' expects {channels}"
        return f"the spec refuses it ({e})"


def _reading(layout: Layout) -> str:
    if layout.sequence != "NTD":  # a 3-D sequence
        return f"read as {layout.sequence} as declared by layout={layout} (4-D data as {layout.data})"
    if layout.data == "NHWC":
        return f"read as NHWC {AXES['NHWC']} as declared by layout={layout}"
    return f"read as NCHW {AXES['NCHW']}, the default data order (no Layout(data='NHWC') declared)"


def _fix(spec: Layer, shape: tuple[int, ...], layout: Layout, what: str, is_array: bool) -> str:
    """How to pass the input so that it fits: transposed to the declared order, or the other
    order declared, when the input fits read the other way; else the shape expected."""
    other = "NCHW" if layout.data == "NHWC" else "NHWC"
    if len(shape) == 4 and refusal(spec, canonical_shape(shape, other)) is None:
        moved = user_shape(canonical_shape(shape, other), layout.data)
        perm = "(0, 2, 3, 1)" if layout.data == "NHWC" else "(0, 3, 1, 2)"
        given = f" ({what}.transpose{perm})" if is_array else f": {moved}"
        default = " (data='NCHW', the default)" if other == "NCHW" else ""
        return (
            f"; pass {what} in {layout.data}{given}, or, if the code takes {other} data, declare "
            f"layout={replace(layout, data=other)}{default}"
        )
    first = next((layer for _, layer in walk(spec) if not layer.children()), spec)
    channels = getattr(first, "in_channels", None) if isinstance(first, Conv2d) else None
    if len(shape) == 4 and channels is not None:
        return f"; expected {AXES[layout.data].replace('C', str(channels))} in the declared {layout.data}"
    return ""


def read_shape(
    shape: Any, spec: Layer | None, layout: Layout, what: str = "input_shape", *, is_array: bool = False
) -> tuple[int, ...]:
    """The canonical shape of an input given as ``shape`` in ``layout.data`` (see the module
    docstring). With a ``spec``: an :class:`AdapterError` naming the reading and the fix
    when the input does not fit it. ``what``: the argument's name in the message."""
    shape = as_shape(shape, what)
    if spec is not None and index_layer(spec) is not None:  # integer indices: (T, N) when time-first
        canonical = sequences.indices_shape(shape, layout.sequence)
    else:
        canonical = sequences.canonical_shape(canonical_shape(shape, layout.data), layout.sequence)
    if spec is None:
        return canonical
    why = refusal(spec, canonical)
    if why is not None:
        label = f"{what} has shape {shape}" if is_array else f"{what} {shape}"
        raise AdapterError(f"{label}, {_reading(layout)}: {why}{_fix(spec, shape, layout, what, is_array)}")
    return canonical


def read_input(x: Any, spec: Layer | None, layout: Layout, what: str = "x") -> np.ndarray:
    """``x`` given in ``layout.data`` -> a canonical (NCHW) float64 array; refused as
    :func:`read_shape` refuses its shape. For a spec that takes integer indices (an Embedding
    first): int64 indices (no data layout applies; 2-D ones are ``(T, N)`` under
    ``Layout(sequence="TND")``), a float or out-of-range one a
    :class:`~harness.spec.SpecError` (:func:`harness.spec.read_input`)."""
    if spec is not None and index_layer(spec) is not None:  # no data layout; time-first (T, N) under "TND"
        read_shape(np.shape(x), spec, layout, what, is_array=True)
        return np.ascontiguousarray(read_spec_input(spec, sequences.indices_from_user(np.asarray(x), layout.sequence)))
    x = np.asarray(x, dtype=np.float64)
    read_shape(x.shape, spec, layout, what, is_array=True)
    moved = (x.ndim == 4 and layout.data == "NHWC") or (x.ndim == 3 and layout.sequence != "NTD")
    return np.ascontiguousarray(data_from_user(x, layout)) if moved else x


__all__ = ["AXES", "as_shape", "canonical_shape", "read_input", "read_shape", "refusal", "user_shape"]
