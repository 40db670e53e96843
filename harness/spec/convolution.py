"""The convolution family: :class:`Conv2d`, a 2-D cross-correlation over NCHW data, with its
padding rules (explicit, ``"valid"``, TensorFlow's ``"same"``) and parameter shapes;
:class:`Conv1d` over ``(N, C, L)`` with the same rules; :class:`ConvTranspose2d`, the
gradient of a Conv2d with respect to its input (PyTorch's weight ``(in, out/groups, kh, kw)``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .base import Layer, Pads, ParamInfo, Shape, SpecError, _check_name, _expect_rank, _padding, _pair, _window_out


@dataclass(frozen=True)
class Conv2d(Layer):
    """2-D cross-correlation. Input ``(N, C_in, H, W)`` -> ``(N, C_out, H', W')``.

    weight ``(C_out, C_in/groups, kh, kw)``, bias ``(C_out,)``.
    ``padding``: int, ``(ph, pw)``, explicit ``((top, bottom), (left, right))``, ``"valid"``
    (no padding) or ``"same"`` (TensorFlow's rule: output size ``ceil(H/stride)``, the odd
    pixel of padding at the bottom/right; for stride 1 this is PyTorch's ``"same"``).
    """

    kind: ClassVar[str] = "Conv2d"
    name: str
    in_channels: int
    out_channels: int
    kernel_size: Any
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    bias: bool = True

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")
        n = self.name
        _positive_ints(self, ("in_channels", "out_channels", "groups"))
        object.__setattr__(self, "kernel_size", _pair(self.kernel_size, "kernel_size", n, 1))
        object.__setattr__(self, "stride", _pair(self.stride, "stride", n, 1))
        object.__setattr__(self, "dilation", _pair(self.dilation, "dilation", n, 1))
        object.__setattr__(self, "padding", _padding(self.padding, n))
        _groups_divide(self)

    def pads(self, hw: tuple[int, int]) -> Pads:
        """Explicit ``((top, bottom), (left, right))`` padding for an input of spatial size ``hw``."""
        if self.padding == "valid":
            return ((0, 0), (0, 0))
        if self.padding == "same":
            out = []
            for size, k, s, d in zip(hw, self.kernel_size, self.stride, self.dilation):
                total = max((math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size, 0)
                out.append((total // 2, total - total // 2))
            return (out[0], out[1])
        return self.padding

    def _infer(self, shape: Shape, path: str) -> Shape:
        _expect_rank(shape, (4,), "(N, C, H, W)", path)
        if shape[1] != self.in_channels:
            raise SpecError(
                f"layer '{path}': in_channels={self.in_channels} but the input has {shape[1]} "
                f"channels (input shape {shape}, NCHW)"
            )
        pads = self.pads((shape[2], shape[3]))
        hw = []
        for axis, size, (lo, hi), k, s, d in zip("HW", shape[2:], pads, self.kernel_size, self.stride, self.dilation):
            o = _window_out(size, lo, hi, k, s, d)
            if o < 1:
                raise SpecError(
                    f"layer '{path}': input {axis}={size} with padding ({lo}, {hi}) is smaller than "
                    f"the dilated kernel {d * (k - 1) + 1}"
                )
            hw.append(o)
        return (shape[0], self.out_channels, hw[0], hw[1])

    def local_params(self, input_shape: Shape) -> dict[str, ParamInfo]:
        p = {"weight": ParamInfo((self.out_channels, self.in_channels // self.groups, *self.kernel_size))}
        if self.bias:
            p["bias"] = ParamInfo((self.out_channels,))
        return p


def _positive_ints(layer: Layer, names: tuple[str, ...]) -> None:
    for attr in names:
        v = getattr(layer, attr)
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise SpecError(f"layer '{layer.name}': {attr} must be a positive int, got {v!r}")


def _groups_divide(layer: Any) -> None:
    if layer.in_channels % layer.groups or layer.out_channels % layer.groups:
        raise SpecError(
            f"layer '{layer.name}': groups={layer.groups} must divide in_channels={layer.in_channels} "
            f"and out_channels={layer.out_channels}"
        )


def _single(value: Any, what: str, layer: str, minimum: int) -> int:
    """An int, or a 1-tuple of one (PyTorch's Conv1d accepts both), as an int."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise SpecError(f"layer '{layer}': {what} must be an int (or a 1-tuple of one), got {value!r}")
    if value < minimum:
        raise SpecError(f"layer '{layer}': {what} must be >= {minimum}, got {value!r}")
    return int(value)


def _padding1d(value: Any, layer: str) -> tuple[int, int] | str:
    """A Conv1d padding as ``(left, right)`` or 'same' / 'valid'; an int pads both ends."""
    if isinstance(value, str):
        if value not in ("same", "valid"):
            raise SpecError(f"layer '{layer}': padding string must be 'same' or 'valid', got {value!r}")
        return value
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    return _pair(value, "padding (left, right)", layer, 0)


@dataclass(frozen=True)
class Conv1d(Layer):
    """1-D cross-correlation. Input ``(N, C_in, L)`` -> ``(N, C_out, L')``.

    weight ``(C_out, C_in/groups, k)``, bias ``(C_out,)``. ``kernel_size``, ``stride``,
    ``dilation``: ints (1-tuples accepted). ``padding``: int (both ends), ``(left, right)``,
    ``"valid"`` or ``"same"`` (as :class:`Conv2d`: output length ``ceil(L/stride)``, the odd
    pixel on the right; PyTorch's ``"same"`` for stride 1).
    """

    kind: ClassVar[str] = "Conv1d"
    name: str
    in_channels: int
    out_channels: int
    kernel_size: Any
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    bias: bool = True

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")
        n = self.name
        _positive_ints(self, ("in_channels", "out_channels", "groups"))
        for attr in ("kernel_size", "stride", "dilation"):
            object.__setattr__(self, attr, _single(getattr(self, attr), attr, n, 1))
        object.__setattr__(self, "padding", _padding1d(self.padding, n))
        _groups_divide(self)

    def pads(self, length: int) -> tuple[int, int]:
        """Explicit ``(left, right)`` padding for an input of ``length``."""
        if self.padding == "valid":
            return (0, 0)
        if self.padding == "same":
            k, s, d = self.kernel_size, self.stride, self.dilation
            total = max((math.ceil(length / s) - 1) * s + d * (k - 1) + 1 - length, 0)
            return (total // 2, total - total // 2)
        return self.padding

    def _infer(self, shape: Shape, path: str) -> Shape:
        _expect_rank(shape, (3,), "(N, C, L)", path)
        if shape[1] != self.in_channels:
            raise SpecError(
                f"layer '{path}': in_channels={self.in_channels} but the input has {shape[1]} "
                f"channels (input shape {shape}, NCL)"
            )
        lo, hi = self.pads(shape[2])
        out = _window_out(shape[2], lo, hi, self.kernel_size, self.stride, self.dilation)
        if out < 1:
            raise SpecError(
                f"layer '{path}': input L={shape[2]} with padding ({lo}, {hi}) is smaller than "
                f"the dilated kernel {self.dilation * (self.kernel_size - 1) + 1}"
            )
        return (shape[0], self.out_channels, out)

    def local_params(self, input_shape: Shape) -> dict[str, ParamInfo]:
        p = {"weight": ParamInfo((self.out_channels, self.in_channels // self.groups, self.kernel_size))}
        if self.bias:
            p["bias"] = ParamInfo((self.out_channels,))
        return p


@dataclass(frozen=True)
class ConvTranspose2d(Layer):
    """Transposed 2-D convolution (PyTorch's): ``(N, C_in, H, W)`` -> ``(N, C_out, H', W')``,
    ``H' = (H - 1)*stride - 2*padding + dilation*(kh - 1) + output_padding + 1``.

    Every input pixel adds its value times the kernel into the output at ``(i*stride, j*stride)``
    (taps ``dilation`` apart), then ``padding`` rows/columns are cut from each side and
    ``output_padding`` extra rows/columns kept at the bottom/right. weight
    ``(C_in, C_out/groups, kh, kw)`` (PyTorch's order: in before out), bias ``(C_out,)``.
    ``padding``, ``output_padding``: an int or a pair ``(ph, pw)`` (symmetric, as PyTorch);
    ``output_padding`` must be smaller than the stride or the dilation on its axis.
    """

    kind: ClassVar[str] = "ConvTranspose2d"
    name: str
    in_channels: int
    out_channels: int
    kernel_size: Any
    stride: Any = 1
    padding: Any = 0
    output_padding: Any = 0
    groups: int = 1
    dilation: Any = 1
    bias: bool = True

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")
        n = self.name
        _positive_ints(self, ("in_channels", "out_channels", "groups"))
        object.__setattr__(self, "kernel_size", _pair(self.kernel_size, "kernel_size", n, 1))
        object.__setattr__(self, "stride", _pair(self.stride, "stride", n, 1))
        object.__setattr__(self, "dilation", _pair(self.dilation, "dilation", n, 1))
        object.__setattr__(self, "padding", _pair(self.padding, "padding", n, 0))
        object.__setattr__(self, "output_padding", _pair(self.output_padding, "output_padding", n, 0))
        for axis, op, s, d in zip("HW", self.output_padding, self.stride, self.dilation):
            if op >= max(s, d):
                raise SpecError(
                    f"layer '{n}': output_padding {op} on {axis} must be smaller than the stride {s} or the "
                    f"dilation {d} (PyTorch's rule: a larger one adds rows no input pixel reaches)"
                )
        _groups_divide(self)

    def _infer(self, shape: Shape, path: str) -> Shape:
        _expect_rank(shape, (4,), "(N, C, H, W)", path)
        if shape[1] != self.in_channels:
            raise SpecError(
                f"layer '{path}': in_channels={self.in_channels} but the input has {shape[1]} "
                f"channels (input shape {shape}, NCHW)"
            )
        hw = []
        for axis, size, k, s, p, op, d in zip(
            "HW", shape[2:], self.kernel_size, self.stride, self.padding, self.output_padding, self.dilation
        ):
            o = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
            if o < 1:
                raise SpecError(
                    f"layer '{path}': the output {axis} would be {o}: padding {p} cuts {2 * p} of the "
                    f"{o + 2 * p} rows the input {axis}={size} spreads to"
                )
            hw.append(o)
        return (shape[0], self.out_channels, hw[0], hw[1])

    def local_params(self, input_shape: Shape) -> dict[str, ParamInfo]:
        p = {"weight": ParamInfo((self.in_channels, self.out_channels // self.groups, *self.kernel_size))}
        if self.bias:
            p["bias"] = ParamInfo((self.out_channels,))
        return p


# The kinds this family adds to the registry that from_dict reads (serial.py).
KINDS: tuple[type[Layer], ...] = (Conv2d, Conv1d, ConvTranspose2d)
