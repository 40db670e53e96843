"""A handwritten numpy LeNet, written the way people write one in TensorFlow habits.

Data is NHWC ``(N, H, W, C)``, conv kernels HWIO ``(kh, kw, C_in, C_out)``, dense weights
``(in, out)`` applied as ``x @ W + b``, and the flatten keeps NHWC's H, W, C feature order.
Every layer is an object whose ``forward(x)`` caches what its ``backward(dout)`` needs;
``backward`` returns dx and sets ``self.dW`` / ``self.db``. Nothing here knows about
trigrad: this module is the "user's code" of the bundled example and imports only numpy.

    conv1 (5x5, pad 2) -> relu1 -> pool1 (max 2x2) -> conv2 (5x5) -> relu2 -> pool2
    -> flat -> fc1 -> relu3 -> fc2 (10 classes)
"""

from __future__ import annotations

from typing import Any

import numpy as np


def correlate(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Valid cross-correlation. x: (N, H, W, C_in), w: (kh, kw, C_in, C_out)
    -> (N, H - kh + 1, W - kw + 1, C_out)."""
    kh, kw = w.shape[:2]
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]), np.result_type(x, w))
    for u in range(kh):
        for v in range(kw):
            out += x[:, u : u + oh, v : v + ow] @ w[u, v]
    return out


def kernel_grad(xp: np.ndarray, dout: np.ndarray) -> np.ndarray:
    """d loss / d w of :func:`correlate`. xp: (N, H, W, C_in) (already padded), dout:
    (N, oh, ow, C_out) -> (kh, kw, C_in, C_out)."""
    oh, ow = dout.shape[1:3]
    kh, kw = xp.shape[1] - oh + 1, xp.shape[2] - ow + 1
    dw = np.empty((kh, kw, xp.shape[3], dout.shape[3]), np.result_type(xp, dout))
    for u in range(kh):
        for v in range(kw):
            dw[u, v] = np.tensordot(xp[:, u : u + oh, v : v + ow], dout, axes=([0, 1, 2], [0, 1, 2]))
    return dw


class Conv2D:
    """Stride-1 convolution (cross-correlation, as every framework means it) with zero
    padding ``pad``. x: (N, H, W, C_in) -> (N, H + 2 pad - k + 1, ..., C_out).
    W: (k, k, C_in, C_out) HWIO; b: (C_out,)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        size: int,
        pad: int = 0,
        *,
        rng: np.random.Generator,
        dtype: Any = np.float64,
    ) -> None:
        fan_in = size * size * in_channels
        self.W = (rng.standard_normal((size, size, in_channels, out_channels)) * np.sqrt(2.0 / fan_in)).astype(dtype)
        self.b = (0.1 * rng.standard_normal(out_channels)).astype(dtype)  # nonzero: bias mistakes then show
        self.pad = pad

    def forward(self, x: np.ndarray) -> np.ndarray:
        p = self.pad
        self.xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        return correlate(self.xp, self.W) + self.b

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.dW = kernel_grad(self.xp, dout)
        self.db = dout.sum(axis=(0, 1, 2))
        # dx is the full correlation of dout with the kernel rotated 180 degrees, in and out swapped
        kh, kw = self.W.shape[:2]
        dpad = np.pad(dout, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
        dxp = correlate(dpad, self._dx_kernel())
        p = self.pad
        return dxp[:, p : dxp.shape[1] - p, p : dxp.shape[2] - p]

    def _dx_kernel(self) -> np.ndarray:
        return self.W[::-1, ::-1].transpose(0, 1, 3, 2)


class ReLU:
    """max(x, 0), any shape."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return np.maximum(x, 0)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * (self.x > 0)


class MaxPool2D:
    """Max over 2x2 windows, stride 2. x: (N, H, W, C) with H, W even -> (N, H/2, W/2, C).
    The gradient goes to the first maximum of each window in row-major order (PyTorch's rule
    for ties, which a ReLU before the pool makes common)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        n, h, w, c = self.shape = x.shape
        win = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(n, h // 2, w // 2, c, 4)
        self.arg = win.argmax(axis=-1)  # argmax returns the first maximum
        return win.max(axis=-1)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        n, h, w, c = self.shape
        dwin = (np.arange(4) == self.arg[..., None]) * dout[..., None]  # (N, H/2, W/2, C, 4)
        return self._unwindow(dwin.reshape(n, h // 2, w // 2, c, 2, 2))

    def _unwindow(self, dwin: np.ndarray) -> np.ndarray:
        """(N, H/2, W/2, C, 2, 2) window values -> (N, H, W, C)."""
        return dwin.transpose(0, 1, 4, 2, 5, 3).reshape(self.shape)


class Flatten:
    """(N, H, W, C) -> (N, H*W*C), features in H, W, C order."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout.reshape(self.shape)


class Dense:
    """x: (N, in) -> (N, out) = x @ W + b. W: (in, out); b: (out,)."""

    def __init__(self, n_in: int, n_out: int, *, rng: np.random.Generator, dtype: Any = np.float64) -> None:
        self.W = (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(dtype)
        self.b = (0.1 * rng.standard_normal(n_out)).astype(dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.dW = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return dout @ self.W.T


def softmax_loss(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy. scores: (N, K) logits, y: (N,) integer labels
    -> (loss, dscores (N, K))."""
    n = scores.shape[0]
    shifted = scores - scores.max(axis=1, keepdims=True)  # exp cannot overflow
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(n), y].mean()
    dscores = np.exp(log_probs)
    dscores[np.arange(n), y] -= 1
    dscores /= n
    return float(loss), dscores


CLASSES: dict[str, type] = {
    "conv1": Conv2D,
    "relu1": ReLU,
    "pool1": MaxPool2D,
    "conv2": Conv2D,
    "relu2": ReLU,
    "pool2": MaxPool2D,
    "flat": Flatten,
    "fc1": Dense,
    "relu3": ReLU,
    "fc2": Dense,
}
NAMES = tuple(CLASSES)  # forward order


class LeNet:
    """The network: x (N, size, size, in_channels) -> scores (N, classes).

    ``size``: a multiple of 4, at least 12 (conv2 is 5x5 unpadded on size/2, then pooled).
    ``layers`` replaces the class of some layers by name (``{"fc1": MyDense}``); each takes
    the same constructor arguments, and the parameters come from ``seed`` the same way
    whatever the classes."""

    def __init__(
        self,
        in_channels: int = 3,
        size: int = 16,
        hidden: int = 32,
        classes: int = 10,
        *,
        seed: int = 0,
        dtype: Any = np.float64,
        layers: dict[str, type] | None = None,
    ) -> None:
        if size % 4 or size < 12:
            raise ValueError(f"LeNet: size must be a multiple of 4 and at least 12, got {size}")
        make = {**CLASSES, **(layers or {})}
        rng = np.random.default_rng(seed)
        side = (size // 2 - 4) // 2  # after pool1, conv2 (5x5, no padding) and pool2
        self.conv1 = make["conv1"](in_channels, 6, 5, pad=2, rng=rng, dtype=dtype)
        self.relu1 = make["relu1"]()
        self.pool1 = make["pool1"]()
        self.conv2 = make["conv2"](6, 16, 5, rng=rng, dtype=dtype)
        self.relu2 = make["relu2"]()
        self.pool2 = make["pool2"]()
        self.flat = make["flat"]()
        self.fc1 = make["fc1"](16 * side * side, hidden, rng=rng, dtype=dtype)
        self.relu3 = make["relu3"]()
        self.fc2 = make["fc2"](hidden, classes, rng=rng, dtype=dtype)

    def layers(self) -> dict[str, Any]:
        """``{name: layer}`` in forward order."""
        return {name: getattr(self, name) for name in NAMES}

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self.pool1.forward(self.relu1.forward(self.conv1.forward(x)))
        x = self.pool2.forward(self.relu2.forward(self.conv2.forward(x)))
        x = self.flat.forward(x)
        x = self.relu3.forward(self.fc1.forward(x))
        return self.fc2.forward(x)

    def backward(self, dscores: np.ndarray) -> np.ndarray:
        d = self.fc2.backward(dscores)
        d = self.fc1.backward(self.relu3.backward(d))
        d = self.flat.backward(d)
        d = self.conv2.backward(self.relu2.backward(self.pool2.backward(d)))
        return self.conv1.backward(self.relu1.backward(self.pool1.backward(d)))


__all__ = [
    "CLASSES",
    "NAMES",
    "Conv2D",
    "Dense",
    "Flatten",
    "LeNet",
    "MaxPool2D",
    "ReLU",
    "correlate",
    "kernel_grad",
    "softmax_loss",
]
