"""Bug zoo, ties and kinks: handwritten max pools and ReLU-family layers whose gradient at
exact ties / zeros is a valid subgradient (any tie-breaking) or not (copied to every tied
maximum, routed to none, 1 + slope at 0, 0 / 0). Same entry format as :mod:`zoo.layers`;
kept apart so the peer benchmarks' zoo (``zoo.layers``) keeps its published figures."""

from __future__ import annotations

import numpy as np

from harness import spec as S

from .layers import LeakyReLU, ReLU

CORRECT: list = []
MUTANTS: list = []




class MaxPoolIm2col:
    """k x k windows, stride s, im2col with fancy indexing; ties go to the first index (argmax)."""

    def __init__(self, k=3, s=2):
        self.k, self.s = k, s

    def _cols(self, x):
        n, c, h, w = x.shape
        k, s = self.k, self.s
        oh, ow = (h - k) // s + 1, (w - k) // s + 1
        i = (np.arange(oh) * s)[:, None, None, None] + np.arange(k)[None, None, :, None]
        j = (np.arange(ow) * s)[None, :, None, None] + np.arange(k)[None, None, None, :]
        self.rows = np.broadcast_to(i, (oh, ow, k, k)).reshape(oh, ow, k * k)
        self.cols = np.broadcast_to(j, (oh, ow, k, k)).reshape(oh, ow, k * k)
        return x[:, :, self.rows, self.cols]  # (N, C, OH, OW, k*k)

    def forward(self, x):
        self.shape = x.shape
        self.win = self._cols(x)
        return self.win.max(axis=-1)

    def _route(self, dy):  # (N, C, OH, OW, k*k): each window's share of dy
        a = self.win.argmax(axis=-1)
        return (np.arange(self.win.shape[-1]) == a[..., None]) * dy[..., None]

    def backward(self, dy):
        dx = np.zeros(self.shape, dtype=dy.dtype)
        n, c = self.shape[:2]
        nn, cc = np.arange(n)[:, None, None, None, None], np.arange(c)[None, :, None, None, None]
        np.add.at(dx, (nn, cc, self.rows[None, None], self.cols[None, None]), self._route(dy))
        return dx


class MaxPoolIm2colLastIndex(MaxPoolIm2col):
    def _route(self, dy):  # ties go to the last index: argmax of the reversed window
        kk = self.win.shape[-1]
        a = kk - 1 - self.win[..., ::-1].argmax(axis=-1)
        return (np.arange(kk) == a[..., None]) * dy[..., None]


class MaxPoolIm2colSplit(MaxPoolIm2col):
    def _route(self, dy):  # ties share the gradient equally
        mask = self.win == self.win.max(axis=-1, keepdims=True)
        return mask / mask.sum(axis=-1, keepdims=True) * dy[..., None]


class MaxPoolIm2colMaskAll(MaxPoolIm2col):
    def _route(self, dy):
        mask = self.win == self.win.max(axis=-1, keepdims=True)  # every tied maximum gets the full dy
        return mask * dy[..., None]


class MaxPoolIm2colRunnerUp(MaxPoolIm2col):
    def _route(self, dy):
        second = np.partition(self.win, -2, axis=-1)[..., -2:-1]
        return (self.win > second) * dy[..., None]  # "the winner beats the runner-up": no winner at ties


