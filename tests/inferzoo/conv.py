"""Convolutions written the way from-scratch repositories write them: batch loops, im2col
with fancy indexing, as_strided windows, einsum, NHWC/HWIO, stride, padding, 'same',
dilation, groups, depthwise, 1x1, a true convolution, (F, 1) biases, gradients in every
place code keeps them."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .entry import rng_normal


class Conv2D:
    """Naive: loops over the batch and the output pixels. OIHW, stride 1, no padding."""

    def __init__(self, in_ch, out_ch, k, seed=0, dtype=np.float64):
        self.W = rng_normal(seed, (out_ch, in_ch, k, k), 1 / np.sqrt(in_ch * k * k), dtype)
        self.b = rng_normal(seed + 1, (out_ch,), 0.1, dtype)

    def forward(self, x):
        self.x = x
        n, _, h, w = x.shape
        f, _, k, _ = self.W.shape
        out = np.zeros((n, f, h - k + 1, w - k + 1), dtype=x.dtype)
        for i in range(n):
            for r in range(h - k + 1):
                for c in range(w - k + 1):
                    patch = x[i, :, r : r + k, c : c + k]
                    out[i, :, r, c] = np.sum(self.W * patch, axis=(1, 2, 3)) + self.b
        return out

    def backward(self, dout):
        x, k = self.x, self.W.shape[2]
        dx, self.dW = np.zeros_like(x), np.zeros_like(self.W)
        self.db = dout.sum(axis=(0, 2, 3))
        for i in range(x.shape[0]):
            for r in range(dout.shape[2]):
                for c in range(dout.shape[3]):
                    g = dout[i, :, r, c]
                    self.dW += g[:, None, None, None] * x[i, :, r : r + k, c : c + k]
                    dx[i, :, r : r + k, c : c + k] += np.tensordot(g, self.W, axes=1)
        return dx


def _im2col_indices(c, h, w, k, pad, stride):
    """CS231n's index arrays: rows (c, ki, kj), columns (oh, ow)."""
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    i0 = np.tile(np.repeat(np.arange(k), k), c)
    i1 = stride * np.repeat(np.arange(oh), ow)
    j0 = np.tile(np.arange(k), k * c)
    j1 = stride * np.tile(np.arange(ow), oh)
    i, j = i0.reshape(-1, 1) + i1.reshape(1, -1), j0.reshape(-1, 1) + j1.reshape(1, -1)
    kk = np.repeat(np.arange(c), k * k).reshape(-1, 1)
    return kk, i, j, oh, ow


class ConvLayer:
    """im2col with fancy indexing; params / grads dicts; bias (F, 1); stride 2, pad 1."""

    def __init__(self, in_ch, out_ch, k=3, stride=2, pad=1, seed=0, dtype=np.float64):
        self.params = {
            "W": rng_normal(seed, (out_ch, in_ch, k, k), 0.3, dtype),
            "b": rng_normal(seed + 1, (out_ch, 1), 0.1, dtype),
        }
        self.grads = {}
        self.stride, self.pad = stride, pad

    def forward(self, x):
        W, b = self.params["W"], self.params["b"]
        n, c, h, w = x.shape
        f, _, k, _ = W.shape
        self.idx = _im2col_indices(c, h, w, k, self.pad, self.stride)
        kk, i, j, oh, ow = self.idx
        xp = np.pad(x, ((0, 0), (0, 0), (self.pad,) * 2, (self.pad,) * 2))
        cols = xp[:, kk, i, j].transpose(1, 2, 0).reshape(c * k * k, -1)  # (CKK, OH*OW*N)
        self.cache = (x.shape, cols)
        out = W.reshape(f, -1) @ cols + b
        return out.reshape(f, oh, ow, n).transpose(3, 0, 1, 2)

    def backward(self, dout):
        W = self.params["W"]
        (n, c, h, w), cols = self.cache
        f, _, k, _ = W.shape
        kk, i, j, _, _ = self.idx
        d = dout.transpose(1, 2, 3, 0).reshape(f, -1)
        self.grads["W"] = (d @ cols.T).reshape(W.shape)
        self.grads["b"] = d.sum(axis=1, keepdims=True)
        dcols = (W.reshape(f, -1).T @ d).reshape(c * k * k, -1, n).transpose(2, 0, 1)
        p = self.pad
        dxp = np.zeros((n, c, h + 2 * p, w + 2 * p), dtype=dout.dtype)
        np.add.at(dxp, (slice(None), kk, i, j), dcols)
        return dxp[:, :, p : p + h, p : p + w]


class Convolution:
    """as_strided windows, einsum; 'same' padding for an odd kernel; weights / bias names."""

    def __init__(self, in_ch, out_ch, k=3, seed=0, dtype=np.float64):
        self.weights = rng_normal(seed, (out_ch, in_ch, k, k), 0.3, dtype)
        self.bias = rng_normal(seed + 1, (out_ch,), 0.1, dtype)

    @staticmethod
    def _windows(xp, k):
        n, c, h, w = xp.shape
        s = xp.strides
        return as_strided(xp, (n, c, h - k + 1, w - k + 1, k, k), (s[0], s[1], s[2], s[3], s[2], s[3]))

    def forward(self, x):
        k = self.weights.shape[-1]
        p = k // 2
        self.xp = np.ascontiguousarray(np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))))
        out = np.einsum("nchwij,fcij->nfhw", self._windows(self.xp, k), self.weights)
        out += self.bias[None, :, None, None]
        return out

    def backward(self, grad):
        k = self.weights.shape[-1]
        p = k // 2
        self.grad_weights = np.einsum("nchwij,nfhw->fcij", self._windows(self.xp, k), grad)
        self.grad_bias = grad.sum(axis=(0, 2, 3))
        gp = np.pad(grad, ((0, 0), (0, 0), (k - 1, k - 1), (k - 1, k - 1)))
        rot = self.weights[:, :, ::-1, ::-1]
        dxp = np.einsum("nfhwij,fcij->nchw", self._windows(np.ascontiguousarray(gp), k), rot)
        return dxp[:, :, p : dxp.shape[2] - p, p : dxp.shape[3] - p] if p else dxp


