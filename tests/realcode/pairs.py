"""Function pairs outside CS231n's conventions, through ``sliding_window_view`` and einsum:
a strided conv with ``stride`` as a keyword argument whose backward returns its parameter
gradients in a dict, ``(dx, {"W": dW, "b": db})``; a textbook convolution (kernel flipped).
"""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv_forward(x, W, b, stride=1):
    """x (N, C, H, W), W (F, C, kh, kw), b (F,), no padding."""
    kh, kw = W.shape[2:]
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]  # (N, C, Ho, Wo, kh, kw)
    out = np.einsum("nchwij,fcij->nfhw", windows, W) + b[None, :, None, None]
    return out, (x, W, stride, windows)


def _conv_backward(dout, cache, dw_spec):
    x, W, stride, windows = cache
    kh, kw = W.shape[2:]
    dW = np.einsum(dw_spec, windows, dout)
    db = dout.sum(axis=(0, 2, 3))
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            dx[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw] += np.einsum(
                "nf,fcij->ncij", dout[:, :, i, j], W)
    return dx, {"W": dW, "b": db}


def conv_backward(dout, cache):
    return _conv_backward(dout, cache, "nchwij,nfhw->fcij")


def conv_backward_kernel_transposed(dout, cache):
    return _conv_backward(dout, cache, "nchwij,nfhw->fcji")  # bug: kernel rows and columns swapped


CONV_DICT = NS(conv_forward=conv_forward, conv_backward=conv_backward)
CONV_DICT_KERNEL_TRANSPOSED = NS(conv_forward=conv_forward, conv_backward=conv_backward_kernel_transposed)


def conv_forward_true(x, K, b):
    """The textbook convolution (the kernel flipped), no padding, stride 1."""
    windows = sliding_window_view(x, K.shape[2:], axis=(2, 3))
    out = np.einsum("nchwij,fcij->nfhw", windows, K[:, :, ::-1, ::-1]) + b[None, :, None, None]
    return out, (x, K, windows)


def _conv_backward_true(dout, cache, flip_back):
    x, K, windows = cache
    kh, kw = K.shape[2:]
    dK = np.einsum("nchwij,nfhw->fcij", windows, dout)
    dK = dK[:, :, ::-1, ::-1] if flip_back else dK  # bug variant: the gradient of the flipped kernel kept
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            dx[:, :, i:i + kh, j:j + kw] += np.einsum("nf,fcij->ncij", dout[:, :, i, j], K[:, :, ::-1, ::-1])
    return dx, dK, dout.sum(axis=(0, 2, 3))


def conv_backward_true(dout, cache):
    return _conv_backward_true(dout, cache, flip_back=True)


def conv_backward_true_not_flipped_back(dout, cache):
    return _conv_backward_true(dout, cache, flip_back=False)


TRUE_CONV = NS(conv_forward=conv_forward_true, conv_backward=conv_backward_true)
TRUE_CONV_NOT_FLIPPED_BACK = NS(conv_forward=conv_forward_true, conv_backward=conv_backward_true_not_flipped_back)
