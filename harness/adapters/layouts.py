"""Users' layout conventions, declared once, and exact conversions to and from the
canonical (PyTorch) layouts.

Canonical: data ``(N, C, H, W)``; conv kernel ``(O, I/groups, kh, kw)`` applied as
cross-correlation (kernel orders of every conv kind: :mod:`.kernel_layouts`); Linear weight ``(out, in)``; Flatten in C,H,W order; bias ``(C,)``.
Every conversion is a pure permutation (transpose, flip, index gather), so a round trip
reproduces the array bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from itertools import permutations
from typing import Any

import numpy as np

from ..spec import (
    ELU,
    GELU,
    BatchNorm1d,
    Dropout,
    Flatten,
    Layer,
    LayerNorm,
    LeakyReLU,
    Linear,
    ReLU,
    Sigmoid,
    Softmax,
    SpecError,
    Tanh,
    _Recurrent,
    layer_shapes,
    named_params,
    walk,
)
from . import sequences
from .kernel_layouts import KERNELED, kernel_from_user, kernel_hint, kernel_to_user, kernel_user_shape

# Layers that act on a feature vector feature by feature (or symmetrically in them): an
# HWC-ordered vector stays HWC-ordered through them; their per-feature parameters follow it.
FEATURE_WISE = (ReLU, LeakyReLU, ELU, Sigmoid, Tanh, GELU, Softmax, Dropout, BatchNorm1d, LayerNorm)

# the orders real code uses first, so hints name the likely one first
_COMMON = ("OIHW", "HWIO", "OHWI", "IOHW", "HWOI", "IHWO")
KERNEL_ORDERS = _COMMON + tuple(o for o in ("".join(p) for p in permutations("OIHW")) if o not in _COMMON)


class LayoutError(SpecError):
    """A layout declaration that is not valid, or an array that does not fit it."""


@dataclass(frozen=True)
class Layout:
    """How one user's code lays out data and parameters.

    data:    ``"NCHW"`` or ``"NHWC"`` for 4-D activations.
    kernel:  axis order of the conv weight, any permutation of ``"OIHW"`` (``"HWIO"`` for
             TensorFlow-style code, ``"OHWI"`` ...); for ConvTranspose2d and Conv1d the
             letters name the canonical weight's axes by position (:mod:`.kernel_layouts`).
    flip:    ``True`` if the user's conv is a true convolution, i.e. their stored kernel is
             the canonical one rotated by 180 degrees in (H, W).
    linear:  ``"out_in"`` (y = x W^T, PyTorch) or ``"in_out"`` (y = x W, most numpy code).
    flatten: ``"CHW"`` or ``"HWC"``: the feature order a Flatten produces (``"HWC"`` is what
             flattening NHWC data gives).
    dilation_base: the dilation value the user's code means by "no dilation": 1 (PyTorch,
             TensorFlow's rate) or 0 (code that counts the extra spacing between taps).
    sequence, gates: 3-D sequences' axis order and stacked LSTM/GRU gate blocks' (:mod:`.sequences`).
    padding_mask: ``"ignore"`` (1 marks a key to ignore, as PyTorch's) or ``"keep"`` (1: attend).
    """

    data: str = "NCHW"
    kernel: str = "OIHW"
    flip: bool = False
    linear: str = "out_in"
    flatten: str = "CHW"
    dilation_base: int = 1
    sequence: str = "NTD"
    gates: str = ""
    padding_mask: str = "ignore"

    def __post_init__(self) -> None:
        sequences.check(self.sequence, self.gates)
        if self.dilation_base not in (0, 1) or isinstance(self.dilation_base, bool):
            raise LayoutError(
                f"layout: dilation_base must be 1 (PyTorch) or 0 (extra spacing), got {self.dilation_base!r}"
            )
        if self.data not in ("NCHW", "NHWC"):
            raise LayoutError(f"layout: data must be 'NCHW' or 'NHWC', got {self.data!r}")
        if self.kernel not in KERNEL_ORDERS:
            raise LayoutError(f"layout: kernel must be a permutation of 'OIHW' such as 'HWIO', got {self.kernel!r}")
        if self.linear not in ("out_in", "in_out"):
            raise LayoutError(f"layout: linear must be 'out_in' or 'in_out', got {self.linear!r}")
        if self.flatten not in ("CHW", "HWC"):
            raise LayoutError(f"layout: flatten must be 'CHW' or 'HWC', got {self.flatten!r}")
        if not isinstance(self.flip, bool):
            raise LayoutError(f"layout: flip must be True or False, got {self.flip!r}")
        if self.padding_mask not in ("ignore", "keep"):
            raise LayoutError(f"layout: padding_mask must be 'ignore' or 'keep', got {self.padding_mask!r}")

    def __str__(self) -> str:  # the fields that differ from their defaults, in declaration order
        changed = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if getattr(self, f.name) != f.default]
        return f"Layout({', '.join(changed)})"

    def spec_dilation(self, user_value: int | tuple[int, int]) -> int | tuple[int, int]:
        """The spec's (PyTorch's) dilation for the value the user's code is configured with."""
        shift = 1 - self.dilation_base
        return tuple(v + shift for v in user_value) if isinstance(user_value, tuple) else user_value + shift  # type: ignore[return-value]

    def user_dilation(self, spec_value: int | tuple[int, int]) -> int | tuple[int, int]:
        """The value to configure the user's code with for the spec's dilation."""
        shift = 1 - self.dilation_base
        return tuple(v - shift for v in spec_value) if isinstance(spec_value, tuple) else spec_value - shift  # type: ignore[return-value]


