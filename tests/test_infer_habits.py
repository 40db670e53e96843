"""Habits of from-scratch code that inference must read without help: layers and networks
called as ``layer(x)`` (a class-defined ``__call__``, no ``forward``), looped over a
``self.layers`` list, with (1, out) biases; the emitted Python pins them and checks the same."""

from __future__ import annotations

import numpy as np

import harness as tg
from harness.adapters.arrays import fingerprint


class Linear:
    def __init__(self, i, o, rng):
        self.W, self.b = rng.normal(size=(i, o)) * 0.1, np.zeros((1, o))

    def __call__(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, d):
        self.dW, self.db = self.x.T @ d, d.sum(0, keepdims=True)
        return d @ self.W.T


class Relu:
    def __call__(self, x):
        self.m = x > 0
        return x * self.m

    def backward(self, d):
        return d * self.m


class Model:
    def __init__(self, relu=Relu):
        rng = np.random.default_rng(0)
        self.layers = [Linear(5, 16, rng), relu(), Linear(16, 3, rng)]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def backward(self, d):
        for layer in reversed(self.layers):
            d = layer.backward(d)
        return d


class ReluLeaks(Relu):  # the bug: the forward leaks, the backward masks like a ReLU
    def __call__(self, x):
        self.m = x > 0
        return np.where(self.m, x, 0.01 * x)


X = np.random.default_rng(1).normal(size=(8, 5))


def test_a_network_of_call_layers_is_inferred_and_checked() -> None:
    model = Model()
    before = [fingerprint(layer.W) for layer in model.layers[::2]]
    inference = tg.infer(model, X)
    assert inference.exact
    assert [type(s).__name__ for s in inference.spec.layers] == ["Linear", "ReLU", "Linear"]
    assert inference.layout.linear == "in_out"
    report = tg.check_network(model, x=X)
    assert report.ok and report.inferred["status"] == "exact"
    assert [fingerprint(layer.W) for layer in model.layers[::2]] == before


def test_the_pinned_source_rebuilds_the_same_check() -> None:
    source = tg.infer(Model(), X).to_python("model")
    assert 'forward="__call__"' in source and "forward=model.__call__" in source
    namespace = {"model": Model()}
    exec(source, namespace)
    assert tg.check_network(namespace["net"], x=X).ok


def test_a_leaking_call_relu_is_not_explained_as_a_leaky_relu() -> None:
    report = tg.check_network(Model(relu=ReluLeaks), x=X)
    assert report.inferred["status"] == "ambiguous"
    assert report.first_failure == "layers_1" and report.layer("layers_1").verdict == "forward"
