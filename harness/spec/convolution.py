"""The convolution family: :class:`Conv2d`, a 2-D cross-correlation over NCHW data, with its
padding rules (explicit, ``"valid"``, TensorFlow's ``"same"``) and parameter shapes."""

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
        for attr in ("in_channels", "out_channels", "groups"):
            v = getattr(self, attr)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise SpecError(f"layer '{n}': {attr} must be a positive int, got {v!r}")
        object.__setattr__(self, "kernel_size", _pair(self.kernel_size, "kernel_size", n, 1))
        object.__setattr__(self, "stride", _pair(self.stride, "stride", n, 1))
        object.__setattr__(self, "dilation", _pair(self.dilation, "dilation", n, 1))
        object.__setattr__(self, "padding", _padding(self.padding, n))
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise SpecError(
                f"layer '{n}': groups={self.groups} must divide in_channels={self.in_channels} "
                f"and out_channels={self.out_channels}"
            )

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


# The kinds this family adds to the registry that from_dict reads (serial.py).
KINDS: tuple[type[Layer], ...] = (Conv2d,)
