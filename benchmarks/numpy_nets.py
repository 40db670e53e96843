"""Handwritten numpy layers and networks: the "user's code" the peer benchmark checks.

Written the way people write them, in PyTorch's conventions so no layout conversion is
involved: data NCHW, conv kernels OIHW ``(out, in, kh, kw)`` (cross-correlation), Linear
weights ``(out, in)`` applied as ``x @ W.T + b``, flatten in C, H, W order. Every layer is
an object whose ``forward(x)`` caches what ``backward(dout)`` needs; ``backward`` returns
dx and sets ``self.dW`` / ``self.db``. Nothing here knows about trigrad or the peers.

Workloads (each a :class:`Workload`: the user's objects plus the spec they implement):

- :func:`conv_layer`: one conv, input (8, 3, 32, 32) -> (8, 16, 16, 16), 3x3, stride 2, pad 1.
- :func:`lenet5`: LeNet-5 as ``reference_models.architectures.lenet5()`` (61,706 parameters;
  tanh, average pooling), input (N, 1, 32, 32) -> (N, 10).
- :func:`resnet`: a ResNet-style network without batch norm (conv-ReLU-conv basic blocks with
  identity or 1x1-conv shortcuts), ~0.9M parameters, input (N, 3, 32, 32) -> (N, 10).
- :func:`linear_layer`: one Linear layer of a given parameter count (the scaling series).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from harness import spec as S

# ---------------------------------------------------------------------------- layers


class Conv2d:
    """Cross-correlation with zero padding, im2col style. x: (N, C, H, W) ->
    (N, O, OH, OW) with OH = (H + 2 pad - k) // stride + 1. W: (O, C, k, k); b: (O,)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0, *, rng: np.random.Generator) -> None:
        self.W = rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))
        self.b = 0.1 * rng.standard_normal(cout)
        self.stride, self.pad = stride, pad

    def forward(self, x: np.ndarray) -> np.ndarray:
        o, c, k, _ = self.W.shape
        s, p = self.stride, self.pad
        self.x_shape = x.shape
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        win = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::s, ::s]  # (N, C, OH, OW, k, k)
        n, _, oh, ow = win.shape[:4]
        self.cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * k * k)
        out = self.cols @ self.W.reshape(o, -1).T + self.b
        return out.reshape(n, oh, ow, o).transpose(0, 3, 1, 2)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        o, c, k, _ = self.W.shape
        s, p = self.stride, self.pad
        n, _, h, w = self.x_shape
        oh, ow = dout.shape[2:]
        d2 = dout.transpose(0, 2, 3, 1).reshape(-1, o)  # (N*OH*OW, O)
        self.dW = (d2.T @ self.cols).reshape(self.W.shape)
        self.db = d2.sum(axis=0)
        dcols = (d2 @ self.W.reshape(o, -1)).reshape(n, oh, ow, c, k, k)
        dxp = np.zeros((n, c, h + 2 * p, w + 2 * p))
        for u in range(k):  # col2im: every kernel tap sends its gradient back to its pixels
            for v in range(k):
                dxp[:, :, u:u + s * oh:s, v:v + s * ow:s] += dcols[:, :, :, :, u, v].transpose(0, 3, 1, 2)
        return dxp[:, :, p:p + h, p:p + w]


class Linear:
    """x: (N, in) -> (N, out) = x @ W.T + b. W: (out, in); b: (out,)."""

    def __init__(self, fin: int, fout: int, *, rng: np.random.Generator) -> None:
        self.W = rng.standard_normal((fout, fin)) * np.sqrt(2.0 / fin)
        self.b = 0.1 * rng.standard_normal(fout)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.W.T + self.b

    def backward(self, dout: np.ndarray) -> np.ndarray:
        self.dW = dout.T @ self.x
        self.db = dout.sum(axis=0)
        return dout @ self.W


class ReLU:
    """max(x, 0), any shape."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return np.maximum(x, 0)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * (self.x > 0)


class Tanh:
    """tanh(x), any shape."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.y = np.tanh(x)
        return self.y

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout * (1 - self.y ** 2)


class AvgPool2:
    """Mean over 2x2 windows, stride 2. x: (N, C, H, W), H and W even -> (N, C, H/2, W/2)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        n, c, h, w = x.shape
        return x.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(dout, 2, axis=2), 2, axis=3) / 4


class GlobalAvgPool:
    """(N, C, H, W) -> (N, C), the mean over H and W."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.shape = x.shape
        return x.mean(axis=(2, 3))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        n, c, h, w = self.shape
        return np.broadcast_to(dout[:, :, None, None] / (h * w), self.shape).copy()


