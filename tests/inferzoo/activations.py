"""Parameter-free activations: ReLU two ways, LeakyReLU 0.2, ELU, GELU (tanh), sigmoid,
tanh, softmax over features and over channels; inverted dropout with its mask stored."""

from __future__ import annotations

import numpy as np

from harness import spec as S

from .entry import Entry, free


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


class Dropout:
    """Inverted dropout; the mask (already scaled) stored on the object."""

    def __init__(self, p=0.3, seed=0):
        self.p, self.rng = p, np.random.default_rng(seed)

    def forward(self, x):
        self.mask = (self.rng.random(x.shape) >= self.p) / (1 - self.p)
        return x * self.mask

    def backward(self, d):
        return d * self.mask


ACTIVATIONS = [
    Entry("relu_mask", free(ReLU), (3, 7), S.ReLU("relu"), quirks=("mask stored",)),
    Entry("relu_copy_zero_4d", free(Relu), (2, 3, 4, 4), S.ReLU("relu"), quirks=("copy then zero in place", "4-D")),
    Entry("leaky_relu_0.2", free(LeakyReLU), (4, 6), S.LeakyReLU("lrelu", 0.2), quirks=("slope 0.2",)),
    Entry("elu", free(ELU), (3, 2, 3, 3), S.ELU("elu"), quirks=("alpha 1",)),
    Entry("gelu_tanh", free(GELU), (4, 5), S.GELU("gelu", approximate="tanh"), quirks=("tanh approximation",)),
    Entry("sigmoid", free(Sigmoid), (3, 5), S.Sigmoid("sig")),
    Entry("tanh_4d", free(Tanh), (2, 2, 3, 3), S.Tanh("tanh")),
    Entry("softmax_last_axis", free(Softmax), (4, 6), S.Softmax("softmax", axis=-1)),
    Entry(
        "softmax_channels",
        free(ChannelSoftmax),
        (2, 4, 3, 3),
        S.Softmax("softmax", axis=1),
        quirks=("softmax over channels",),
    ),
    Entry(
        "dropout_inverted_0.3",
        free(Dropout),
        (4, 10),
        S.Dropout("drop", p=0.3),
        quirks=("mask stored (scaled)", "own generator"),
    ),
]
