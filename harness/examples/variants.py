"""Buggy variants of the example LeNet: each is one realistic mistake, written as a small
override of the correct code in :mod:`harness.examples.lenet`, and says where trigrad
must find it.

Read a bug class next to the class it overrides: the difference is the bug.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .lenet import Conv2D, Dense, Flatten, LeNet, MaxPool2D, ReLU, correlate

# ---------------------------------------------------------------------- the mistakes


class DenseBiasAveraged(Dense):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = super().backward(dout)
        self.db = dout.mean(axis=0)  # the loss is a mean, so "the bias gradient is a mean too"
        return dx


class ConvDxKernelNotRotated(Conv2D):
    def _dx_kernel(self) -> np.ndarray:
        return self.W.transpose(0, 1, 3, 2)  # the 180-degree rotation forgotten


class FlattenBackwardNCHW(Flatten):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        n, h, w, c = self.shape
        return dout.reshape(n, c, h, w).transpose(0, 2, 3, 1)  # a PyTorch habit: as if flattened from NCHW


class ReLUMaskFromGradient(ReLU):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * (dout > 0)  # should be the input's sign: self.x > 0


class TrueConvolution(Conv2D):
    """Rotates the kernel in the forward (a convolution as in signal processing, where the
    framework means cross-correlation) and differentiates that forward faithfully."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        p = self.pad
        self.xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        return correlate(self.xp, self.W[::-1, ::-1]) + self.b

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = super().backward(dout)
        self.dW = self.dW[::-1, ::-1]  # the gradient of the rotated kernel, rotated back
        return dx

    def _dx_kernel(self) -> np.ndarray:
        return self.W.transpose(0, 1, 3, 2)  # rotating the rotated kernel gives W back


class PoolWindowTransposed(MaxPool2D):
    def _unwindow(self, dwin: np.ndarray) -> np.ndarray:
        return dwin.transpose(0, 1, 5, 2, 4, 3).reshape(self.shape)  # window's row and column axes swapped


class ConvGradAccumulates(Conv2D):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        previous = getattr(self, "dW", 0.0)
        dx = super().backward(dout)
        self.dW = previous + self.dW  # gradients summed across calls and never reset (no zero_grad)
        return dx


class LeNetSkipsRelu3Backward(LeNet):
    def backward(self, dscores: np.ndarray) -> np.ndarray:
        d = self.fc2.backward(dscores)
        d = self.fc1.backward(d)  # relu3.backward forgotten (added to forward later)
        d = self.flat.backward(d)
        d = self.conv2.backward(self.relu2.backward(self.pool2.backward(d)))
        return self.conv1.backward(self.relu1.backward(self.pool1.backward(d)))


def softmax_loss_summed_grad(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    n = scores.shape[0]
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(n), y].mean()
    dscores = np.exp(log_probs)
    dscores[np.arange(n), y] -= 1
    return float(loss), dscores  # `dscores /= n` missing, though the loss is a mean


# ---------------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Variant:
    """One bug and what trigrad must say about it.

    name:      short kebab-case id (``build(name)``).
    summary:   one line for a person.
    layer:     the spec layer trigrad must blame first, ``"(network)"`` for a wiring bug
               between layers, ``"(loss)"`` for a bug in the loss.
    side:      the verdict that layer must get: ``"forward"``, ``"backward"`` or ``"both"``.
    diagnosis: a substring of one of trigrad's diagnosis lines for that layer, or ``""``.
    layers / network / loss: how :func:`harness.examples.build` makes it: buggy layer
               classes by spec name, the network class, the loss function.
    """

    name: str
    summary: str
    layer: str
    side: str
    diagnosis: str = ""
    layers: tuple[tuple[str, type], ...] = field(default=(), repr=False)
    network: type[LeNet] = field(default=LeNet, repr=False)
    loss: Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]] | None = field(default=None, repr=False)


_ALL = [
    Variant(
        "fc1-bias-averaged",
        "fc1's bias gradient is averaged over the batch instead of summed",
        "fc1",
        "backward",
        "batch size",
        layers=(("fc1", DenseBiasAveraged),),
    ),
    Variant(
        "conv2-dx-kernel-not-rotated",
        "conv2's input gradient uses the kernel without rotating it 180 degrees",
        "conv2",
        "backward",
        "kernel not rotated",
        layers=(("conv2", ConvDxKernelNotRotated),),
    ),
    Variant(
        "flat-backward-nchw",
        "the flatten's backward unflattens as if the features were C, H, W",
        "flat",
        "backward",
        "laid out as (N, H, W, C)",
        layers=(("flat", FlattenBackwardNCHW),),
    ),
    Variant(
        "relu2-mask-from-gradient",
        "relu2's backward masks by the gradient's sign instead of the input's",
        "relu2",
        "backward",
        "mask taken from the upstream gradient",
        layers=(("relu2", ReLUMaskFromGradient),),
    ),
    Variant(
        "conv1-true-convolution",
        "conv1 convolves (kernel rotated) where cross-correlation is meant; "
        "its backward is that forward's exact gradient",
        "conv1",
        "forward",
        "kernel flipped",
        layers=(("conv1", TrueConvolution),),
    ),
    Variant(
        "pool1-window-transposed",
        "pool1's backward puts each gradient at the max's mirror position in its window (row and column swapped)",
        "pool1",
        "backward",
        "inside each pooling window swapped",
        layers=(("pool1", PoolWindowTransposed),),
    ),
    Variant(
        "conv2-grad-accumulates",
        "conv2's weight gradient adds up over backward calls and is never reset",
        "conv2",
        "backward",
        "accumulate",
        layers=(("conv2", ConvGradAccumulates),),
    ),
    Variant(
        "backward-skips-relu3",
        "the network's backward skips relu3; every layer is right on its own",
        "(network)",
        "backward",
        "relu3",
        network=LeNetSkipsRelu3Backward,
    ),
    Variant(
        "loss-grad-not-averaged",
        "the softmax loss's gradient is not divided by the batch size",
        "(loss)",
        "backward",
        "batch size",
        loss=softmax_loss_summed_grad,
    ),
]

VARIANTS: dict[str, Variant] = {v.name: v for v in _ALL}

__all__ = ["VARIANTS", "Variant"]
