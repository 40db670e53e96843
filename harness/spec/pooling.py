"""The pooling family: :class:`MaxPool2d` and :class:`AvgPool2d` (windows over NCHW data, with
their padding and dilation rules), :class:`GlobalAvgPool2d` (the mean over H and W) and its
opposite, :class:`Upsample` (nearest or bilinear, by integer factors)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .base import Layer, Shape, SpecError, _check_name, _expect_rank, _pair, _window_out


@dataclass(frozen=True)
class _Pool2d(Layer):
    name: str
    kernel_size: Any
    stride: Any = None
    padding: Any = 0

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")
        n = self.name
        object.__setattr__(self, "kernel_size", _pair(self.kernel_size, "kernel_size", n, 1))
        stride = self.kernel_size if self.stride is None else self.stride
        object.__setattr__(self, "stride", _pair(stride, "stride", n, 1))
        object.__setattr__(self, "padding", _pair(self.padding, "padding", n, 0))
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise SpecError(
                f"layer '{n}': padding {self.padding} must be at most half the kernel "
                f"{self.kernel_size} (otherwise a window can lie wholly in the padding)"
            )

    def _dilation(self) -> tuple[int, int]:
        return (1, 1)

    def _infer(self, shape: Shape, path: str) -> Shape:
        _expect_rank(shape, (4,), "(N, C, H, W)", path)
        hw = []
        for axis, size, p, k, s, d in zip(
            "HW", shape[2:], self.padding, self.kernel_size, self.stride, self._dilation()
        ):
            o = _window_out(size, p, p, k, s, d)
            if o < 1:
                raise SpecError(
                    f"layer '{path}': input {axis}={size} with padding {p} is smaller than the window {d * (k - 1) + 1}"
                )
            # with dilation a window can skip every real pixel: its max is -inf, its gradient
            # undefined (PyTorch's CPU max_pool2d backward corrupts memory on it)
            taps = (np.arange(o) * s - p)[:, None] + np.arange(k) * d
            empty = np.flatnonzero(~((taps >= 0) & (taps < size)).any(axis=1))
            if empty.size:
                raise SpecError(
                    f"layer '{path}': the window at output {axis}={int(empty[0])} lies wholly in the "
                    f"padding (kernel {k}, dilation {d}, padding {p}, input {axis}={size}); "
                    "reduce the padding or the dilation"
                )
            hw.append(o)
        return (shape[0], shape[1], hw[0], hw[1])


@dataclass(frozen=True)
class MaxPool2d(_Pool2d):
    """Max pooling, ``(N, C, H, W)`` -> ``(N, C, H', W')``; padding counts as -inf.

    ``stride`` defaults to ``kernel_size``; a smaller stride gives overlapping windows.
    """

    kind: ClassVar[str] = "MaxPool2d"
    dilation: Any = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "dilation", _pair(self.dilation, "dilation", self.name, 1))

    def _dilation(self) -> tuple[int, int]:
        return self.dilation


@dataclass(frozen=True)
class AvgPool2d(_Pool2d):
    """Average pooling, ``(N, C, H, W)`` -> ``(N, C, H', W')``.

    ``count_include_pad=True`` divides by the full window (PyTorch's default); ``False``
    divides by the number of real (unpadded) pixels in the window.
    """

    kind: ClassVar[str] = "AvgPool2d"
    count_include_pad: bool = True


@dataclass(frozen=True)
class GlobalAvgPool2d(Layer):
    """Mean over H and W: ``(N, C, H, W)`` -> ``(N, C)``, or ``(N, C, 1, 1)`` with ``keepdims``."""

    kind: ClassVar[str] = "GlobalAvgPool2d"
    name: str
    keepdims: bool = False

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")

    def _infer(self, shape: Shape, path: str) -> Shape:
        _expect_rank(shape, (4,), "(N, C, H, W)", path)
        return (shape[0], shape[1], 1, 1) if self.keepdims else (shape[0], shape[1])


@dataclass(frozen=True)
class Upsample(Layer):
    """Upsampling by integer factors, ``(N, C, H, W)`` -> ``(N, C, sh*H, sw*W)``, as
    ``F.interpolate(x, scale_factor=...)``.

    ``scale_factor``: an int or a pair ``(sh, sw)`` of ints >= 1 (a float PyTorch factor such
    as ``2.0`` is accepted when it is whole). ``mode="nearest"``: output ``(i, j)`` copies
    input ``(i // sh, j // sw)``. ``mode="bilinear"``: PyTorch's source index per axis,
    ``src = (dst + 0.5) / s - 0.5`` clamped at 0 (``align_corners=False``) or
    ``src = dst * (in - 1) / (out - 1)`` (``align_corners=True``), interpolated between
    ``floor(src)`` and the next pixel (the last pixel repeats at the far edge).
    ``align_corners=True`` needs ``mode="bilinear"`` (PyTorch refuses it for nearest).
    """

    kind: ClassVar[str] = "Upsample"
    name: str
    scale_factor: Any
    mode: str = "nearest"
    align_corners: bool = False

    def __post_init__(self) -> None:
        _check_name(self.name, "layer")
        n = self.name
        value = self.scale_factor
        whole = lambda v: v if not isinstance(v, float) or not v.is_integer() else int(v)  # noqa: E731
        value = [whole(v) for v in value] if isinstance(value, (tuple, list)) else whole(value)
        if isinstance(value, float) or (isinstance(value, list) and any(isinstance(v, float) for v in value)):
            raise SpecError(
                f"layer '{n}': scale_factor must be a whole number or a pair of them, got {self.scale_factor!r} "
                "(a fractional factor's pixel grid is not supported)"
            )
        object.__setattr__(self, "scale_factor", _pair(value, "scale_factor", n, 1))
        if self.mode not in ("nearest", "bilinear"):
            raise SpecError(f"layer '{n}': mode must be 'nearest' or 'bilinear', got {self.mode!r}")
        if not isinstance(self.align_corners, bool):
            raise SpecError(f"layer '{n}': align_corners must be True or False, got {self.align_corners!r}")
        if self.align_corners and self.mode != "bilinear":
            raise SpecError(f"layer '{n}': align_corners=True applies to mode='bilinear' only, got mode={self.mode!r}")

    def _infer(self, shape: Shape, path: str) -> Shape:
        _expect_rank(shape, (4,), "(N, C, H, W)", path)
        sh, sw = self.scale_factor
        return (shape[0], shape[1], shape[2] * sh, shape[3] * sw)


# The kinds this family adds to the registry that from_dict reads (serial.py).
KINDS: tuple[type[Layer], ...] = (MaxPool2d, AvgPool2d, GlobalAvgPool2d, Upsample)
