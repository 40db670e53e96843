"""More convolutions: grouped (a loop over groups), depthwise, 1x1 (a matrix product over
channels), a true convolution (the kernel rotated), stride 2 without padding returning
(dx, dW, db), and the entries for both conv modules."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from harness import spec as S
from harness.adapters.layouts import Layout

from .conv import Conv2D, Conv2DNHWC, ConvLayer, Convolution, DepthwiseConv2D, DilatedConv
from .entry import Entry, ctor, rng_normal


class GroupConv:
    """groups=2: each group a plain conv on its slice of channels (sliding_window_view)."""

    def __init__(self, in_ch=4, out_ch=6, k=3, groups=2, seed=0, dtype=np.float64):
        self.weight = rng_normal(seed, (out_ch, in_ch // groups, k, k), 0.3, dtype)
        self.bias = rng_normal(seed + 1, (out_ch,), 0.1, dtype)
        self.groups = groups

    def forward(self, x):
        self.x = x
        k = self.weight.shape[-1]
        win = sliding_window_view(x, (k, k), axis=(2, 3))  # (N, C, OH, OW, k, k)
        cg, fg = x.shape[1] // self.groups, self.weight.shape[0] // self.groups
        outs = []
        for g in range(self.groups):
            outs.append(
                np.einsum("nchwij,fcij->nfhw", win[:, g * cg : (g + 1) * cg], self.weight[g * fg : (g + 1) * fg])
            )
        return np.concatenate(outs, axis=1) + self.bias.reshape(1, -1, 1, 1)

    def backward(self, dy):
        k = self.weight.shape[-1]
        win = sliding_window_view(self.x, (k, k), axis=(2, 3))
        cg, fg = self.x.shape[1] // self.groups, self.weight.shape[0] // self.groups
        self.weight_grad = np.zeros_like(self.weight)
        dx = np.zeros_like(self.x)
        oh, ow = dy.shape[2:]
        for g in range(self.groups):
            dg, wg = dy[:, g * fg : (g + 1) * fg], self.weight[g * fg : (g + 1) * fg]
            self.weight_grad[g * fg : (g + 1) * fg] = np.einsum("nfhw,nchwij->fcij", dg, win[:, g * cg : (g + 1) * cg])
            for i in range(k):
                for j in range(k):
                    dx[:, g * cg : (g + 1) * cg, i : i + oh, j : j + ow] += np.einsum(
                        "nfhw,fc->nchw", dg, wg[:, :, i, j]
                    )
        self.bias_grad = dy.sum(axis=(0, 2, 3))
        return dx


class DepthwiseConv:
    """Depthwise 3x3 with padding 1 (MobileNet style), weight (C, 1, 3, 3)."""

    def __init__(self, channels=3, k=3, seed=0, dtype=np.float64):
        self.w = rng_normal(seed, (channels, 1, k, k), 0.4, dtype)
        self.b = rng_normal(seed + 1, (channels,), 0.1, dtype)

    def forward(self, x):
        k = self.w.shape[-1]
        self.xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        win = sliding_window_view(self.xp, (k, k), axis=(2, 3))
        return np.einsum("nchwij,cij->nchw", win, self.w[:, 0]) + self.b[:, None, None]

    def backward(self, dout):
        k = self.w.shape[-1]
        win = sliding_window_view(self.xp, (k, k), axis=(2, 3))
        self.dw = np.einsum("nchw,nchwij->cij", dout, win)[:, None]
        self.db = dout.sum(axis=(0, 2, 3))
        dxp = np.zeros_like(self.xp)
        h, w = dout.shape[2:]
        for i in range(k):
            for j in range(k):
                dxp[:, :, i : i + h, j : j + w] += dout * self.w[None, :, 0, i, j, None, None]
        return dxp[:, :, 1:-1, 1:-1]


class PointwiseConv:
    """A 1x1 conv: a matrix product over channels (einsum), weight (out, in, 1, 1)."""

    def __init__(self, in_ch=4, out_ch=3, seed=0, dtype=np.float64):
        self.params = {
            "weight": rng_normal(seed, (out_ch, in_ch, 1, 1), 0.5, dtype),
            "bias": rng_normal(seed + 1, (out_ch,), 0.1, dtype),
        }

    def forward(self, x):
        self.x = x
        w = self.params["weight"][:, :, 0, 0]
        return np.einsum("oc,nchw->nohw", w, x) + self.params["bias"][:, None, None]

    def backward(self, g):
        dw = np.einsum("nohw,nchw->oc", g, self.x)[:, :, None, None]
        self.grads = {"weight": dw, "bias": g.sum(axis=(0, 2, 3))}
        return np.einsum("oc,nohw->nchw", self.params["weight"][:, :, 0, 0], g)


class TrueConv:
    """A textbook convolution: the kernel rotated 180 degrees before sliding (flip=True)."""

    def __init__(self, in_ch=2, out_ch=3, k=3, seed=0, dtype=np.float64):
        self.K = rng_normal(seed, (out_ch, in_ch, k, k), 0.3, dtype)
        self.b = rng_normal(seed + 1, (out_ch,), 0.1, dtype)

    def forward(self, x):
        self.x = x
        Kf = self.K[:, :, ::-1, ::-1]
        win = sliding_window_view(x, Kf.shape[2:], axis=(2, 3))
        return np.einsum("nchwij,fcij->nfhw", win, Kf) + self.b[None, :, None, None]

    def backward(self, dout):
        Kf = self.K[:, :, ::-1, ::-1]
        win = sliding_window_view(self.x, Kf.shape[2:], axis=(2, 3))
        self.dK = np.einsum("nfhw,nchwij->fcij", dout, win)[:, :, ::-1, ::-1]
        self.db = dout.sum(axis=(0, 2, 3))
        dx = np.zeros_like(self.x)
        oh, ow = dout.shape[2:]
        for i in range(Kf.shape[2]):
            for j in range(Kf.shape[3]):
                dx[:, :, i : i + oh, j : j + ow] += np.einsum("nfhw,fc->nchw", dout, Kf[:, :, i, j])
        return dx


class StridedConv:
    """Stride 2, no padding, 4x4 kernel; kernel / bias; returns (dx, dW, db)."""

    def __init__(self, in_ch=3, out_ch=2, k=4, stride=2, seed=0, dtype=np.float64):
        self.kernel = rng_normal(seed, (out_ch, in_ch, k, k), 0.25, dtype)
        self.bias = rng_normal(seed + 1, (out_ch,), 0.1, dtype)
        self.stride = stride

    def forward(self, x):
        self.x = x
        s, k = self.stride, self.kernel.shape[-1]
        win = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        self.win = win
        return (
            np.tensordot(win, self.kernel, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2) + self.bias[:, None, None]
        )

    def backward(self, dout):
        s, k = self.stride, self.kernel.shape[-1]
        dW = np.tensordot(dout, self.win, axes=([0, 2, 3], [0, 2, 3]))  # (F, C, k, k)
        dx = np.zeros_like(self.x)
        oh, ow = dout.shape[2:]
        for i in range(k):
            for j in range(k):
                dx[:, :, i : i + s * oh : s, j : j + s * ow : s] += np.einsum(
                    "nfhw,fc->nchw", dout, self.kernel[:, :, i, j]
                )
        return dx, dW, dout.sum(axis=(0, 2, 3))


class TFLiteConv:
    """NHWC data, OHWI filters (TFLite's order), stride 2, 'valid'; gradients in a dict."""

    def __init__(self, cin=3, cout=4, k=3, seed=0, dtype=np.float64):
        self.filters = rng_normal(seed, (cout, k, k, cin), 0.3, dtype)
        self.biases = rng_normal(seed + 1, (cout,), 0.1, dtype)
        self.gradients = {}

    def forward(self, x):
        self.x = x
        k = self.filters.shape[1]
        self.win = sliding_window_view(x, (k, k), axis=(1, 2))[:, ::2, ::2]  # (N, OH, OW, C, k, k)
        return np.einsum("nhwcij,fijc->nhwf", self.win, self.filters) + self.biases

    def backward(self, dy):
        k = self.filters.shape[1]
        self.gradients["filters"] = np.einsum("nhwf,nhwcij->fijc", dy, self.win)
        self.gradients["biases"] = dy.sum(axis=(0, 1, 2))
        dx = np.zeros_like(self.x)
        oh, ow = dy.shape[1:3]
        for i in range(k):
            for j in range(k):
                dx[:, i : i + 2 * oh : 2, j : j + 2 * ow : 2, :] += np.einsum(
                    "nhwf,fc->nhwc", dy, self.filters[:, i, j, :]
                )
        return dx


NHWC_HWIO = Layout(data="NHWC", kernel="HWIO")

CONV = [
    Entry(
        "conv_naive_loops",
        ctor(Conv2D, 2, 3, 3),
        (2, 2, 6, 5),
        S.Conv2d("conv", 2, 3, 3),
        quirks=("batch loop", "pixel loops"),
    ),
    Entry(
        "conv_im2col_stride2_pad1",
        ctor(ConvLayer, 3, 4),
        (2, 3, 7, 7),
        S.Conv2d("conv", 3, 4, 3, stride=2, padding=1),
        quirks=("im2col fancy indexing", "params dict", "grads dict", "bias (F, 1)", "stride 2", "padding 1"),
    ),
    Entry(
        "conv_as_strided_same",
        ctor(Convolution, 2, 4, 3),
        (2, 2, 5, 6),
        S.Conv2d("conv", 2, 4, 3, padding=1),
        quirks=("as_strided", "einsum", "'same' padding", "weights/bias names", "grad_ prefix"),
    ),
    Entry(
        "conv_nhwc_hwio_same5",
        ctor(Conv2DNHWC, 3, 5, 2),
        (2, 6, 6, 2),
        S.Conv2d("conv", 2, 3, 5, padding=2),
        {"layout": NHWC_HWIO},
        quirks=("NHWC", "HWIO", "'same' padding", "tensordot", "kernel_grad suffix"),
    ),
    Entry(
        "conv_dilated2_nobias",
        ctor(DilatedConv, 2, 3),
        (2, 2, 8, 7),
        S.Conv2d("conv", 2, 3, 3, dilation=2, bias=False),
        quirks=("dilation 2", "no bias", "returns (dx, dW)"),
    ),
    Entry(
        "conv_grouped2",
        ctor(GroupConv),
        (2, 4, 6, 6),
        S.Conv2d("conv", 4, 6, 3, groups=2),
        quirks=("groups 2", "sliding_window_view", "weight_grad suffix"),
    ),
    Entry(
        "conv_depthwise",
        ctor(DepthwiseConv),
        (2, 3, 5, 5),
        S.Conv2d("dw", 3, 3, 3, padding=1, groups=3),
        quirks=("depthwise", "padding 1", "lowercase w"),
    ),
    Entry(
        "conv_1x1_einsum",
        ctor(PointwiseConv),
        (2, 4, 3, 5),
        S.Conv2d("pw", 4, 3, 1),
        quirks=("1x1", "params dict", "grads dict built in backward"),
    ),
    Entry(
        "conv_true_flipped",
        ctor(TrueConv),
        (2, 2, 6, 6),
        S.Conv2d("conv", 2, 3, 3),
        {"layout": Layout(flip=True), "params": {"weight": "K"}, "grads": {"weight": "dK"}},
        quirks=("true convolution", "odd name K"),
    ),
    Entry(
        "conv_stride2_k4_returns",
        ctor(StridedConv),
        (2, 3, 8, 9),
        S.Conv2d("conv", 3, 2, 4, stride=2),
        quirks=("stride 2", "kernel 4", "tensordot", "returns (dx, dW, db)"),
    ),
    Entry(
        "conv_nhwc_ohwi_stride2",
        ctor(TFLiteConv),
        (2, 7, 6, 3),
        S.Conv2d("conv", 3, 4, 3, stride=2),
        {
            "layout": Layout(data="NHWC", kernel="OHWI"),
            "params": {"weight": "filters", "bias": "biases"},
            "grads": {"weight": "gradients['filters']", "bias": "gradients['biases']"},
        },
        quirks=("NHWC", "OHWI", "stride 2", "filters/biases names", "gradients dict"),
    ),
    Entry(
        "conv_depthwise_keras_nhwc",
        ctor(DepthwiseConv2D),
        (2, 5, 4, 3),
        S.Conv2d("dw", 3, 3, 3, padding=1, groups=3),
        {
            "layout": Layout(data="NHWC", kernel="HWOI"),
            "params": {"weight": "depthwise_kernel"},
            "grads": {"weight": "depthwise_kernel_grad"},
        },
        quirks=("NHWC", "depthwise kernel (kh, kw, C, 1)", "'same' padding", "broadcast multiply"),
    ),
]