CANONICAL = Layout()


# --------------------------------------------------------------------------- activations


def _feature_order(chw: tuple[int, int, int]) -> np.ndarray:
    """``idx`` with ``hwc_vector = chw_vector[..., idx]`` for features flattened from (C, H, W)."""
    return np.arange(int(np.prod(chw))).reshape(chw).transpose(1, 2, 0).ravel()


def data_to_user(x: np.ndarray, layout: Layout, features_from: tuple[int, int, int] | None = None) -> np.ndarray:
    """Canonical activation -> the user's layout. 4-D arrays follow ``layout.data``; 2-D
    feature vectors flattened from ``features_from`` = (C, H, W) follow ``layout.flatten``."""
    if x.ndim == 4 and layout.data == "NHWC":
        return x.transpose(0, 2, 3, 1)
    if x.ndim == 2 and features_from is not None and layout.flatten == "HWC":
        return x[:, _feature_order(features_from)]
    return sequences.to_user(x, layout.sequence)  # 3-D: a sequence's axis order; else x as it is


def data_from_user(x: np.ndarray, layout: Layout, features_from: tuple[int, int, int] | None = None) -> np.ndarray:
    """The user's activation -> canonical; the exact inverse of :func:`data_to_user`."""
    if x.ndim == 4 and layout.data == "NHWC":
        return x.transpose(0, 3, 1, 2)
    if x.ndim == 2 and features_from is not None and layout.flatten == "HWC":
        return x[:, np.argsort(_feature_order(features_from))]
    return sequences.from_user(x, layout.sequence)


