"""Pooling and flatten: max 2/2 by reshape, overlapping max 3/2 with loops, NHWC max,
average by as_strided, padded average, global average with and without kept axes, flatten
(CHW, and HWC of NHWC data)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from harness import spec as S
from harness.adapters.layouts import Layout

from .entry import Entry, free

NHWC = Layout(data="NHWC")


class MaxPool:
    """2x2 stride 2 by reshape; a one-hot of each window's argmax routes the gradient
    (ties to the first maximum, so a tie is not counted twice)."""

    def forward(self, x):
        n, c, h, w = x.shape
        win = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
        self.onehot = np.eye(4, dtype=x.dtype)[win.argmax(axis=-1)]
        return win.max(axis=-1)

    def backward(self, dout):
        n, c, oh, ow, _ = self.onehot.shape
        d = (self.onehot * dout[..., None]).reshape(n, c, oh, ow, 2, 2).transpose(0, 1, 2, 4, 3, 5)
        return d.reshape(n, c, 2 * oh, 2 * ow)


class MaxPool2D:
    """Overlapping 3x3 stride 2 (AlexNet), loops over output pixels, argmax routing."""

    def __init__(self, pool_size=3, strides=2):
        self.k, self.s = pool_size, strides

    def forward(self, x):
        self.x = x
        n, c, h, w = x.shape
        oh, ow = (h - self.k) // self.s + 1, (w - self.k) // self.s + 1
        out = np.empty((n, c, oh, ow), x.dtype)
        for i in range(oh):
            for j in range(ow):
                win = x[:, :, i * self.s : i * self.s + self.k, j * self.s : j * self.s + self.k]
                out[:, :, i, j] = win.max(axis=(2, 3))
        return out

    def backward(self, dout):
        dx = np.zeros_like(self.x)
        n, c = self.x.shape[:2]
        for i in range(dout.shape[2]):
            for j in range(dout.shape[3]):
                win = self.x[:, :, i * self.s : i * self.s + self.k, j * self.s : j * self.s + self.k]
                idx = win.reshape(n, c, -1).argmax(axis=2)
                r, q = np.unravel_index(idx, (self.k, self.k))
                nn, cc = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
                np.add.at(dx, (nn, cc, i * self.s + r, j * self.s + q), dout[:, :, i, j])
        return dx


class MaxPoolingNHWC:
    """NHWC, 2x2 stride 2, gradient to the first maximum of each window."""

    def forward(self, x):
        n, h, w, c = x.shape
        win = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(n, h // 2, w // 2, c, 4)
        self.arg, self.shape = win.argmax(axis=-1), x.shape
        return win.max(axis=-1)

    def backward(self, dout):
        n, h, w, c = self.shape
        d = np.zeros(dout.shape + (4,), dout.dtype)
        np.put_along_axis(d, self.arg[..., None], dout[..., None], axis=-1)
        d = d.reshape(n, h // 2, w // 2, c, 2, 2).transpose(0, 1, 4, 2, 5, 3)
        return d.reshape(n, h, w, c)


class AvgPool:
    """2x2 stride 2 windows through as_strided."""

    def forward(self, x):
        n, c, h, w = x.shape
        s = x.strides
        self.shape = x.shape
        x = np.ascontiguousarray(x)
        s = x.strides
        win = as_strided(x, (n, c, h // 2, w // 2, 2, 2), (s[0], s[1], 2 * s[2], 2 * s[3], s[2], s[3]))
        return win.mean(axis=(4, 5))

    def backward(self, dout):
        return np.kron(dout, np.ones((1, 1, 2, 2))) / 4.0


class AveragePooling:
    """3x3 stride 1 padding 1 (zero padding counted, as PyTorch's default)."""

    def forward(self, x):
        self.shape = x.shape
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        h, w = x.shape[2:]
        return sum(xp[:, :, i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9

    def backward(self, dy):
        h, w = self.shape[2:]
        dp = np.zeros((*self.shape[:2], h + 2, w + 2), dy.dtype)
        for i in range(3):
            for j in range(3):
                dp[:, :, i : i + h, j : j + w] += dy / 9
        return dp[:, :, 1:-1, 1:-1]


class GlobalAveragePooling:
    def forward(self, x):
        self.hw, self.shape = x.shape[2] * x.shape[3], x.shape
        return x.mean(axis=(2, 3))

    def backward(self, d):
        return np.ones(self.shape) * d[:, :, None, None] / self.hw


class GAP:
    """Keeps the pooled axes: (N, C, 1, 1)."""

    def forward(self, x):
        self.shape = x.shape
        return np.mean(x, axis=(2, 3), keepdims=True)

    def backward(self, d):
        return np.broadcast_to(d, self.shape) / (self.shape[2] * self.shape[3])


class Flatten:
    def forward(self, x):
        self.orig = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, d):
        return d.reshape(self.orig)


POOLING = [
    Entry(
        "maxpool_reshape",
        free(MaxPool),
        (2, 3, 6, 4),
        S.MaxPool2d("pool", 2),
        quirks=("reshape trick", "one-hot argmax"),
    ),
    Entry(
        "maxpool_overlap_3_2",
        free(MaxPool2D),
        (2, 2, 7, 9),
        S.MaxPool2d("pool", 3, stride=2),
        quirks=("overlapping windows", "loops", "argmax routing"),
    ),
    Entry(
        "maxpool_nhwc",
        free(MaxPoolingNHWC),
        (2, 4, 6, 3),
        S.MaxPool2d("pool", 2),
        {"layout": NHWC},
        quirks=("NHWC", "put_along_axis"),
    ),
    Entry("avgpool_as_strided", free(AvgPool), (2, 3, 4, 6), S.AvgPool2d("pool", 2), quirks=("as_strided", "kron")),
    Entry(
        "avgpool_3_1_pad1",
        free(AveragePooling),
        (2, 2, 5, 4),
        S.AvgPool2d("pool", 3, stride=1, padding=1),
        quirks=("padding 1", "count_include_pad"),
    ),
    Entry("global_avgpool", free(GlobalAveragePooling), (2, 3, 4, 5), S.GlobalAvgPool2d("gap")),
    Entry(
        "global_avgpool_keepdims",
        free(GAP),
        (2, 4, 3, 3),
        S.GlobalAvgPool2d("gap", keepdims=True),
        quirks=("returns (N, C, 1, 1)",),
    ),
    Entry("flatten_chw", free(Flatten), (2, 3, 2, 4), S.Flatten("flat")),
    Entry(
        "flatten_nhwc",
        free(Flatten),
        (2, 2, 4, 3),
        S.Flatten("flat"),
        {"layout": Layout(data="NHWC", flatten="HWC")},
        quirks=("NHWC data", "HWC order"),
    ),
]
