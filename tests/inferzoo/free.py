"""Parameter-free layers: activations (ReLU two ways, LeakyReLU 0.2, ELU, GELU tanh,
sigmoid, tanh, softmax over features and over channels), pooling (max 2/2 by reshape,
overlapping max 3/2 with loops, NHWC max, average by as_strided, padded average, global
average with and without kept axes), flatten (CHW, HWC of NHWC data) and inverted dropout."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from harness import spec as S
from harness.adapters.layouts import Layout

from .entry import Entry, free

NHWC = Layout(data="NHWC")


class ReLU:
    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask


class Relu:
    """Copy, then zero in place (a common pattern); the backward masks a copy too."""

    def forward(self, inputs):
        self.inputs = inputs
        out = inputs.copy()
        out[out < 0] = 0
        return out

    def backward(self, dvalues):
        d = dvalues.copy()
        d[self.inputs <= 0] = 0
        return d


class LeakyReLU:
    def __init__(self, alpha=0.2):
        self.alpha = alpha

    def forward(self, x):
        self.x = x
        return np.where(x >= 0, x, self.alpha * x)

    def backward(self, dy):
        dx = np.ones_like(self.x)
        dx[self.x < 0] = self.alpha
        return dy * dx


class ELU:
    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def forward(self, x):
        self.x = x
        return np.where(x > 0, x, self.alpha * (np.exp(np.minimum(x, 0)) - 1))

    def backward(self, dy):
        return dy * np.where(self.x > 0, 1.0, self.alpha * np.exp(np.minimum(self.x, 0)))


class GELU:
    """The tanh approximation (GPT-2's)."""

    C = np.sqrt(2 / np.pi)

    def forward(self, x):
        self.x = x
        self.t = np.tanh(self.C * (x + 0.044715 * x**3))
        return 0.5 * x * (1 + self.t)

    def backward(self, dy):
        x, t = self.x, self.t
        return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t**2) * self.C * (1 + 3 * 0.044715 * x**2))


class Sigmoid:
    def forward(self, z):
        self.a = 1.0 / (1.0 + np.exp(-z))
        return self.a

    def backward(self, da):
        return da * self.a * (1.0 - self.a)


class Tanh:
    def forward(self, x):
        self.out = np.tanh(x)
        return self.out

    def backward(self, grad):
        grad = grad * (1 - self.out**2)
        return grad


class Softmax:
    def forward(self, logits):
        z = logits - np.max(logits, axis=-1, keepdims=True)
        e = np.exp(z)
        self.p = e / np.sum(e, axis=-1, keepdims=True)
        return self.p

    def backward(self, dp):
        return self.p * (dp - np.sum(dp * self.p, axis=-1, keepdims=True))


class ChannelSoftmax:
    """Softmax over the channels of an NCHW map (segmentation heads)."""

    def forward(self, x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        self.s = e / e.sum(axis=1, keepdims=True)
        return self.s

    def backward(self, ds):
        return self.s * (ds - (ds * self.s).sum(axis=1, keepdims=True))


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
                win = x[:, :, i * self.s:i * self.s + self.k, j * self.s:j * self.s + self.k]
                out[:, :, i, j] = win.max(axis=(2, 3))
        return out

    def backward(self, dout):
        dx = np.zeros_like(self.x)
        n, c = self.x.shape[:2]
        for i in range(dout.shape[2]):
            for j in range(dout.shape[3]):
                win = self.x[:, :, i * self.s:i * self.s + self.k, j * self.s:j * self.s + self.k]
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
        return sum(xp[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9

    def backward(self, dy):
        h, w = self.shape[2:]
        dp = np.zeros((*self.shape[:2], h + 2, w + 2), dy.dtype)
        for i in range(3):
            for j in range(3):
                dp[:, :, i:i + h, j:j + w] += dy / 9
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


class Dropout:
    """Inverted dropout; the mask (already scaled) stored on the object."""

    def __init__(self, p=0.3, seed=0):
        self.p, self.rng = p, np.random.default_rng(seed)

    def forward(self, x):
        self.mask = (self.rng.random(x.shape) >= self.p) / (1 - self.p)
        return x * self.mask

    def backward(self, d):
        return d * self.mask


FREE = [
    Entry("relu_mask", free(ReLU), (3, 7), S.ReLU("relu"), quirks=("mask stored",)),
    Entry("relu_copy_zero_4d", free(Relu), (2, 3, 4, 4), S.ReLU("relu"), quirks=("copy then zero in place", "4-D")),
    Entry("leaky_relu_0.2", free(LeakyReLU), (4, 6), S.LeakyReLU("lrelu", 0.2), quirks=("slope 0.2",)),
    Entry("elu", free(ELU), (3, 2, 3, 3), S.ELU("elu"), quirks=("alpha 1",)),
    Entry("gelu_tanh", free(GELU), (4, 5), S.GELU("gelu", approximate="tanh"), quirks=("tanh approximation",)),
    Entry("sigmoid", free(Sigmoid), (3, 5), S.Sigmoid("sig")),
    Entry("tanh_4d", free(Tanh), (2, 2, 3, 3), S.Tanh("tanh")),
    Entry("softmax_last_axis", free(Softmax), (4, 6), S.Softmax("softmax", axis=-1)),
    Entry("softmax_channels", free(ChannelSoftmax), (2, 4, 3, 3), S.Softmax("softmax", axis=1),
          quirks=("softmax over channels",)),
    Entry("maxpool_reshape", free(MaxPool), (2, 3, 6, 4), S.MaxPool2d("pool", 2), quirks=("reshape trick", "one-hot argmax")),
    Entry("maxpool_overlap_3_2", free(MaxPool2D), (2, 2, 7, 9), S.MaxPool2d("pool", 3, stride=2),
          quirks=("overlapping windows", "loops", "argmax routing")),
    Entry("maxpool_nhwc", free(MaxPoolingNHWC), (2, 4, 6, 3), S.MaxPool2d("pool", 2), {"layout": NHWC},
          quirks=("NHWC", "put_along_axis")),
    Entry("avgpool_as_strided", free(AvgPool), (2, 3, 4, 6), S.AvgPool2d("pool", 2), quirks=("as_strided", "kron")),
    Entry("avgpool_3_1_pad1", free(AveragePooling), (2, 2, 5, 4), S.AvgPool2d("pool", 3, stride=1, padding=1),
          quirks=("padding 1", "count_include_pad")),
    Entry("global_avgpool", free(GlobalAveragePooling), (2, 3, 4, 5), S.GlobalAvgPool2d("gap")),
    Entry("global_avgpool_keepdims", free(GAP), (2, 4, 3, 3), S.GlobalAvgPool2d("gap", keepdims=True),
          quirks=("returns (N, C, 1, 1)",)),
    Entry("flatten_chw", free(Flatten), (2, 3, 2, 4), S.Flatten("flat")),
    Entry("flatten_nhwc", free(Flatten), (2, 2, 4, 3), S.Flatten("flat"), {"layout": Layout(data="NHWC", flatten="HWC")},
          quirks=("NHWC data", "HWC order")),
    Entry("dropout_inverted_0.3", free(Dropout), (4, 10), S.Dropout("drop", p=0.3),
          quirks=("mask stored (scaled)", "own generator")),
]
