"""The pooling family: :class:`MaxPool2d` and :class:`AvgPool2d` (windows over NCHW data, with
their padding and dilation rules) and :class:`GlobalAvgPool2d` (the mean over H and W)."""

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


# The kinds this family adds to the registry that from_dict reads (serial.py).
KINDS: tuple[type[Layer], ...] = (MaxPool2d, AvgPool2d, GlobalAvgPool2d)
