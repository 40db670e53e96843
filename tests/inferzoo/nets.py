"""Small networks as people write them: a LeNet with one attribute per layer and its own
forward/backward, a ``self.layers`` list run in a loop, residual blocks (identity shortcut;
1x1 strided projection shortcut), a Keras-like NHWC model, an MLP applying ``np.maximum``
inline between its Dense objects."""

from __future__ import annotations

import numpy as np

from harness import spec as S
from harness.adapters.layouts import Layout

from .activations import ReLU, Relu
from .conv import Conv2DNHWC, ConvLayer, Convolution
from .conv2 import GroupConv
from .dense import FullyConnected
from .entry import Entry, rng_normal
from .norm import BN
from .pooling import Flatten, MaxPool, MaxPool2D, MaxPoolingNHWC


class Dense:
    """W (in, out), y = x W + b; dW / db kept."""

    def __init__(self, n_in, n_out, seed=0, dtype=np.float64):
        self.W = rng_normal(seed, (n_in, n_out), 1 / np.sqrt(n_in), dtype)
        self.b = rng_normal(seed + 1, (n_out,), 0.1, dtype)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW, self.db = self.x.T @ dy, dy.sum(axis=0)
        return dy @ self.W.T


class LeNet:
    """(N, 1, 12, 12) -> 3 scores; one attribute per layer."""

    def __init__(self, seed=0, dtype=np.float64):
        self.conv1 = ConvLayer(1, 4, k=3, stride=1, pad=0, seed=seed, dtype=dtype)
        self.relu1, self.pool1 = ReLU(), MaxPool()
        self.conv2 = GroupConv(4, 6, k=2, groups=1, seed=seed + 2, dtype=dtype)
        self.relu2, self.pool2, self.flatten = Relu(), MaxPool(), Flatten()
        self.fc1, self.relu3 = FullyConnected(24, 10, seed=seed + 4, dtype=dtype), ReLU()
        self.fc2 = FullyConnected(10, 3, seed=seed + 6, dtype=dtype)

    def forward(self, x):
        x = self.pool1.forward(self.relu1.forward(self.conv1.forward(x)))
        x = self.pool2.forward(self.relu2.forward(self.conv2.forward(x)))
        return self.fc2.forward(self.relu3.forward(self.fc1.forward(self.flatten.forward(x))))

    def backward(self, d):
        d = self.flatten.backward(self.fc1.backward(self.relu3.backward(self.fc2.backward(d))))
        d = self.conv2.backward(self.relu2.backward(self.pool2.backward(d)))
        return self.conv1.backward(self.relu1.backward(self.pool1.backward(d)))


LENET_NAMES = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1", "relu3", "fc2"]
LENET = S.Sequential(
    [
        S.Conv2d("conv1", 1, 4, 3),
        S.ReLU("relu1"),
        S.MaxPool2d("pool1", 2),
        S.Conv2d("conv2", 4, 6, 2),
        S.ReLU("relu2"),
        S.MaxPool2d("pool2", 2),
        S.Flatten("flatten"),
        S.Linear("fc1", 24, 10),
        S.ReLU("relu3"),
        S.Linear("fc2", 10, 3),
    ]
)


class Model:
    """A layers list run in a loop (forward in order, backward reversed)."""

    def __init__(self, seed=0, dtype=np.float64):
        self.layers = [
            Convolution(2, 3, 3, seed=seed, dtype=dtype),
            ReLU(),
            MaxPool2D(3, 2),
            Flatten(),
            Dense(27, 4, seed=seed + 2, dtype=dtype),
        ]

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad):
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad


LIST_NET = S.Sequential(
    [
        S.Conv2d("conv", 2, 3, 3, padding=1),
        S.ReLU("relu"),
        S.MaxPool2d("pool", 3, stride=2),
        S.Flatten("flat"),
        S.Linear("fc", 27, 4),
    ]
)


class ResidualBlock:
    """relu(bn2(conv2(relu1(bn1(conv1(x))))) + x), 3x3 'same' convs, eps 1e-3."""

    def __init__(self, c=3, seed=0, dtype=np.float64):
        self.conv1, self.bn1, self.relu1 = Convolution(c, c, 3, seed=seed, dtype=dtype), BN(c, seed + 2, dtype), ReLU()
        self.conv2, self.bn2 = Convolution(c, c, 3, seed=seed + 4, dtype=dtype), BN(c, seed + 6, dtype)
        self.relu = ReLU()

    def forward(self, x):
        out = self.relu1.forward(self.bn1.forward(self.conv1.forward(x)))
        out = self.bn2.forward(self.conv2.forward(out))
        return self.relu.forward(out + x)

    def backward(self, dy):
        d = self.relu.backward(dy)
        db = self.conv1.backward(self.bn1.backward(self.relu1.backward(self.conv2.backward(self.bn2.backward(d)))))
        return db + d


RES_ID = S.Residual(
    "res",
    [
        S.Conv2d("conv1", 3, 3, 3, padding=1),
        S.BatchNorm2d("bn1", 3, eps=1e-3),
        S.ReLU("relu1"),
        S.Conv2d("conv2", 3, 3, 3, padding=1),
        S.BatchNorm2d("bn2", 3, eps=1e-3),
    ],
    post=[S.ReLU("relu")],
)
_BN_P = {"weight": "parameters['gamma']", "bias": "parameters['beta']"}
_BN_G = {"weight": "gradients['gamma']", "bias": "gradients['beta']"}