class Flatten:
    """(N, C, H, W) -> (N, C*H*W), features in C, H, W order."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout.reshape(self.shape)


# ---------------------------------------------------------------------------- networks


class SequentialNet:
    """Layers run in order: ``forward(x)`` then ``backward(dout)`` in reverse order."""

    def __init__(self, layers: dict[str, Any]) -> None:
        self.layers = layers

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        return dout


class BasicBlock:
    """relu2(conv2(relu1(conv1(x))) + shortcut(x)); shortcut: identity or a 1x1 conv
    (the block's stride) when the shape changes. (N, cin, H, W) -> (N, cout, H/s, W/s)."""

    def __init__(self, cin: int, cout: int, stride: int, *, rng: np.random.Generator) -> None:
        self.conv1 = Conv2d(cin, cout, 3, stride, 1, rng=rng)
        self.relu1 = ReLU()
        self.conv2 = Conv2d(cout, cout, 3, 1, 1, rng=rng)
        self.down = Conv2d(cin, cout, 1, stride, 0, rng=rng) if stride != 1 or cin != cout else None
        self.relu2 = ReLU()

    def parts(self) -> dict[str, Any]:
        """``{local name: layer}`` in the spec's order (block, shortcut, post)."""
        out = {"conv1": self.conv1, "relu1": self.relu1, "conv2": self.conv2}
        if self.down is not None:
            out["down"] = self.down
        return {**out, "relu2": self.relu2}

    def forward(self, x: np.ndarray) -> np.ndarray:
        main = self.conv2.forward(self.relu1.forward(self.conv1.forward(x)))
        side = self.down.forward(x) if self.down is not None else x
        return self.relu2.forward(main + side)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        d = self.relu2.backward(dout)
        dx = self.conv1.backward(self.relu1.backward(self.conv2.backward(d)))
        return dx + (self.down.backward(d) if self.down is not None else d)


class ResNet:
    """stem conv 3x3 -> ReLU -> basic blocks -> global average pool -> fc.
    x: (N, 3, H, W) -> (N, classes)."""

    def __init__(self, widths: tuple[tuple[int, int], ...], stem: int, classes: int, *, rng: np.random.Generator) -> None:
        self.stem, self.stem_relu = Conv2d(3, stem, 3, 1, 1, rng=rng), ReLU()
        self.blocks: dict[str, BasicBlock] = {}
        c = stem
        for i, (w, s) in enumerate(widths, 1):
            self.blocks[f"b{i}"] = BasicBlock(c, w, s, rng=rng)
            c = w
        self.pool, self.fc = GlobalAvgPool(), Linear(c, classes, rng=rng)

    def layers(self) -> dict[str, Any]:
        """``{spec path: layer}`` in forward order."""
        out: dict[str, Any] = {"conv1": self.stem, "relu": self.stem_relu}
        for name, block in self.blocks.items():
            out.update({f"{name}.{k}": v for k, v in block.parts().items()})
        return {**out, "avgpool": self.pool, "fc": self.fc}

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self.stem_relu.forward(self.stem.forward(x))
        for block in self.blocks.values():
            x = block.forward(x)
        return self.fc.forward(self.pool.forward(x))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        d = self.pool.backward(self.fc.backward(dout))
        for block in reversed(list(self.blocks.values())):
            d = block.backward(d)
        return self.stem.backward(self.stem_relu.backward(d))


# ---------------------------------------------------------------------------- workloads


@dataclass
class Workload:
    """One thing to check: the user's objects and the spec they implement.

    ``layers``: ``{spec path: user layer}`` in forward order (one entry for a single layer);
    ``net``: an object with the network's own ``forward`` / ``backward``, or None for a
    single layer; ``spec``: the spec layer (single layer) or root Sequential (network);
    ``input_shape``: canonical (N, C, H, W) or (N, F).
    """

    name: str
    layers: dict[str, Any]
    spec: S.Layer
    input_shape: tuple[int, ...]
    net: Any = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def is_network(self) -> bool:
        return self.net is not None

    def wrap(self) -> Any:
        """The user's code wrapped for trigrad: a WrappedLayer or a WrappedNetwork (the
        network's own forward/backward)."""
        import harness

        if not self.is_network:
            (obj,) = self.layers.values()
            return harness.wrap_layer(obj, self.spec)
        return harness.wrap_network(self.layers, self.spec, forward=self.net.forward, backward=self.net.backward,
                                    input_shape=self.input_shape)

    def param_count(self) -> int:
        return sum(int(np.prod(p.shape)) for p in S.named_params(self._root(), self.input_shape).values() if p.trainable)

    def _root(self) -> S.Layer:
        return self.spec if self.is_network else S.Sequential([self.spec])


def conv_layer(batch: int = 8, size: int = 32, seed: int = 0) -> Workload:
    """One conv: (batch, 3, size, size) -> (batch, 16, size/2, size/2), 3x3, stride 2, pad 1."""
    rng = np.random.default_rng(seed)
    return Workload("conv", {"conv": Conv2d(3, 16, 3, 2, 1, rng=rng)}, S.Conv2d("conv", 3, 16, 3, stride=2, padding=1),
                    (batch, 3, size, size))


def lenet5(batch: int = 8, seed: int = 0) -> Workload:
    """LeNet-5 with the names of ``reference_models.architectures.lenet5()``: conv1 (1->6,
    5x5) tanh avgpool, conv2 (6->16, 5x5) tanh avgpool, flatten, fc1 400->120, tanh,
    fc2 120->84, tanh, fc3 84->10. Input (batch, 1, 32, 32)."""
    from reference_models.architectures import lenet5 as lenet5_spec

    rng = np.random.default_rng(seed)
    layers = {
        "conv1": Conv2d(1, 6, 5, rng=rng), "act1": Tanh(), "pool1": AvgPool2(),
        "conv2": Conv2d(6, 16, 5, rng=rng), "act2": Tanh(), "pool2": AvgPool2(),
        "flatten": Flatten(),
        "fc1": Linear(400, 120, rng=rng), "act3": Tanh(),
        "fc2": Linear(120, 84, rng=rng), "act4": Tanh(),
        "fc3": Linear(84, 10, rng=rng),
    }
    return Workload("lenet5", layers, lenet5_spec(), (batch, 1, 32, 32), net=SequentialNet(layers))


RESNET_WIDTHS = ((32, 1), (64, 2), (128, 2), (128, 1), (128, 1))  # (channels, stride) per basic block


def resnet_spec(widths: tuple[tuple[int, int], ...] = RESNET_WIDTHS, stem: int = 32, classes: int = 10) -> S.Sequential:
    """The spec of :class:`ResNet`: conv1 -> relu -> b1..bk (Residual: conv1, relu1, conv2;
    shortcut ``down`` 1x1 conv when the shape changes; post relu2) -> avgpool -> fc."""
    layers: list[S.Layer] = [S.Conv2d("conv1", 3, stem, 3, padding=1), S.ReLU("relu")]
    c = stem
    for i, (w, s) in enumerate(widths, 1):
        block = [S.Conv2d("conv1", c, w, 3, stride=s, padding=1), S.ReLU("relu1"), S.Conv2d("conv2", w, w, 3, padding=1)]
        down = S.Conv2d("down", c, w, 1, stride=s) if s != 1 or c != w else None
        layers.append(S.Residual(f"b{i}", block, down, [S.ReLU("relu2")]))
        c = w
    return S.Sequential([*layers, S.GlobalAvgPool2d("avgpool"), S.Linear("fc", c, classes)])


def resnet(batch: int = 4, size: int = 32, seed: int = 0, widths: tuple[tuple[int, int], ...] = RESNET_WIDTHS,
           stem: int = 32) -> Workload:
    """A ResNet-style network without batch norm (~0.9M parameters with the defaults)."""
    rng = np.random.default_rng(seed)
    model = ResNet(widths, stem, 10, rng=rng)
    return Workload("resnet", model.layers(), resnet_spec(widths, stem), (batch, 3, size, size), net=model)


def linear_layer(params: int, batch: int = 8, seed: int = 0) -> Workload:
    """One square Linear layer with about ``params`` parameters: width w = round(sqrt(params)),
    w*w + w parameters, input (batch, w)."""
    w = max(2, int(round(np.sqrt(params))))
    rng = np.random.default_rng(seed)
    return Workload(f"linear-{params:.0e}".replace("+0", ""), {"fc": Linear(w, w, rng=rng)}, S.Linear("fc", w, w),
                    (batch, w))


WORKLOADS: dict[str, Callable[..., Workload]] = {"conv": conv_layer, "lenet5": lenet5, "resnet": resnet}

__all__ = ["WORKLOADS", "Workload", "conv_layer", "lenet5", "linear_layer", "resnet", "resnet_spec"]
