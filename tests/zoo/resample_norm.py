"""Upsampling and the other normalisations, handwritten (issue 17): nearest upsampling by
``np.repeat`` and a reshape-sum, bilinear by explicit interpolation matrices or by index
gathers and ``np.add.at``, GroupNorm by ``reshape(N, G, -1)``, RMSNorm; and mutants, each one
realistic mistake. Same tuple layout as :mod:`zoo.layers`; :mod:`zoo.conv_more` adds these
to its ``CORRECT`` / ``MUTANTS``."""

from __future__ import annotations

import numpy as np

from harness import spec as S

# ------------------------------------------------------------------ Upsample: nearest and bilinear


class NearestUpsample:
    """``np.repeat`` along H and W; the backward sums each s x s block by a reshape."""

    def __init__(self, scale=2):
        self.s = scale

    def forward(self, x):
        self.shape = x.shape
        return x.repeat(self.s, axis=2).repeat(self.s, axis=3)

    def backward(self, dout):
        n, c, h, w = self.shape
        return dout.reshape(n, c, h, self.s, w, self.s).sum(axis=(3, 5))


class NearestUpsampleAverages(NearestUpsample):
    """The backward averages each block's gradients (the mean of the copies, not their sum)."""

    def backward(self, dout):
        n, c, h, w = self.shape
        return dout.reshape(n, c, h, self.s, w, self.s).mean(axis=(3, 5))


class NearestUpsampleTakesOne(NearestUpsample):
    """The backward keeps one element of each block (a strided slice) instead of summing."""

    def backward(self, dout):
        return dout[:, :, :: self.s, :: self.s]


def _weights(size: int, scale: int, align_corners: bool) -> np.ndarray:
    """``A (size*scale, size)``: row ``o`` holds the bilinear weights of output ``o`` on the inputs."""
    out = size * scale
    A = np.zeros((out, size))
    for o in range(out):
        if align_corners:
            src = o * (size - 1) / (out - 1) if out > 1 else 0.0
        else:
            src = max((o + 0.5) / scale - 0.5, 0.0)
        i0 = min(int(np.floor(src)), size - 1)
        i1 = min(i0 + 1, size - 1)
        lam = src - i0
        A[o, i0] += 1 - lam
        A[o, i1] += lam
    return A


class BilinearUpsample:
    """Bilinear upsampling as two interpolation matrices: ``y = A_h x A_w^T``."""

    def __init__(self, scale=2, align_corners=False):
        self.s, self.align_corners = scale, align_corners

    def forward(self, x):
        self.A_h = _weights(x.shape[2], self.s, self._forward_corners()).astype(x.dtype)
        self.A_w = _weights(x.shape[3], self.s, self._forward_corners()).astype(x.dtype)
        return np.einsum("oh,nchw,pw->ncop", self.A_h, x, self.A_w)

    def backward(self, dout):
        A_h = _weights(self.A_h.shape[1], self.s, self.align_corners).astype(dout.dtype)
        A_w = _weights(self.A_w.shape[1], self.s, self.align_corners).astype(dout.dtype)
        return np.einsum("oh,ncop,pw->nchw", A_h, dout, A_w)

    def _forward_corners(self):
        return self.align_corners


class BilinearForwardCornersMismatch(BilinearUpsample):
    """The forward interpolates with the other corner rule than the backward differentiates."""

    def _forward_corners(self):
        return not self.align_corners


class BilinearGather:
    """Bilinear upsampling by index gathers along each axis; the backward scatters with np.add.at."""

    def __init__(self, scale=3, align_corners=True):
        self.s, self.align_corners = scale, align_corners

    def _taps(self, size):
        out = size * self.s
        o = np.arange(out)
        if self.align_corners:
            src = o * ((size - 1) / (out - 1)) if out > 1 else np.zeros(out)
        else:
            src = np.maximum((o + 0.5) / self.s - 0.5, 0)
        i0 = np.minimum(src.astype(int), size - 1)
        return i0, np.minimum(i0 + 1, size - 1), src - i0

    def forward(self, x):
        self.shape = x.shape
        self.rows, self.cols = self._taps(x.shape[2]), self._taps(x.shape[3])
        (r0, r1, a), (c0, c1, b) = self.rows, self.cols
        t = x[:, :, r0, :] * (1 - a)[:, None] + x[:, :, r1, :] * a[:, None]
        return t[:, :, :, c0] * (1 - b) + t[:, :, :, c1] * b

    def backward(self, dout):
        (r0, r1, a), (c0, c1, b) = self.rows, self.cols
        n, c, _, w = self.shape
        dt = np.zeros((n, c, dout.shape[2], w), dtype=dout.dtype)
        np.add.at(dt, (slice(None), slice(None), slice(None), c0), dout * (1 - b))
        np.add.at(dt, (slice(None), slice(None), slice(None), c1), dout * b)
        dx = np.zeros(self.shape, dtype=dout.dtype)
        np.add.at(dx, (slice(None), slice(None), r0), dt * (1 - a)[:, None])
        np.add.at(dx, (slice(None), slice(None), r1), dt * a[:, None])
        return dx