class MaxPoolLoop:
    """2x2, stride 2, loops over the batch and the windows; mask = window == window.max()."""

    def forward(self, x):
        n, c, h, w = x.shape
        self.x = x
        out = np.zeros((n, c, h // 2, w // 2), dtype=x.dtype)
        for b in range(n):
            for i in range(h // 2):
                for j in range(w // 2):
                    out[b, :, i, j] = x[b, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].max(axis=(1, 2))
        return out

    def backward(self, dy):
        dx = np.zeros_like(self.x)
        for b in range(dy.shape[0]):
            for ch in range(dy.shape[1]):
                for i in range(dy.shape[2]):
                    for j in range(dy.shape[3]):
                        win = self.x[b, ch, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
                        mask = win == win.max()
                        dx[b, ch, 2 * i:2 * i + 2, 2 * j:2 * j + 2] += self._share(mask) * dy[b, ch, i, j]
        return dx

    def _share(self, mask):
        first = np.zeros_like(mask)
        first.flat[np.argmax(mask)] = True  # the first of the tied maxima
        return first


class MaxPoolLoopMaskAll(MaxPoolLoop):
    def _share(self, mask):
        return mask  # dx += mask * dout: every tied maximum gets the full gradient


class MaxPoolLoopIntegerSplit(MaxPoolLoop):
    def _share(self, mask):
        return mask // mask.sum()  # "split among the ties" in integers: 1 // k is 0 at ties


class ReLUGreaterEqual(ReLU):
    def backward(self, dy):
        dx = np.zeros_like(dy)
        dx[self.x >= 0] = dy[self.x >= 0]  # 1 at exactly 0: as valid a subgradient as 0
        return dx


class ReLUInPlace:
    """Applied in place to save memory (the forward writes into its input): the backward
    masks with the output, where x > 0 still means the input was positive."""

    def forward(self, x):
        np.maximum(x, 0, out=x)
        self.out = x
        return x

    def backward(self, dy):
        return dy * (self.out > 0)


class ReLUInPlaceMaskGreaterEqual(ReLUInPlace):
    def backward(self, dy):
        return dy * (self.out >= 0)  # fine on the input; on the in-place output it is always true


class ReLUSlopeRatio(ReLU):
    def backward(self, dy):
        return dy * np.maximum(self.x, 0) / self.x  # "d max(x, 0) / dx = max(x, 0) / x": 0 / 0 at exactly 0


class LeakyReLUBothSides(LeakyReLU):
    def backward(self, dy):
        return dy * ((self.x >= 0) + self.slope * (self.x <= 0))  # 0 counted on both sides: 1 + slope


class ELUFromOutput:
    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def forward(self, x):
        self.out = np.where(x > 0, x, self.alpha * (np.exp(np.minimum(x, 0)) - 1))
        return self.out

    def backward(self, dy):
        return dy * np.where(self.out > 0, 1.0, self.out + self.alpha)  # alpha e^x = out + alpha


MP = S.MaxPool2d("pool", 3, stride=2)
MP2 = S.MaxPool2d("pool", 2)
LRELU = S.LeakyReLU("lrelu", 0.01)

CORRECT += [
    ("max pool im2col, first index at ties", MaxPoolIm2col, MP, {}, (2, 3, 7, 6)),
    ("max pool im2col, last index at ties", MaxPoolIm2colLastIndex, MP, {}, (2, 3, 7, 6)),
    ("max pool im2col, ties split equally", MaxPoolIm2colSplit, MP, {}, (2, 3, 7, 6)),
    ("max pool im2col, 3x3 stride 1", lambda: MaxPoolIm2colSplit(3, 1), S.MaxPool2d("pool", 3, stride=1), {},
     (2, 2, 6, 5)),
    ("max pool loops, first tie", MaxPoolLoop, MP2, {}, (2, 3, 4, 6)),
    ("relu with dx[x >= 0]", ReLUGreaterEqual, S.ReLU("relu"), {}, (2, 3, 4, 5)),
    # the in-place forward is deliberate here (declared): the tie behaviour is what is checked
    ("relu in place, output mask x > 0", ReLUInPlace, S.ReLU("relu"), {"inplace": {"input"}}, (2, 3, 4, 5)),
    ("elu, gradient from the output", ELUFromOutput, S.ELU("elu", 1.0), {}, (2, 3, 4, 5)),
    ("elu alpha 0.5, gradient from the output", lambda: ELUFromOutput(0.5), S.ELU("elu", 0.5), {}, (2, 3, 4, 5)),
]

MUTANTS += [
    ("max pool im2col copies the gradient to every tied maximum", MaxPoolIm2colMaskAll, MP, {}, (2, 3, 7, 6),
     "backward", "copied to each of the k ties: k times too large"),
    ("max pool im2col routes nothing at ties (winner must beat the runner-up)", MaxPoolIm2colRunnerUp, MP, {},
     (2, 3, 7, 6), "backward", "no gradient is routed (the upstream value is lost)"),
    ("max pool loops: dx += mask * dout copies to every tie", MaxPoolLoopMaskAll, MP2, {}, (2, 3, 4, 6),
     "backward", "copied to each of the k ties: k times too large"),
    ("max pool loops: ties split with integer division", MaxPoolLoopIntegerSplit, MP2, {}, (2, 3, 4, 6),
     "backward", "no gradient is routed (the upstream value is lost)"),
    ("relu in place, output mask x >= 0", ReLUInPlaceMaskGreaterEqual, S.ReLU("relu"), {"inplace": {"input"}},
     (2, 3, 4, 5),
     "backward", None),
    ("relu derivative as max(x, 0) / x", ReLUSlopeRatio, S.ReLU("relu"), {}, (2, 3, 4, 5), "error",
     "at a deliberate tie or zero"),
    ("leaky relu counts 0 on both sides", LeakyReLUBothSides, LRELU, {}, (2, 3, 4, 5), "backward",
     "LeakyReLU at exactly 0 passes a gradient outside [0.01, 1]: 1.01 times"),
]
