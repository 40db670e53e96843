"""The other convolutions, handwritten (issue 17): correct numpy layers written the way
from-scratch code is (loops over output positions and groups, im2col with fancy indexing
and ``np.add.at``, scattering each input pixel's kernel, kernels stored (k, in, out) or
TensorFlow's (kh, kw, out, in)), and mutants, each one realistic mistake; with
:mod:`zoo.resample_norm` (upsampling, GroupNorm, RMSNorm) added, the zoo of issue 17's
convolutions and normalisations. Same tuple layout as :mod:`zoo.layers`: ``CORRECT`` lists
(name, factory, spec, wrap kwargs, input shape); ``MUTANTS`` adds the expected verdict and a
diagnosis fragment (or None). Factories take ``seed`` and ``dtype`` when the layer has
parameters."""

from __future__ import annotations

import numpy as np

from harness import spec as S
from harness.adapters.layer import wrap_functions
from harness.adapters.layouts import Layout

from . import resample_norm


def _rng_params(seed: int, dtype, *shapes: tuple[int, ...], scale: float = 1.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=s) * scale).astype(dtype) for s in shapes]


# ------------------------------------------------------------------ Conv1d: loops over positions


class Conv1D:
    """``W (out, in, k)``, ``b (out,)``; stride and zero padding; a loop over output positions."""

    def __init__(self, cin=3, cout=4, k=3, stride=2, pad=1, seed=0, dtype=np.float64):
        self.W, self.b = _rng_params(seed, dtype, (cout, cin, k), (cout,))
        self.W /= np.sqrt(cin * k)
        self.stride, self.pad = stride, pad

    def forward(self, x):
        self.x = x
        self.xp = self._pad(x)
        k, s = self.W.shape[2], self.stride
        length = (self.xp.shape[2] - k) // s + 1
        out = np.zeros((x.shape[0], self.W.shape[0], length), dtype=x.dtype)
        for i in range(length):
            window = self.xp[:, :, i * s : i * s + k]  # (N, C, k)
            out[:, :, i] = np.tensordot(window, self.W, axes=([1, 2], [1, 2])) + self.b
        return out

    def backward(self, dout):
        k, s = self.W.shape[2], self._dw_stride()
        dxp = np.zeros_like(self.xp)
        self.dW = np.zeros_like(self.W)
        for i in range(dout.shape[2]):
            dxp[:, :, i * s : i * s + k] += np.tensordot(dout[:, :, i], self.W, axes=([1], [0]))
            self.dW += np.tensordot(dout[:, :, i], self.xp[:, :, i * s : i * s + k], axes=([0], [0]))
        self.db = dout.sum(axis=(0, 2))
        return dxp[:, :, self.pad : dxp.shape[2] - self.pad]

    def _pad(self, x):
        return np.pad(x, ((0, 0), (0, 0), (self.pad, self.pad)))

    def _dw_stride(self):
        return self.stride


class Conv1DBackwardIgnoresStride(Conv1D):
    """The backward loop written for stride 1: window i starts at i, not at i * stride."""

    def _dw_stride(self):
        return 1


class Conv1DEdgePadding(Conv1D):
    """Pads by repeating the edge values (``np.pad``'s mode="edge") where zeros are meant."""

    def _pad(self, x):
        return np.pad(x, ((0, 0), (0, 0), (self.pad, self.pad)), mode="edge")


CONV1D = S.Conv1d("conv1d", 3, 4, 3, stride=2, padding=1)


