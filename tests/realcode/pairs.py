"""A function pair outside CS231n's conventions: a strided conv through
``sliding_window_view`` and einsum, ``stride`` as a keyword argument, and a backward that
returns its parameter gradients in a dict, ``(dx, {"W": dW, "b": db})``.
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
