"""The user's code the network inference tests use (tests/test_infer_structure.py,
tests/test_infer_network.py): small networks written as people write them, each showing one
thing (an inline op, an inline residual, a shared object, a forward that raises ...), and
the helpers that compare specs names aside and parameters bit for bit. Registers its layer
classes with the stand-in infer_layer (tests/infer_standin.py)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

import harness as tg
from harness.inference.structure import layer_objects
from harness.spec import walk
from infer_standin import register
from realcode import composite, keras_like

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import numpy_nets as nn


def unnamed(spec: Any) -> list[tuple[str, str]]:
    """The spec's layers in walk order, names aside: (kind, hyperparameters)."""
    out = []
    roots = spec.layers if isinstance(spec, tg.Sequential) else (spec,)  # the root's own name aside too
    for _, layer in [pl for root in roots for pl in walk(tg.Sequential([root]))]:
        fields = {k: v for k, v in vars(layer).items() if k not in ("name", "layers", "block", "shortcut", "post")}
        out.append((layer.kind, repr(sorted(fields.items()))))
    return out


def params_of(obj: Any) -> dict[str, np.ndarray]:
    return {
        f"{p}.{k}": v.copy()
        for p, o in layer_objects(obj).items()
        for k, v in vars(o).items()
        if isinstance(v, np.ndarray)
    }


def same_params(before: dict[str, np.ndarray], obj: Any) -> bool:
    after = params_of(obj)
    return before.keys() <= after.keys() and all(
        np.array_equal(v, after[k]) and v.dtype == after[k].dtype for k, v in before.items()
    )


class Dense:  # docs/wrapping/networks.md
    def __init__(self, n_in: int, n_out: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.W, self.b = rng.normal(size=(n_in, n_out)), np.zeros(n_out)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy: np.ndarray) -> np.ndarray:
        self.dW, self.db = self.x.T @ dy, dy.sum(axis=0)
        return dy @ self.W.T


class ReLU:
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x > 0
        return x * self.mask

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy * self.mask