class GroupedConv1D:
    """Grouped 1-D conv: a loop over groups, each a dense conv of its slice of channels
    (``W (out, in/groups, k)``, stride 1, no padding)."""

    def __init__(self, cin=4, cout=4, k=3, groups=2, seed=0, dtype=np.float64):
        self.W, self.b = _rng_params(seed, dtype, (cout, cin // groups, k), (cout,))
        self.W /= np.sqrt(cin // groups * k)
        self.groups = groups

    def forward(self, x):
        self.x = x
        k, gi, go = self.W.shape[2], x.shape[1] // self.groups, self.W.shape[0] // self.groups
        out = np.zeros((x.shape[0], self.W.shape[0], x.shape[2] - k + 1), dtype=x.dtype)
        for g in range(self.groups):
            xs, ws = x[:, g * gi : (g + 1) * gi], self.W[g * go : (g + 1) * go]
            for i in range(out.shape[2]):
                out[:, g * go : (g + 1) * go, i] = np.tensordot(xs[:, :, i : i + k], ws, axes=([1, 2], [1, 2]))
        return out + self.b[None, :, None]

    def backward(self, dout):
        k, gi, go = self.W.shape[2], self.x.shape[1] // self.groups, self.W.shape[0] // self.groups
        dx, self.dW = np.zeros_like(self.x), np.zeros_like(self.W)
        for g in range(self.groups):
            xs, ws = self.x[:, self._in_offset(g) * gi : (self._in_offset(g) + 1) * gi], self.W[g * go : (g + 1) * go]
            for i in range(dout.shape[2]):
                d = dout[:, g * go : (g + 1) * go, i]  # (N, go)
                dx[:, g * gi : (g + 1) * gi, i : i + k] += np.tensordot(d, ws, axes=([1], [0]))
                self.dW[g * go : (g + 1) * go] += np.tensordot(d, xs[:, :, i : i + k], axes=([0], [0]))
        self.db = dout.sum(axis=(0, 2))
        return dx

    def _in_offset(self, g):
        return g


class GroupedConv1DWeightGradFromGroup0(GroupedConv1D):
    """The weight gradient of every group reads the first group's input channels (the
    group offset forgotten in that slice)."""

    def _in_offset(self, g):
        return 0


CONV1D_GROUPED = S.Conv1d("conv1d", 4, 4, 3, groups=2)


# ------------------------------------------------------------------ Conv1d: im2col function pair


def _cols(length: int, k: int, stride: int) -> np.ndarray:
    """``idx[j, t]``: the padded-input position of tap ``t`` of output window ``j``."""
    out = (length - k) // stride + 1
    return (np.arange(out) * stride)[:, None] + np.arange(k)[None, :]


def conv1d_forward(x, w, b, conv_param):
    """CS231n style: x (N, C, L), w (F, C, k), b (F,); conv_param {'stride', 'pad'}."""
    stride, pad = conv_param["stride"], conv_param["pad"]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad)))
    idx = _cols(xp.shape[2], w.shape[2], stride)
    cols = xp[:, :, idx]  # (N, C, L', k)
    out = np.einsum("nclk,fck->nfl", cols, w) + b[None, :, None]
    return out, (x, w, conv_param, cols, idx)


def conv1d_backward(dout, cache):
    x, w, conv_param, cols, idx = cache
    pad = conv_param["pad"]
    dw = np.einsum("nfl,nclk->fck", dout, cols)
    db = dout.sum(axis=(0, 2))
    dcols = np.einsum("nfl,fck->nclk", dout, w)
    dxp = np.zeros((x.shape[0], x.shape[1], x.shape[2] + 2 * pad), dtype=x.dtype)
    np.add.at(dxp, (slice(None), slice(None), idx), dcols)  # overlapping windows add up
    return dxp[:, :, pad : pad + x.shape[2]], dw, db


def conv1d_backward_overwrites(dout, cache):
    """The fancy-indexing bug: ``dxp[:, :, idx] += dcols`` keeps one window's share where
    windows overlap (numpy does not accumulate repeated indices)."""
    x, w, conv_param, cols, idx = cache
    pad = conv_param["pad"]
    dxp = np.zeros((x.shape[0], x.shape[1], x.shape[2] + 2 * pad), dtype=x.dtype)
    dxp[:, :, idx] += np.einsum("nfl,fck->nclk", dout, w)
    return dxp[:, :, pad : pad + x.shape[2]], np.einsum("nfl,nclk->fck", dout, cols), dout.sum(axis=(0, 2))


CONV1D_PAIR = S.Conv1d("conv1d", 2, 3, 4, padding=1)