def user_data_shape(shape: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    """The shape a canonical activation of ``shape`` has in the user's layout."""
    if len(shape) == 4 and layout.data == "NHWC":
        return (shape[0], shape[2], shape[3], shape[1])
    return sequences.user_shape(tuple(shape), layout.sequence)


# --------------------------------------------------------------------------- parameters


def _hwc_features(
    layer: Layer, local: str, features_from: tuple[int, int, int] | None, layout: Layout, value: np.ndarray
) -> np.ndarray | None:
    """The HWC feature order if this parameter's last axis is a flattened (C, H, W) feature
    axis under an HWC flatten: a Linear's weight columns, or the per-feature parameters of a
    feature-wise layer (batch norm, layer norm, a dropout mask). A Linear's bias is not."""
    if features_from is None or layout.flatten != "HWC" or value.ndim == 0:
        return None
    if isinstance(layer, Linear) and local != "weight":
        return None
    if not isinstance(layer, (Linear, *FEATURE_WISE)) or value.shape[-1] != int(np.prod(features_from)):
        return None
    return _feature_order(features_from)


def param_from_user(
    layer: Layer,
    local: str,
    value: np.ndarray,
    layout: Layout,
    expected: tuple[int, ...],
    features_from: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """A parameter in the user's layout -> canonical ``expected`` shape.

    Conv weights are transposed from ``layout.kernel`` (and un-flipped); Linear weights
    transposed if ``in_out``; a dropout mask (the input's shape) follows ``layout.data``; after
    an HWC flatten from ``features_from`` = (C, H, W), the feature axis of a Linear's weight and
    of feature-wise layers' parameters is reordered. Extra unit axes are accepted where the
    squeeze is unambiguous: a bias ``(F, 1)`` or ``(1, C, 1, 1)``, a per-activation ``gamma``
    ``(1, C*H*W)``, a conv weight missing its unit axes (put back in the declared kernel order
    before it is transposed). Raises :class:`LayoutError` with a hint when it cannot fit.
    """
    if isinstance(layer, _Recurrent):  # weights (G*H, in) with gate blocks, states (N, H)
        return sequences.param_from_user(layer, local, value, layout, expected)
    v = _unit_axes(layer, local, value, layout, expected)
    if (kernel := kernel_from_user(layer, local, v, layout)) is not None:  # Conv2d, ConvTranspose2d, Conv1d
        v = kernel
    elif isinstance(layer, Linear) and local == "weight" and v.ndim == 2 and layout.linear == "in_out":
        v = v.T
    elif isinstance(layer, Dropout) and local == "mask" and v.ndim == 4 and len(expected) == 4:
        v = data_from_user(v, layout)  # the mask has the input's shape, in the user's data layout
    elif (order := _feature_param_order(layer, local, v, expected, layout)) is not None:
        # batch norm over flattened features: (C*H*W,) in the user's data order (C, H, W for
        # NCHW code, H, W, C for NHWC code), or (H, W, C) as NHWC code broadcasts it
        c, h, w = expected
        v = v.reshape(c, h, w) if order == "chw" else v.reshape(h, w, c).transpose(2, 0, 1)
    if v.shape != tuple(expected):
        if v.size == int(np.prod(expected)) and _squeezed(v.shape) == _squeezed(expected):
            v = v.reshape(expected)  # singleton axes only: (1, C, 1, 1) bias and the like
        else:
            raise LayoutError(
                f"layer '{layer.name}': parameter '{local}' has shape {tuple(value.shape)} in the declared "
                f"{layout}; expected {_user_shape(layer, local, expected, layout)} there"
                f"{shape_hint(layer, local, tuple(value.shape), expected, layout)}"
            )
    hwc = _hwc_features(layer, local, features_from, layout, v)
    if hwc is not None:
        v = v[..., np.argsort(hwc)]
    return np.ascontiguousarray(v)


def param_to_user(
    layer: Layer,
    local: str,
    value: np.ndarray,
    layout: Layout,
    user_shape: tuple[int, ...],
    features_from: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """A canonical parameter -> the user's layout and ``user_shape`` (the shape the user's
    array has, unit axes included); the exact inverse of :func:`param_from_user`."""
    if isinstance(layer, _Recurrent):
        return sequences.param_to_user(layer, local, value, layout, user_shape)
    v = value
    order = _hwc_features(layer, local, features_from, layout, v)
    if order is not None:
        v = v[..., order]
    if (kernel := kernel_to_user(layer, local, v, layout)) is not None:
        v = kernel
    elif isinstance(layer, Linear) and local == "weight" and v.ndim == 2 and layout.linear == "in_out":
        v = v.T
    elif isinstance(layer, Dropout) and local == "mask" and v.ndim == 4 and len(user_shape) == 4:
        v = data_to_user(v, layout)
    elif v.ndim == 3 and _feature_param_order(layer, local, np.empty(user_shape), v.shape, layout) == "hwc":
        v = v.transpose(1, 2, 0)
    if v.shape != tuple(user_shape):
        v = v.reshape(user_shape)  # unit axes, or a flat per-feature parameter, in the order reached above
    return np.ascontiguousarray(v)


def _unit_axes(layer: Layer, local: str, value: np.ndarray, layout: Layout, expected: tuple[int, ...]) -> np.ndarray:
    """A conv or Linear weight stored without (or with extra) unit axes, reshaped to its full
    shape in the declared order, so the transpose that follows moves the right axes."""
    if not (local == "weight" and isinstance(layer, (*KERNELED, Linear))):
        return value
    full = _user_shape(layer, local, tuple(expected), layout)
    if value.shape != full and value.size == int(np.prod(full)) and _squeezed(value.shape) == _squeezed(full):
        return value.reshape(full)
    return value


def _feature_param_order(
    layer: Layer, local: str, value: np.ndarray, expected: tuple[int, ...], layout: Layout
) -> str | None:
    """How a per-feature batch-norm parameter (``over="feature"``, canonical (C, H, W)) is
    stored: ``"chw"`` or ``"hwc"`` when it must be reshaped from flat (unit axes allowed) or
    from NHWC code's (H, W, C) (a leading unit axis allowed); None when it is (C, H, W) up to
    unit axes already. :class:`LayoutError` when two readings fit and disagree."""
    from ..spec import BatchNorm2d

    if not (
        isinstance(layer, BatchNorm2d)
        and layer.over == "feature"
        and len(expected) == 3
        and value.size == int(np.prod(expected))
        and local in ("weight", "bias", "running_mean", "running_var")
    ):
        return None
    c, h, w = expected
    found = _squeezed(value.shape)
    if len(found) <= 1 and len(_squeezed(expected)) > 1:
        return "chw" if layout.data == "NCHW" else "hwc"  # flat, in the user's data order
    if layout.data == "NCHW":
        return None
    if value.shape in ((h, w, c), (1, h, w, c)):
        return "hwc"  # NHWC code's own order, as it broadcasts against (N, H, W, C)
    hwc, chw = found == _squeezed((h, w, c)), found == _squeezed((c, h, w))
    if hwc and chw and c > 1 and h * w > 1:  # both readings fit once the unit axes are gone, and they differ
        raise LayoutError(
            f"layer '{layer.name}': parameter '{local}' has shape {tuple(value.shape)}, which under the declared "
            f"{layout} reads both as (H, W, C) = {(h, w, c)} and as (C, H, W) = {(c, h, w)} once its unit axes are "
            f"dropped; keep it as (H, W, C), (1, H, W, C) or flat (C*H*W values in NHWC order) so the order is known"
        )
    return "hwc" if hwc else None


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)


def _user_shape(layer: Layer, local: str, expected: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    if (kernel := kernel_user_shape(layer, local, expected, layout.kernel)) is not None:
        return kernel
    if isinstance(layer, Linear) and local == "weight" and layout.linear == "in_out":
        return tuple(expected[::-1])
    return tuple(expected)


def shape_hint(layer: Layer, local: str, found: tuple[int, ...], expected: tuple[int, ...], layout: Layout) -> str:
    """``"; looks like ...: pass layout=..."`` when ``found`` fits another declaration, else ``""``."""
    if hint := kernel_hint(layer, local, found, expected, layout):
        return hint
    if isinstance(layer, Linear) and local == "weight" and found == tuple(expected[::-1]) and found != tuple(expected):
        other = "in_out" if layout.linear == "out_in" else "out_in"
        return f"; looks transposed: pass Layout(linear={other!r})"
    if isinstance(layer, Dropout) and local == "mask":
        return (
            "; a dropout mask has the input's shape: one kept at construction fixes it, so check the layer on an "
            "input of that shape (x= or input_shape=), or let its forward draw the mask"
        )
    return ""


def feature_orders(
    spec: Layer, input_shape: tuple[int, ...]
) -> tuple[dict[str, tuple[int, int, int]], tuple[int, int, int] | None]:
    """Where flattened features flow: ``{leaf path: (C, H, W)}`` for every leaf whose 2-D
    input is a feature vector flattened from a 4-D activation (the feature-wise layers it
    passes through and the Linear that consumes it), and the (C, H, W) of the network's
    output when that is such a vector itself. Under an HWC flatten these are the places
    whose feature order (and per-feature parameters) differ from the canonical C, H, W."""
    shapes = layer_shapes(spec, input_shape)
    out: dict[str, tuple[int, int, int]] = {}
    pending: tuple[int, int, int] | None = None
    for path, layer in walk(spec):
        if layer.children():
            continue
        x_shape = shapes[path][0]
        if pending is not None and len(x_shape) == 2:
            out[path] = pending
        if isinstance(layer, Flatten):
            pending = tuple(x_shape[1:]) if len(x_shape) == 4 else None  # type: ignore[assignment]
        elif not isinstance(layer, FEATURE_WISE):
            pending = None
    return out, pending


def flattened_inputs(spec: Layer, input_shape: tuple[int, ...]) -> dict[str, tuple[int, int, int]]:
    """``{path of a Linear: (C, H, W)}``: the Linears fed by a flattened 4-D activation,
    whose weight columns an HWC flatten reorders."""
    layers = dict(walk(spec))
    return {p: chw for p, chw in feature_orders(spec, input_shape)[0].items() if isinstance(layers[p], Linear)}


def spec_converter(spec: Layer, input_shape: tuple[int, ...], layout: Layout):
    """``convert(canonical_name, user_array) -> canonical array`` for a whole network
    declared in one ``layout`` (what :func:`harness.load_weights` takes as ``layout=``)."""
    layers = dict(walk(spec))
    expected = named_params(spec, input_shape)
    features = feature_orders(spec, input_shape)[0]

    def convert(name: str, value: np.ndarray) -> np.ndarray:
        path, _, local = name.rpartition(".")
        return param_from_user(layers[path], local, value, layout, expected[name].shape, features.get(path))

    return convert


def convert_params_from_user(
    layer: Layer, values: dict[str, np.ndarray], layout: Layout, expected: dict[str, tuple[int, ...]], **kw: Any
) -> dict[str, np.ndarray]:
    """:func:`param_from_user` for every local parameter of ``layer``."""
    return {k: param_from_user(layer, k, v, layout, expected[k], **kw) for k, v in values.items()}


__all__ = [
    "CANONICAL",
    "KERNEL_ORDERS",
    "Layout",
    "LayoutError",
    "convert_params_from_user",
    "data_from_user",
    "data_to_user",
    "FEATURE_WISE",
    "feature_orders",
    "flattened_inputs",
    "param_from_user",
    "spec_converter",
    "param_to_user",
    "shape_hint",
    "user_data_shape",
]