class DownBlock:
    """Stride-2 block with a 1x1 strided projection shortcut: relu(conv2(relu(conv1 x)) + proj x)."""

    def __init__(self, cin=2, cout=4, seed=0, dtype=np.float64):
        self.conv1 = ConvLayer(cin, cout, k=3, stride=2, pad=1, seed=seed, dtype=dtype)
        self.act1 = ReLU()
        self.conv2 = Convolution(cout, cout, 3, seed=seed + 2, dtype=dtype)
        self.shortcut = ConvLayer(cin, cout, k=1, stride=2, pad=0, seed=seed + 4, dtype=dtype)
        self.act2 = ReLU()

    def forward(self, x):
        main = self.conv2.forward(self.act1.forward(self.conv1.forward(x)))
        return self.act2.forward(main + self.shortcut.forward(x))

    def backward(self, dout):
        d = self.act2.backward(dout)
        return self.conv1.backward(self.act1.backward(self.conv2.backward(d))) + self.shortcut.backward(d)


DOWN = S.Sequential(
    [
        S.Residual(
            "block",
            [S.Conv2d("conv1", 2, 4, 3, stride=2, padding=1), S.ReLU("act1"), S.Conv2d("conv2", 4, 4, 3, padding=1)],
            shortcut=S.Conv2d("shortcut", 2, 4, 1, stride=2),
            post=[S.ReLU("act2")],
        )
    ]
)


class Sequential:
    """Keras-like: NHWC, HWIO kernels, Dense (in, out) after an NHWC flatten."""

    def __init__(self, seed=0, dtype=np.float64):
        self.layers = [
            Conv2DNHWC(4, 3, 3, seed=seed, dtype=dtype),
            Relu(),
            MaxPoolingNHWC(),
            Flatten(),
            Dense(36, 5, seed=seed + 2, dtype=dtype),
        ]

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, d):
        for layer in self.layers[::-1]:
            d = layer.backward(d)
        return d


KERAS = Layout(data="NHWC", kernel="HWIO", linear="in_out", flatten="HWC")
KERAS_NET = S.Sequential(
    [
        S.Conv2d("conv", 3, 4, 3, padding=1),
        S.ReLU("relu"),
        S.MaxPool2d("pool", 2),
        S.Flatten("flatten"),
        S.Linear("dense", 36, 5),
    ]
)


class MLP:
    """Three Dense objects; the ReLUs are np.maximum inside the network's own passes."""

    def __init__(self, seed=0, dtype=np.float64):
        self.fc1 = Dense(6, 8, seed=seed, dtype=dtype)
        self.fc2 = Dense(8, 8, seed=seed + 2, dtype=dtype)
        self.fc3 = Dense(8, 3, seed=seed + 4, dtype=dtype)

    def forward(self, x):
        self.h1 = np.maximum(self.fc1.forward(x), 0)
        self.h2 = np.maximum(self.fc2.forward(self.h1), 0)
        return self.fc3.forward(self.h2)

    def backward(self, d):
        d = self.fc3.backward(d) * (self.h2 > 0)
        d = self.fc2.backward(d) * (self.h1 > 0)
        return self.fc1.backward(d)


MLP_SPEC = S.Sequential(
    [S.Linear("fc1", 6, 8), S.ReLU("relu1"), S.Linear("fc2", 8, 8), S.ReLU("relu2"), S.Linear("fc3", 8, 3)]
)


def _down_layers(net):
    return {f"block.{n}": getattr(net, n) for n in ("conv1", "act1", "conv2", "shortcut", "act2")}


NETS = [
    Entry(
        "lenet_attributes",
        LeNet,
        (2, 1, 12, 12),
        LENET,
        style="network",
        layers=lambda net: {n: getattr(net, n) for n in LENET_NAMES},
        quirks=("attributes", "own forward/backward", "im2col", "out_in Linear"),
    ),
    Entry(
        "layers_list_loop",
        Model,
        (2, 2, 7, 7),
        LIST_NET,
        {"layout": Layout(linear="in_out")},
        style="network",
        layers=lambda m: dict(zip(["conv", "relu", "pool", "flat", "fc"], m.layers)),
        quirks=("self.layers loop", "overlapping max pool", "W (in, out)"),
    ),
    Entry(
        "residual_identity",
        lambda seed, dtype: ResidualBlock(3, seed, dtype),
        (2, 3, 5, 5),
        RES_ID,
        {
            "params": {f"{b}.{k}": f"{b}.{v}" for b in ("bn1", "bn2") for k, v in _BN_P.items()},
            "grads": {f"{b}.{k}": f"{b}.{v}" for b in ("bn1", "bn2") for k, v in _BN_G.items()},
        },
        style="network",
        quirks=("residual identity", "composite checked as one object", "eps 1e-3"),
    ),
    Entry(
        "residual_projection",
        lambda seed, dtype: DownBlock(2, 4, seed, dtype),
        (2, 2, 6, 6),
        DOWN,
        style="network",
        layers=_down_layers,
        quirks=("1x1 stride-2 projection", "stride 2 pad 1"),
    ),
    Entry(
        "keras_nhwc",
        Sequential,
        (2, 6, 6, 3),
        KERAS_NET,
        {"layout": KERAS},
        style="network",
        layers=lambda m: dict(zip(["conv", "relu", "pool", "flatten", "dense"], m.layers)),
        quirks=("NHWC", "HWIO", "HWC flatten", "W (in, out)"),
    ),
    Entry(
        "mlp_inline_maximum",
        MLP,
        (5, 6),
        MLP_SPEC,
        {"layout": Layout(linear="in_out")},
        style="network",
        layers=lambda m: {"fc1": m.fc1, "fc2": m.fc2, "fc3": m.fc3},
        quirks=("np.maximum inline", "no ReLU objects"),
    ),
]