# ------------------------------------------------------------------ GroupNorm and RMSNorm


class GroupNorm:
    """``x.reshape(N, G, -1)``: statistics per sample and group; gamma, beta per channel."""

    def __init__(self, groups=2, channels=6, eps=1e-5, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.gamma = (1 + 0.3 * rng.normal(size=channels)).astype(dtype)
        self.beta = (0.3 * rng.normal(size=channels)).astype(dtype)
        self.G, self.eps = groups, eps

    def _axes(self, x):
        return x.reshape(x.shape[0], self.G, -1), 2

    def forward(self, x):
        self.x_shape = x.shape
        xg, axis = self._axes(x)
        mean = xg.mean(axis=axis, keepdims=True)
        var = xg.var(axis=axis, keepdims=True)
        self.inv = 1 / np.sqrt(var + self.eps)
        self.xhat = ((xg - mean) * self.inv).reshape(x.shape)
        bshape = (1, -1) + (1,) * (x.ndim - 2)
        return self.xhat * self.gamma.reshape(bshape) + self.beta.reshape(bshape)

    def backward(self, dout):
        bshape = (1, -1) + (1,) * (dout.ndim - 2)
        axes = (0, *range(2, dout.ndim))
        self.dgamma = (dout * self.xhat).sum(axis=axes)
        self.dbeta = dout.sum(axis=axes)
        n = dout.shape[0]
        dxhat = (dout * self.gamma.reshape(bshape)).reshape(n, self.G, -1)
        xhat = self.xhat.reshape(n, self.G, -1)
        m = xhat.shape[2]
        dx = self.inv / m * (m * dxhat - self._mean_term(dxhat) - xhat * (dxhat * xhat).sum(axis=2, keepdims=True))
        return dx.reshape(self.x_shape)

    def _mean_term(self, dxhat):
        return dxhat.sum(axis=2, keepdims=True)


class GroupNormWrongAxes(GroupNorm):
    """Groups taken as interleaved channels: ``reshape(N, -1, G)`` over channels-then-positions
    mixes the groups (statistics over the wrong axes)."""

    def _axes(self, x):
        return x.reshape(x.shape[0], -1, self.G), 1

    def backward(self, dout):  # the same mistake in the backward: consistent with its forward
        n = dout.shape[0]
        bshape = (1, -1) + (1,) * (dout.ndim - 2)
        axes = (0, *range(2, dout.ndim))
        self.dgamma, self.dbeta = (dout * self.xhat).sum(axis=axes), dout.sum(axis=axes)
        dxhat = (dout * self.gamma.reshape(bshape)).reshape(n, -1, self.G)
        xhat = self.xhat.reshape(n, -1, self.G)
        m = xhat.shape[1]
        dx = (
            self.inv
            / m
            * (m * dxhat - dxhat.sum(axis=1, keepdims=True) - xhat * (dxhat * xhat).sum(axis=1, keepdims=True))
        )
        return dx.reshape(self.x_shape)


class GroupNormGammaGradAveraged(GroupNorm):
    """dgamma and dbeta averaged over the batch (a mean loss folded into the layer)."""

    def backward(self, dout):
        dx = super().backward(dout)
        self.dgamma, self.dbeta = self.dgamma / dout.shape[0], self.dbeta / dout.shape[0]
        return dx


class GroupNormPerChannel(GroupNorm):
    """Statistics over the positions of each channel (``mean(axis=(2, 3))``), the groups forgotten."""

    def _axes(self, x):
        return x.reshape(x.shape[0], x.shape[1], -1), 2

    def backward(self, dout):
        g = self.G
        self.G = dout.shape[1]  # the backward of what the forward computed: consistent with it
        try:
            return super().backward(dout)
        finally:
            self.G = g


class GroupNormNoMeanTerm(GroupNorm):
    """The backward treats the group mean as a constant: the ``- sum(dxhat)`` term is missing."""

    def _mean_term(self, dxhat):
        return 0.0


class RMSNorm:
    """``y = x / sqrt(mean(x**2) + eps) * weight`` over the last axis."""

    def __init__(self, dim=8, eps=1e-6, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.weight = (1 + 0.3 * rng.normal(size=dim)).astype(dtype)
        self.eps = eps

    def forward(self, x):
        self.rms = np.sqrt((x * x).mean(axis=-1, keepdims=True) + self.eps)
        self.xhat = x / self.rms
        return self.xhat * self.weight

    def backward(self, dout):
        self.dweight = (dout * self.xhat).reshape(-1, dout.shape[-1]).sum(axis=0)
        dxhat = dout * self.weight
        return (dxhat - self._norm_term(dxhat)) / self.rms

    def _norm_term(self, dxhat):
        return self.xhat * (dxhat * self.xhat).mean(axis=-1, keepdims=True)


class RMSNormNoNormTerm(RMSNorm):
    """The backward divides by the RMS as if it were a constant: the term through it is missing."""

    def _norm_term(self, dxhat):
        return 0.0


GN = S.GroupNorm("gn", 2, 6)
RMS = S.RMSNorm("rms", 8)
GN_NAMES = {"params": {"weight": "gamma", "bias": "beta"}}

CORRECT = [
    ("nearest upsample", NearestUpsample, S.Upsample("up", 2), {}, (2, 3, 4, 3)),
    ("bilinear upsample", BilinearUpsample, S.Upsample("up", 2, "bilinear"), {}, (2, 2, 4, 3)),
    (
        "bilinear upsample aligned corners",
        lambda: BilinearUpsample(align_corners=True),
        S.Upsample("up", 2, "bilinear", align_corners=True),
        {},
        (2, 2, 3, 4),
    ),
    ("bilinear gather x3", BilinearGather, S.Upsample("up", 3, "bilinear", align_corners=True), {}, (1, 2, 3, 4)),
    (
        "bilinear gather x3 half pixel",
        lambda: BilinearGather(align_corners=False),
        S.Upsample("up", 3, "bilinear"),
        {},
        (1, 2, 4, 3),
    ),
    ("groupnorm", GroupNorm, GN, GN_NAMES, (2, 6, 3, 4)),
    ("rmsnorm", RMSNorm, RMS, {}, (3, 4, 8)),
]

MUTANTS = [
    (
        "nearest upsample backward takes one element",
        NearestUpsampleTakesOne,
        S.Upsample("up", 2),
        {},
        (2, 3, 4, 3),
        "backward",
        "the upstream gradient of one copy of each pixel",
    ),
    (
        "nearest upsample backward averages the copies",
        NearestUpsampleAverages,
        S.Upsample("up", 2),
        {},
        (2, 3, 4, 3),
        "backward",
        "1/the number of copies of each pixel 4",
    ),
    (
        "bilinear forward with the other align_corners",
        BilinearForwardCornersMismatch,
        S.Upsample("up", 2, "bilinear"),
        {},
        (2, 2, 4, 3),
        "forward",
        "align_corners=True",
    ),
    ("groupnorm statistics over the wrong axes", GroupNormWrongAxes, GN, GN_NAMES, (2, 6, 3, 4), "forward", None),
    (
        "groupnorm statistics per channel",
        GroupNormPerChannel,
        GN,
        GN_NAMES,
        (2, 6, 3, 4),
        "forward",
        "normalises over each channel alone (an instance norm): it matches the reference with num_groups=6",
    ),
    (
        "groupnorm backward misses the mean term",
        GroupNormNoMeanTerm,
        GN,
        GN_NAMES,
        (2, 6, 3, 4),
        "backward",
        "path through the mean",
    ),
    (
        "groupnorm parameter grads averaged over the batch",
        GroupNormGammaGradAveraged,
        GN,
        GN_NAMES,
        (2, 6, 3, 4),
        "backward",
        "1/the batch size 2",
    ),
    (
        "groupnorm with eps 1e-3",
        lambda: GroupNorm(eps=1e-3),
        GN,
        GN_NAMES,
        (2, 6, 3, 4),
        "forward",
        "declare GroupNorm('gn', 2, 6, eps=0.001)",
    ),
    (
        "rmsnorm backward misses the normalisation term",
        RMSNormNoNormTerm,
        RMS,
        {},
        (3, 4, 8),
        "backward",
        "normalisation",
    ),
    (
        "rmsnorm with eps 1e-5",
        lambda: RMSNorm(eps=1e-5),
        RMS,
        {},
        (3, 4, 8),
        "forward",
        "declare RMSNorm('rms', (8,), eps=1e-05)",
    ),
]
