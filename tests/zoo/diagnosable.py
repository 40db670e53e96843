"""Mutants whose mistake has a name, written the way from-scratch code is written (loops over
the batch, im2col with fancy indexing, np.add.at, in-place ops), each declaring the
diagnosis it must get. ``MUTANTS`` lists (name, factory, spec, wrap kwargs, input shape,
expected verdict, accepted diagnosis substrings): a diagnosis line of that mutant is
correct when it contains one of them, and wrong otherwise. ``LAYERS_ACCEPT`` declares the
same for the mutants of :mod:`zoo.layers` (an empty tuple: no line may be printed).
``CORRECT``: the correct layers here, (name, factory, spec, wrap kwargs, input shape)."""

from __future__ import annotations

import numpy as np

from harness import spec as S

# ------------------------------------------------------------------ conv by im2col


class ConvIm2col:
    """NCHW conv, OIHW kernel; patches gathered with fancy indexing, scattered back with np.add.at."""

    def __init__(self, cin=2, cout=3, k=3, stride=1, pad=1, dilation=1, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.W = (rng.normal(size=(cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(dtype)
        self.b = rng.normal(size=cout).astype(dtype)
        self.s, self.p, self.d = stride, pad, dilation

    def _index(self, c, h, w):
        k, s, p, d = self.W.shape[2], self.s, self.p, self.d
        oh, ow = (h + 2 * p - d * (k - 1) - 1) // s + 1, (w + 2 * p - d * (k - 1) - 1) // s + 1
        i0, j0 = np.tile(np.repeat(np.arange(k) * d, k), c), np.tile(np.arange(k) * d, k * c)
        i1, j1 = s * np.repeat(np.arange(oh), ow), s * np.tile(np.arange(ow), oh)
        return np.repeat(np.arange(c), k * k)[:, None], i0[:, None] + i1[None, :], j0[:, None] + j1[None, :], oh, ow

    def forward(self, x):
        n, c, h, w = x.shape
        self.xshape, p = x.shape, self.p
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        self.ch, self.rows, self.cols, oh, ow = self._index(c, h, w)
        self.patches = xp[:, self.ch, self.rows, self.cols]  # (N, C*k*k, L)
        out = np.einsum("ok,nkl->nol", self._kernel().reshape(len(self.W), -1), self.patches)
        return out.reshape(n, -1, oh, ow) + self.b[None, :, None, None]

    def _kernel(self):
        return self.W

    def _scatter(self, dxp, dpatches):
        np.add.at(dxp, (slice(None), self.ch, self.rows, self.cols), dpatches)

    def backward(self, dy):
        n, c, h, w = self.xshape
        p, dyf = self.p, dy.reshape(n, dy.shape[1], -1)
        self.dW = np.einsum("nol,nkl->ok", dyf, self.patches).reshape(self.W.shape)
        self.db = dy.sum(axis=(0, 2, 3))
        dxp = np.zeros((n, c, h + 2 * p, w + 2 * p), dy.dtype)
        self._scatter(dxp, np.einsum("ok,nol->nkl", self._kernel().reshape(len(self.W), -1), dyf))
        return dxp[:, :, p:p + h, p:p + w]


class ConvIm2colCol2imHW(ConvIm2col):
    def _scatter(self, dxp, dpatches):
        np.add.at(dxp, (slice(None), self.ch, self.cols, self.rows), dpatches)  # rows and cols swapped


class ConvIm2colStrideIgnored(ConvIm2col):
    """Sizes the output with the stride but gathers patches at every position."""

    def _index(self, c, h, w):
        ch, rows, cols, oh, ow = super()._index(c, h, w)
        i0, j0 = rows[:, :1], cols[:, :1]
        return ch, i0 + np.repeat(np.arange(oh), ow)[None, :], j0 + np.tile(np.arange(ow), oh)[None, :], oh, ow


class ConvIm2colDilationIgnored(ConvIm2col):
    def _index(self, c, h, w):
        ch, rows, cols, oh, ow = super()._index(c, h, w)
        k = self.W.shape[2]
        rows = rows - np.tile(np.repeat(np.arange(k) * (self.d - 1), k), c)[:, None]
        cols = cols - np.tile(np.arange(k) * (self.d - 1), k * c)[:, None]
        return ch, rows, cols, oh, ow


class ConvIm2colPatchOrder(ConvIm2col):
    """Patches flattened (c, kw, kh) while the weight is flattened (c, kh, kw)."""

    def _index(self, c, h, w):
        ch, rows, cols, oh, ow = super()._index(c, h, w)
        k = self.W.shape[2]
        swap = (np.arange(c * k * k).reshape(c, k, k).transpose(0, 2, 1)).ravel()
        return ch, rows[swap], cols[swap], oh, ow


class ConvIm2colPatchHWC(ConvIm2col):
    """Patches gathered (kh, kw, c), a TensorFlow habit, while the weight is flattened (c, kh, kw)."""

    def _index(self, c, h, w):
        ch, rows, cols, oh, ow = super()._index(c, h, w)
        k = self.W.shape[2]
        order = np.arange(c * k * k).reshape(c, k, k).transpose(1, 2, 0).ravel()
        return ch[order], rows[order], cols[order], oh, ow


class ConvIm2colConvolves(ConvIm2col):
    """Flips the kernel in the forward ("convolution") and differentiates that faithfully."""

    def _kernel(self):
        return self.W[:, :, ::-1, ::-1]

    def backward(self, dy):
        dx = super().backward(dy)
        self.dW = self.dW[:, :, ::-1, ::-1].copy()
        return dx


class ConvIm2colPadOffByOne(ConvIm2col):
    """Builds its padded input by hand, one pixel too far down and right."""

    def forward(self, x):
        n, c, h, w = x.shape
        p = self.p
        self.xshape = x.shape
        xp = np.zeros((n, c, h + 2 * p, w + 2 * p), x.dtype)
        xp[:, :, p + 1:p + 1 + h, p + 1:p + 1 + w] = x
        self.ch, self.rows, self.cols, oh, ow = self._index(c, h, w)
        self.patches = xp[:, self.ch, self.rows, self.cols]
        out = np.einsum("ok,nkl->nol", self.W.reshape(len(self.W), -1), self.patches)
        return out.reshape(n, -1, oh, ow) + self.b[None, :, None, None]


class ConvIm2colDwMeanOverWindows(ConvIm2col):
    def backward(self, dy):
        dx = super().backward(dy)
        self.dW /= dy.shape[2] * dy.shape[3]  # "average over positions", like the loss
        return dx


class ConvIm2colDxMeanOverChannels(ConvIm2col):
    def backward(self, dy):
        dx = super().backward(dy)
        return dx / dy.shape[1]  # averaged over the output channels instead of summed


class ConvLoopDwLastSample(ConvIm2col):
    """Per-sample loop for the weight gradient, assigning instead of accumulating."""

    def backward(self, dy):
        dx = super().backward(dy)
        for i in range(dy.shape[0]):
            self.dW = np.einsum("ol,kl->ok", dy[i].reshape(dy.shape[1], -1), self.patches[i]).reshape(self.W.shape)
            self.db = dy[i].sum(axis=(1, 2))
        return dx


class ConvLoopDwLastWindow(ConvIm2col):
    """Loop over output positions for the weight gradient, assigning instead of accumulating."""

    def backward(self, dy):
        dx = super().backward(dy)
        dyf = dy.reshape(dy.shape[0], dy.shape[1], -1)
        for pos in range(dyf.shape[2]):
            self.dW = np.einsum("no,nk->ok", dyf[:, :, pos], self.patches[:, :, pos]).reshape(self.W.shape)
        return dx


# ------------------------------------------------------------------ dense with a batch loop


class DenseLoop:
    def __init__(self, fin=6, fout=4, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.W = (rng.normal(size=(fout, fin)) / np.sqrt(fin)).astype(dtype)
        self.b = rng.normal(size=fout).astype(dtype)

    def forward(self, x):
        self.x = x
        return x @ self.W.T + self.b

    def backward(self, dy):
        self.dW, self.db = np.zeros_like(self.W), np.zeros_like(self.b)
        for i in range(len(dy)):
            self.dW += np.outer(dy[i], self.x[i])
            self.db += dy[i]
        return dy @ self.W


class DenseLoopLastSample(DenseLoop):
    def backward(self, dy):
        for i in range(len(dy)):
            self.dW = np.outer(dy[i], self.x[i])  # = where += is needed
            self.db = dy[i]
        return dy @ self.W


# ------------------------------------------------------------------ max pool by loops


class MaxPoolLoop:
    """NCHW, k x k windows at stride s, loops over output positions."""

    def __init__(self, k=2, s=2):
        self.k, self.s = k, s

    def _start(self, i):
        return i * self.s

    def forward(self, x):
        n, c, h, w = x.shape
        k, self.x = self.k, x
        oh, ow = (h - k) // self.s + 1, (w - k) // self.s + 1
        out = np.empty((n, c, oh, ow), x.dtype)
        for i in range(oh):
            for j in range(ow):
                r, q = self._start(i), self._start(j)
                out[:, :, i, j] = x[:, :, r:r + k, q:q + k].max(axis=(2, 3))
        return out

    def _route(self, win, g):
        # to the first maximum only: a mask of every tied maximum would copy g to each tie
        n, c = win.shape[:2]
        first = np.zeros((n, c, win.shape[2] * win.shape[3]), win.dtype)
        np.put_along_axis(first, win.reshape(n, c, -1).argmax(axis=2)[..., None], 1.0, axis=2)
        return first.reshape(win.shape) * g

    def backward(self, dy):
        dx, k = np.zeros_like(self.x), self.k
        for i in range(dy.shape[2]):
            for j in range(dy.shape[3]):
                r, q = self._start(i), self._start(j)
                dx[:, :, r:r + k, q:q + k] += self._route(self.x[:, :, r:r + k, q:q + k], dy[:, :, i:i + 1, j:j + 1])
        return dx


class MaxPoolRoutesToAll(MaxPoolLoop):
    def _route(self, win, g):
        return np.ones_like(win) * g  # every element of the window gets the gradient


class MaxPoolAsAverage(MaxPoolLoop):
    def _route(self, win, g):
        return np.ones_like(win) * g / (self.k * self.k)  # average pooling's backward


class MaxPoolStrideIgnored(MaxPoolLoop):
    """Sizes the output with the stride; the forward's windows start at every position."""

    def forward(self, x):
        self._start = lambda i: i
        try:
            return super().forward(x)
        finally:
            del self._start


# ------------------------------------------------------------------ normalisation


class BatchNorm:
    """Training-mode per-channel batch norm, NCHW."""

    def __init__(self, c=3, seed=0, dtype=np.float64, eps=1e-5):
        rng = np.random.default_rng(seed)
        self.gamma, self.beta = 1 + 0.2 * rng.normal(size=c), 0.2 * rng.normal(size=c)
        self.running_mean, self.running_var, self.eps = np.zeros(c), np.ones(c), eps

    def forward(self, x):
        mu, var = x.mean(axis=(0, 2, 3), keepdims=True), x.var(axis=(0, 2, 3), keepdims=True)
        self.inv = 1 / np.sqrt(var + self.eps)
        self.xhat = (x - mu) * self.inv
        return self.gamma[None, :, None, None] * self.xhat + self.beta[None, :, None, None]

    def _dx(self, d):
        mean = lambda a: a.mean(axis=(0, 2, 3), keepdims=True)  # noqa: E731
        return self.inv * (d - mean(d) - self.xhat * mean(d * self.xhat))

    def backward(self, dy):
        self.dgamma, self.dbeta = (dy * self.xhat).sum(axis=(0, 2, 3)), dy.sum(axis=(0, 2, 3))
        return self._dx(dy * self.gamma[None, :, None, None])


class BatchNormNoMeanPath(BatchNorm):
    def _dx(self, d):
        m = d.shape[0] * d.shape[2] * d.shape[3]
        dvar = (d * self.xhat).sum(axis=(0, 2, 3), keepdims=True) * -0.5 * self.inv**2
        return d * self.inv + dvar * 2 * self.xhat / self.inv / m  # the mean "is a constant"


class BatchNormWrongEps(BatchNorm):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.eps = 1e-3  # the spec says 1e-5


class LayerNorm:
    """Over the last axis of (N, T, F)."""

    def __init__(self, f=5, seed=0, dtype=np.float64, eps=1e-5):
        rng = np.random.default_rng(seed)
        self.gamma, self.beta, self.eps = 1 + 0.2 * rng.normal(size=f), 0.2 * rng.normal(size=f), eps

    def forward(self, x):
        mu, var = x.mean(axis=-1, keepdims=True), x.var(axis=-1, keepdims=True)
        self.inv = 1 / np.sqrt(var + self.eps)
        self.xhat = (x - mu) * self.inv
        return self.gamma * self.xhat + self.beta

    def _dx(self, d):
        mean = lambda a: a.mean(axis=-1, keepdims=True)  # noqa: E731
        return self.inv * (d - mean(d) - self.xhat * mean(d * self.xhat))

    def backward(self, dy):
        self.dgamma, self.dbeta = (dy * self.xhat).sum(axis=(0, 1)), dy.sum(axis=(0, 1))
        return self._dx(dy * self.gamma)


class LayerNormNoVariancePath(LayerNorm):
    def _dx(self, d):
        return self.inv * (d - d.mean(axis=-1, keepdims=True))


class LayerNormConstantStats(LayerNorm):
    def _dx(self, d):
        return self.inv * d


class LayerNormNoEps(LayerNorm):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.eps = 0.0


CONV = S.Conv2d("conv", 2, 3, 3, stride=1, padding=1)
CONV_S2 = S.Conv2d("conv", 2, 3, 3, stride=2, padding=1)
CONV_D2 = S.Conv2d("conv", 2, 3, 3, padding=1, dilation=2)
CONV_P2 = S.Conv2d("conv", 2, 3, 3, padding=2)
LIN = S.Linear("fc", 6, 4)
POOL = S.MaxPool2d("pool", 2, stride=2)
BN = S.BatchNorm2d("bn", 3)
LN = S.LayerNorm("ln", 5)
BN_NAMES = {"params": {"weight": "gamma", "bias": "beta", "running_mean": "running_mean",
                       "running_var": "running_var"}, "grads": {"weight": "dgamma", "bias": "dbeta"}}
LN_NAMES = {"params": {"weight": "gamma", "bias": "beta"}, "grads": {"weight": "dgamma", "bias": "dbeta"}}
X4, XS = (4, 2, 6, 6), (3, 2, 7, 7)


def conv(cls, **kw):
    """A factory for ``cls`` at the hyperparameters ``kw`` (seed and dtype passed on)."""
    return lambda seed=0, dtype=np.float64: cls(seed=seed, dtype=dtype, **kw)


CORRECT = [
    ("conv im2col", conv(ConvIm2col), CONV, {}, X4),
    ("conv im2col, stride 2", conv(ConvIm2col, stride=2), CONV_S2, {}, XS),
    ("conv im2col, dilation 2", conv(ConvIm2col, dilation=2), CONV_D2, {}, XS),
    ("dense loop", DenseLoop, LIN, {}, (5, 6)),
    ("max pool loop", lambda seed=0, dtype=None: MaxPoolLoop(), POOL, {}, (2, 3, 4, 6)),
    ("batch norm", BatchNorm, BN, BN_NAMES, (4, 3, 3, 2)),
    ("layer norm", LayerNorm, LN, LN_NAMES, (3, 4, 5)),
]

MUTANTS = [
    ("im2col: col2im with H and W swapped", conv(ConvIm2colCol2imHW, stride=2), CONV_S2, {}, XS, "backward",
     ("axes H and W swapped",)),
    ("im2col: the forward ignores the stride", conv(ConvIm2colStrideIgnored, stride=2), CONV_S2, {}, XS, "forward",
     ("ignores its stride", "ignores the stride")),
    ("im2col: the forward ignores the dilation", conv(ConvIm2colDilationIgnored, dilation=2), CONV_D2, {}, XS,
     "forward", ("ignores its dilation", "ignores the dilation")),
    ("im2col: patches flattened (kw, kh)", conv(ConvIm2colPatchOrder), CONV, {}, X4, "forward",
     ("reads the weight's values in (O, I, kw, kh) order", "axes kh and kw swapped", "kernel='OIWH'")),
    ("im2col: patches gathered (kh, kw, c)", conv(ConvIm2colPatchHWC), CONV, {}, X4, "forward",
     ("reads the weight's values in (O, kh, kw, I) order", "laid out as (O, kh, kw, I)")),
    ("im2col: the forward convolves (kernel flipped)", conv(ConvIm2colConvolves), CONV, {}, X4, "forward",
     ("kernel rotated 180 degrees", "kernel flipped", "flip=True")),
    ("im2col: hand-built padding one pixel off", conv(ConvIm2colPadOffByOne, pad=2), CONV_P2, {}, X4, "both",
     ("shifted by one row down and one column right", "ignores its padding", "ignores the padding")),
    ("im2col: dW averaged over the output positions", conv(ConvIm2colDwMeanOverWindows, stride=2), CONV_S2, {}, XS,
     "backward", ("1/the number of windows (output positions) 16",)),
    ("im2col: dx averaged over the output channels", conv(ConvIm2colDxMeanOverChannels), CONV, {}, X4, "backward",
     ("1/the number of output channels 3",)),
    ("conv: dW = in a loop over the batch", conv(ConvLoopDwLastSample), CONV, {}, X4, "backward",
     ("only the last sample of the batch (4 of 4)",)),
    ("conv: dW = in a loop over output positions", conv(ConvLoopDwLastWindow, stride=2), CONV_S2, {}, XS, "backward",
     ("only the last window",)),
    ("dense: dW, db = in a loop over the batch", DenseLoopLastSample, LIN, {}, (5, 6), "backward",
     ("only the last sample of the batch (5 of 5)",)),
    ("max pool: gradient to every element of the window", lambda seed=0, dtype=None: MaxPoolRoutesToAll(), POOL, {},
     (2, 3, 4, 6), "backward", ("routed to every element of its pooling window",)),
    ("max pool: average pooling's backward", lambda seed=0, dtype=None: MaxPoolAsAverage(), POOL, {}, (2, 3, 4, 6),
     "backward", ("divided by its size 4",)),
    ("max pool: the forward ignores the stride", lambda seed=0, dtype=None: MaxPoolStrideIgnored(), POOL, {},
     (2, 3, 4, 6), "forward", ("ignores its stride",)),
    ("batch norm backward without the mean's path", BatchNormNoMeanPath, BN, BN_NAMES, (4, 3, 3, 2), "backward",
     ("misses the path through the mean",)),
    ("batch norm with eps 1e-3", BatchNormWrongEps, BN, BN_NAMES, (4, 3, 3, 2), "forward",
     ("the forward matches the reference with eps=0.001 (declared 1e-05): declare BatchNorm2d(",)),
    ("layer norm backward without the variance's path", LayerNormNoVariancePath, LN, LN_NAMES, (3, 4, 5), "backward",
     ("misses the path through the variance",)),
    ("layer norm backward with constant statistics", LayerNormConstantStats, LN, LN_NAMES, (3, 4, 5), "backward",
     ("misses both the mean's and the variance's paths",)),
    ("layer norm without eps", LayerNormNoEps, LN, LN_NAMES, (3, 4, 5), "forward",
     ("the forward matches the reference with no eps (declared 1e-05)",)),
]

LAYERS_ACCEPT: dict[str, tuple[str, ...]] = {
    "dense bias grad not summed over the batch": ("only the first sample of the batch (1 of 5)",),
    "dense weight grad averaged over the batch": ("1/the batch size 5",),
    "dense input grad sign flipped": ("wrong sign",),
    "dense weight grad 0.5% off": ("off by a constant factor 1.005",),
    "dense forward forgets the bias": ("leaves out the bias",),
    "dense wrong forward, consistent backward": (),
    "dropout backward scales its upstream gradient in place": ("backward writes into its upstream gradient",),
    "relu backward zeroes its cached input": ("backward writes into the input array its forward was given",),
    "relu forward writes into its input": ("forward writes into its input array",),
    "dense backward applies an undeclared SGD step": ("backward changes parameter 'weight'",),
    "dense forward forgets the bias, backward crashes": (),  # the message says both sides; no diagnosis line
    "conv dx with a flipped kernel": ("kernel not rotated 180 degrees",),
    "conv stride ignored in dW": ("the backward ignores the stride",),
    "conv padding crop off by one": ("shifted by one row up and one column left", "the backward ignores the padding"),
    "relu mask taken from the gradient": ("mask taken from the upstream gradient",),
    "batch norm backward with constant statistics": ("misses both the mean's and the variance's paths",),
    "flatten backward does not undo the HWC transpose": ("laid out as (N, H, W, C) and reshaped as (N, C, H, W)",),
    "sigmoid derivative of the input, not the output": ("evaluated at the input x instead of the output y",),
    "tanh derivative missing the square": ("the square missing from the derivative 1-y^2",),
    "leaky relu backward with slope 0": ("the negative slope dropped",),
    "avg pool backward not divided by the window": ("the window size 4",),
    "softmax backward with the Jacobian's diagonal only": (
        "only the diagonal y(1-y) of the softmax Jacobian",),
    "global avg pool backward not divided by H*W": ("(= the number of pixels H*W 20",),
    "batch norm backward missing the variance term": ("misses the path through the variance",),
    "conv bias grad not summed over H, W": ("only the first window (output position (0, 0))",),
    "dense backward uses the first forward's input": ("stale cache",),
    "relu backward uses the first forward's mask": ("stale cache",),
    "dense forward not deterministic": ("not deterministic",),
    "conv dW accumulates across backward calls": ("doubled on a second backward call",),
    "conv bias added twice, consistently": ("adds the bias twice", "bias: off by a constant factor 2"),
    "affine pair: bias grad averaged": ("1/the batch size 4",),
    "affine pair: dx with w, not w.T (square w)": ("weight not transposed",),
    "relu pair: backward without the mask": ("passed through unchanged",),
    "max pool pair: overlapping windows assigned, not added": ("only where pooling windows overlap",),
    "affine pair: dw transposed (square w)": ("transposed: the user's value equals the reference transposed",),
    "dense sgd step with the weight update averaged over the batch": ("1/the batch size 5",),
}