def conv1d_pair(seed=0, dtype=np.float64, backward=conv1d_backward):
    w, b = _rng_params(seed, dtype, (3, 2, 4), (3,))
    w /= np.sqrt(8)  # in place: a float64 scalar would make a new array float64
    return wrap_functions(conv1d_forward, backward, CONV1D_PAIR, [w, b], args=({"stride": 1, "pad": 1},))


def conv1d_pair_overwrites(seed=0, dtype=np.float64):
    return conv1d_pair(seed, dtype, conv1d_backward_overwrites)


# ------------------------------------------------------------------ ConvTranspose2d: scatter each pixel's kernel


class ConvTranspose:
    """``W (in, out, k, k)`` as PyTorch stores it; every input pixel adds ``x[n, c, i, j] * W[c]``
    into the output at ``(i*s, j*s)``; ``pad`` rows cut from each side, ``out_pad`` kept at the
    bottom/right. The backward reads the same windows back."""

    def __init__(self, cin=2, cout=3, k=3, stride=2, pad=1, out_pad=1, seed=0, dtype=np.float64):
        self.W, self.b = _rng_params(seed, dtype, (cin, cout, k, k), (cout,))
        self.W /= np.sqrt(cout * k * k)
        self.s, self.p, self.op = stride, pad, out_pad

    def _full(self, h, w):
        k = self.W.shape[2]
        return (h - 1) * self.s + k + self.op, (w - 1) * self.s + k + self.op

    def forward(self, x):
        self.x = x
        n, _, h, w = x.shape
        k, s, p = self.W.shape[2], self.s, self.p
        full = np.zeros((n, self.W.shape[1], *self._full(h, w)), dtype=x.dtype)
        for i in range(h):
            for j in range(w):
                full[:, :, i * s : i * s + k, j * s : j * s + k] += np.tensordot(x[:, :, i, j], self.W, axes=1)
        out = full[:, :, p : full.shape[2] - p, p : full.shape[3] - p]
        return out + self.b[None, :, None, None]

    def backward(self, dout):
        n, _, h, w = self.x.shape
        k, s, p = self.W.shape[2], self.s, self.p
        dfull = np.zeros((n, dout.shape[1], *self._full(h, w)), dtype=dout.dtype)
        dfull[:, :, p : dfull.shape[2] - p, p : dfull.shape[3] - p] = dout
        kernel = self._dx_kernel()
        dx = np.zeros_like(self.x)
        self.dW = np.zeros_like(self.W)
        for i in range(h):
            for j in range(w):
                patch = dfull[:, :, i * s : i * s + k, j * s : j * s + k]  # (N, out, k, k)
                dx[:, :, i, j] = np.tensordot(patch, kernel, axes=([1, 2, 3], [1, 2, 3]))
                self.dW += np.tensordot(self.x[:, :, i, j], patch, axes=([0], [0]))
        self.db = dout.sum(axis=(0, 2, 3))
        return dx

    def _dx_kernel(self):
        return self.W


class ConvTransposeDxUnflipped(ConvTranspose):
    """The input gradient as "a convolution with the kernel flipped", the flip applied
    where the scatter's own windows need the kernel as it is."""

    def _dx_kernel(self):
        return self.W[:, :, ::-1, ::-1]


CONV_T = S.ConvTranspose2d("deconv", 2, 3, 3, stride=2, padding=1, output_padding=1)


# ------------------------------------------------------------------ kernels stored in other orders


class Conv1DKIO:
    """numpy-ml / TensorFlow's Conv1D kernel ``W (k, in, out)`` on ``(N, C, L)`` data, patches
    stacked by a list comprehension, the input gradient added back window by window."""

    def __init__(self, cin=3, cout=4, k=3, seed=0, dtype=np.float64):
        self.W, self.b = _rng_params(seed, dtype, (k, cin, cout), (cout,))
        self.W /= np.sqrt(cin * k)

    def forward(self, x):
        self.x = x
        k = self.W.shape[0]
        self.cols = np.stack([x[:, :, i : i + k] for i in range(x.shape[2] - k + 1)], axis=1)  # (N, L', C, k)
        return np.einsum("nlck,kco->nol", self.cols, self.W) + self.b[None, :, None]

    def backward(self, dout):
        k = self.W.shape[0]
        self.dW = np.einsum("nol,nlck->kco", dout, self.cols)
        self.db = dout.sum(axis=(0, 2))
        dcols = np.einsum("nol,kco->nlck", dout, self.W)
        dx = np.zeros_like(self.x)
        for i in range(dout.shape[2]):
            dx[:, :, i : i + k] += dcols[:, i]
        return dx