class DocsMLP:  # its backward skips the relu: a wiring bug only the (network) entry sees
    def __init__(self) -> None:
        self.fc1, self.relu, self.fc2 = Dense(4, 8), ReLU(), Dense(8, 3, seed=1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.fc2.forward(self.relu.forward(self.fc1.forward(x)))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.fc1.backward(self.fc2.backward(dy))


class InlineNet:
    """conv, then ReLU and flatten done by the network's own code, then a dense layer."""

    def __init__(self) -> None:
        self.conv, self.fc = composite.Conv(2, 3), composite.Linear(3 * 4 * 4, 5)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.h = self.conv.forward(x)
        self.shape = self.h.shape
        return self.fc.forward(np.maximum(self.h, 0).reshape(len(x), -1))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d = self.fc.backward(dy).reshape(self.shape) * (self.h > 0)
        return self.conv.backward(d)


class InlineResidual:
    """relu(conv2(relu(conv1(x))) + x) written in the network's forward, no block object."""

    def __init__(self) -> None:
        self.conv1, self.relu, self.conv2, self.out = (
            composite.Conv(3, 3, 0),
            composite.ReLU(),
            composite.Conv(3, 3, 1),
            composite.ReLU(),
        )

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.out.forward(self.conv2.forward(self.relu.forward(self.conv1.forward(x))) + x)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        d = self.out.backward(dy)
        return self.conv1.backward(self.relu.backward(self.conv2.backward(d))) + d


class SharedReLU:
    def __init__(self) -> None:
        self.fc1, self.act, self.fc2 = Dense(4, 6), ReLU(), Dense(6, 6, seed=1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.act.forward(self.fc2.forward(self.act.forward(self.fc1.forward(x))))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.fc1.backward(self.act.backward(self.fc2.backward(self.act.backward(dy))))


class Raising(DocsMLP):
    def forward(self, x: np.ndarray) -> np.ndarray:
        self.fc1.W += 1.0  # a write into a parameter, then a crash
        self.fc1.b[0] = 7.0
        self.fc1.forward(x)
        raise RuntimeError("user forward failed")


class Uncopyable(Raising):
    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()  # deepcopy refuses a lock: the network itself runs, then is put back


def xs(seed: int, *shape: int, dtype: Any = np.float64) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def register_numpy_nets() -> None:
    def conv(o: Any, x: Any, name: str) -> tuple:
        co, ci, k, _ = o.W.shape
        return tg.Conv2d(name, ci, co, k, stride=o.stride, padding=o.pad), tg.Layout(), {"weight": "W", "bias": "b"}

    register(nn.Conv2d, conv)
    register(
        nn.Linear,
        lambda o, x, name: (tg.Linear(name, o.W.shape[1], o.W.shape[0]), tg.Layout(), {"weight": "W", "bias": "b"}),
    )
    for cls, kind in ((nn.ReLU, tg.ReLU), (nn.Tanh, tg.Tanh), (nn.Flatten, tg.Flatten)):
        register(cls, lambda o, x, name, kind=kind: (kind(name), None, {}))
    register(nn.AvgPool2, lambda o, x, name: (tg.AvgPool2d(name, 2), tg.Layout(), {}))
    register(nn.GlobalAvgPool, lambda o, x, name: (tg.GlobalAvgPool2d(name), tg.Layout(), {}))


class Scaled:
    def __init__(self) -> None:
        self.fc = Dense(3, 4)
        self.M = np.ones((4, 2))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.fc.forward(x) @ self.M  # arithmetic with its own array: no parameter-free layer


class WithDropout:
    """A layer called with a training flag: the flag goes to its inference as forward_kwargs."""

    def __init__(self) -> None:
        self.fc, self.drop = Dense(4, 5), keras_like.Dropout(0.5)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.drop.forward(self.fc.forward(x), training=True)


class Crossing:
    """Two residual connections that cross: z = h(g(f(x)) + x) + f(x)."""

    def __init__(self) -> None:
        self.f, self.g, self.h = Dense(4, 4), Dense(4, 4, seed=1), Dense(4, 4, seed=2)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x1 = self.f.forward(x)
        return self.h.forward(self.g.forward(x1) + x) + x1


class Slotted:
    __slots__ = ("W",)

    def __init__(self) -> None:
        self.W = np.ones((4, 2))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x @ self.W


class WithSlotted:
    def __init__(self) -> None:
        self.fc, self.odd, self.unused = Dense(3, 4), Slotted(), ReLU()

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.odd.forward(self.fc.forward(x))


class InlineMLP:
    """Two Dense objects, the activation np.maximum in the network's own passes."""

    leak = 0.0

    def __init__(self) -> None:
        self.fc1, self.fc2 = Dense(6, 8), Dense(8, 3, seed=1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        z = self.fc1.forward(x)
        self.z = z
        return self.fc2.forward(np.maximum(z, self.leak * z))

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self.fc1.backward(self.fc2.backward(dy) * (self.z > 0))  # a ReLU's mask


class InlineMLPLeaks(InlineMLP):
    leak = 0.01  # bug: the forward leaks, the backward masks as a ReLU


class BackwardRaises(DocsMLP):
    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise ValueError("not written yet")


class ForwardOnly:
    def __init__(self) -> None:
        self.fc1, self.relu, self.fc2 = Dense(4, 8), ReLU(), Dense(8, 3, seed=1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.fc2.forward(self.relu.forward(self.fc1.forward(x)))


class CallAlias:
    def __init__(self) -> None:
        self.W = np.eye(3)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x @ self.W

    __call__ = forward

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy @ self.W.T


class UsesCall:
    def __init__(self) -> None:
        self.a, self.b = CallAlias(), CallAlias()

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.b(self.a(x))


register(
    Dense, lambda o, x, name: (tg.Linear(name, *o.W.shape), tg.Layout(linear="in_out"), {"weight": "W", "bias": "b"})
)
register(CallAlias, lambda o, x, name: (tg.Linear(name, 3, 3, bias=False), tg.Layout(), {"weight": "W"}))
register(ReLU, lambda o, x, name: (tg.ReLU(name), None, {}))