class Conv2DNHWC:
    """Keras habits: NHWC data, HWIO kernel, 'same' padding, tensordot per kernel tap."""

    def __init__(self, filters, kernel_size, in_channels, seed=0, dtype=np.float64):
        k = kernel_size
        self.kernel = rng_normal(seed, (k, k, in_channels, filters), 0.3, dtype)
        self.bias = np.zeros(filters, dtype) + rng_normal(seed + 1, (filters,), 0.1, dtype)

    def forward(self, inputs):
        k = self.kernel.shape[0]
        p = (k - 1) // 2
        self.padded = np.pad(inputs, ((0, 0), (p, p), (p, p), (0, 0)))
        n, h, w, _ = inputs.shape
        out = np.zeros((n, h, w, self.kernel.shape[3]), inputs.dtype)
        for u in range(k):
            for v in range(k):
                out += np.tensordot(self.padded[:, u : u + h, v : v + w, :], self.kernel[u, v], axes=([3], [0]))
        return out + self.bias

    def backward(self, grads):
        k = self.kernel.shape[0]
        p = (k - 1) // 2
        _, h, w, _ = grads.shape
        self.kernel_grad = np.zeros_like(self.kernel)
        dpad = np.zeros_like(self.padded)
        for u in range(k):
            for v in range(k):
                self.kernel_grad[u, v] = np.tensordot(
                    self.padded[:, u : u + h, v : v + w, :], grads, axes=([0, 1, 2], [0, 1, 2])
                )
                dpad[:, u : u + h, v : v + w, :] += np.tensordot(grads, self.kernel[u, v], axes=([3], [1]))
        self.bias_grad = grads.sum(axis=(0, 1, 2))
        return dpad[:, p : p + h, p : p + w, :]


class DilatedConv:
    """Dilation 2, no bias, loops over kernel taps; the gradient returned as (dx, dW)."""

    def __init__(self, in_ch, out_ch, k=3, dilation=2, seed=0, dtype=np.float64):
        self.W = rng_normal(seed, (out_ch, in_ch, k, k), 0.3, dtype)
        self.d = dilation

    def forward(self, x):
        self.x = x
        f, _, k, _ = self.W.shape
        span = self.d * (k - 1)
        oh, ow = x.shape[2] - span, x.shape[3] - span
        y = np.zeros((x.shape[0], f, oh, ow), x.dtype)
        for u in range(k):
            for v in range(k):
                tap = x[:, :, u * self.d : u * self.d + oh, v * self.d : v * self.d + ow]
                y += np.einsum("nchw,fc->nfhw", tap, self.W[:, :, u, v])
        return y

    def backward(self, dy):
        x, d = self.x, self.d
        k, oh, ow = self.W.shape[2], dy.shape[2], dy.shape[3]
        dx, dW = np.zeros_like(x), np.zeros_like(self.W)
        for u in range(k):
            for v in range(k):
                tap = x[:, :, u * d : u * d + oh, v * d : v * d + ow]
                dW[:, :, u, v] = np.einsum("nfhw,nchw->fc", dy, tap)
                dx[:, :, u * d : u * d + oh, v * d : v * d + ow] += np.einsum("nfhw,fc->nchw", dy, self.W[:, :, u, v])
        return dx, dW


class DepthwiseConv2D:
    """Keras habits: NHWC, depthwise_kernel (kh, kw, C, 1) (depth multiplier 1), 'same'."""

    def __init__(self, channels=3, k=3, seed=0, dtype=np.float64):
        self.depthwise_kernel = rng_normal(seed, (k, k, channels, 1), 0.4, dtype)
        self.bias = rng_normal(seed + 1, (channels,), 0.1, dtype)

    def forward(self, x):
        k = self.depthwise_kernel.shape[0]
        self.xp = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
        h, w = x.shape[1:3]
        out = np.zeros_like(x)
        for i in range(k):
            for j in range(k):
                out += self.xp[:, i : i + h, j : j + w, :] * self.depthwise_kernel[i, j, :, 0]
        return out + self.bias

    def backward(self, dy):
        k = self.depthwise_kernel.shape[0]
        h, w = dy.shape[1:3]
        self.depthwise_kernel_grad = np.zeros_like(self.depthwise_kernel)
        dxp = np.zeros_like(self.xp)
        for i in range(k):
            for j in range(k):
                self.depthwise_kernel_grad[i, j, :, 0] = (self.xp[:, i : i + h, j : j + w, :] * dy).sum(axis=(0, 1, 2))
                dxp[:, i : i + h, j : j + w, :] += dy * self.depthwise_kernel[i, j, :, 0]
        self.bias_grad = dy.sum(axis=(0, 1, 2))
        return dxp[:, k // 2 : k // 2 + h, k // 2 : k // 2 + w, :]