class DeconvHWIO:
    """A transposed conv with TensorFlow's Conv2DTranspose kernel ``W (kh, kw, out, in)``,
    stride 2, no cropping: each input pixel's kernel scattered into the output."""

    def __init__(self, cin=2, cout=3, k=2, seed=0, dtype=np.float64):
        self.W, self.b = _rng_params(seed, dtype, (k, k, cout, cin), (cout,))
        self.W /= np.sqrt(cout * k * k)

    def forward(self, x):
        self.x = x
        n, _, h, w = x.shape
        k = self.W.shape[0]
        out = np.zeros((n, self.W.shape[2], 2 * (h - 1) + k, 2 * (w - 1) + k), dtype=x.dtype)
        for i in range(h):
            for j in range(w):
                out[:, :, 2 * i : 2 * i + k, 2 * j : 2 * j + k] += np.einsum("nc,hwoc->nohw", x[:, :, i, j], self.W)
        return out + self.b[None, :, None, None]

    def backward(self, dout):
        k = self.W.shape[0]
        dx, self.dW = np.zeros_like(self.x), np.zeros_like(self.W)
        for i in range(self.x.shape[2]):
            for j in range(self.x.shape[3]):
                patch = dout[:, :, 2 * i : 2 * i + k, 2 * j : 2 * j + k]
                dx[:, :, i, j] = np.einsum("nohw,hwoc->nc", patch, self.W)
                self.dW += np.einsum("nc,nohw->hwoc", self.x[:, :, i, j], patch)
        self.db = dout.sum(axis=(0, 2, 3))
        return dx


CORRECT = [
    ("conv1d loops", Conv1D, CONV1D, {}, (2, 3, 9)),
    ("conv1d grouped loops", GroupedConv1D, CONV1D_GROUPED, {}, (2, 4, 8)),
    ("conv1d im2col pair", conv1d_pair, CONV1D_PAIR, {}, (2, 2, 7)),
    ("conv transpose scatter", ConvTranspose, CONV_T, {}, (2, 2, 4, 3)),
    (
        "conv1d kernel (k, in, out)",
        Conv1DKIO,
        S.Conv1d("conv1d", 3, 4, 3),
        {"layout": Layout(kernel="HWIO")},
        (2, 3, 8),
    ),
    (
        "conv transpose kernel (kh, kw, out, in)",
        DeconvHWIO,
        S.ConvTranspose2d("deconv", 2, 3, 2, stride=2),
        {"layout": Layout(kernel="HWIO")},
        (2, 2, 3, 4),
    ),
    *resample_norm.CORRECT,
]

MUTANTS = [
    (
        "conv1d backward ignores the stride",
        Conv1DBackwardIgnoresStride,
        CONV1D,
        {},
        (2, 3, 9),
        "backward",
        "ignores the stride",
    ),
    ("conv1d pads with edge values", Conv1DEdgePadding, CONV1D, {}, (2, 3, 9), "both", "only on the border"),
    (
        "grouped conv1d weight grad from group 0's input",
        GroupedConv1DWeightGradFromGroup0,
        CONV1D_GROUPED,
        {},
        (2, 4, 8),
        "backward",
        "only in group(s) 1 of 2",
    ),
    ("conv1d im2col backward overwrites", conv1d_pair_overwrites, CONV1D_PAIR, {}, (2, 2, 7), "backward", None),
    (
        "conv transpose dx with the kernel flipped",
        ConvTransposeDxUnflipped,
        CONV_T,
        {},
        (2, 2, 4, 3),
        "backward",
        "rotated 180",
    ),
    *resample_norm.MUTANTS,
]
