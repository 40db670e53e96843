"""Habits of from-scratch code that inference must read without help: layers and networks
called as ``layer(x)`` (a class-defined ``__call__``, no ``forward``), looped over a
``self.layers`` list, with (1, out) biases; the emitted Python pins them and checks the same."""

from __future__ import annotations

import numpy as np
import pytest

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


# ----------------------------------------------------------------- one example at a time

LR = 0.1


def _gray_object(m):
    return m.Conv3x3(4, seed=0), np.random.default_rng(0).normal(size=(6, 6)), {}


def _gray_pair(m):
    kernels, bias = np.random.default_rng(1).normal(size=(4, 3, 3)), np.zeros(4)
    return (
        (m.conv_gray_forward, m.conv_gray_backward),
        np.random.default_rng(0).normal(size=(6, 6)),
        {"params": [kernels, bias]},
    )


def _fc_single(m):  # the SGD step inside backprop(d, lr) is declared: inference cannot see lr
    return m.FC(6, 4, seed=0), np.random.default_rng(0).normal(size=6), {"backward_args": (LR,), "sgd": (None, LR)}


ONE_EXAMPLE = {"gray_conv_object": _gray_object, "gray_conv_pair": _gray_pair, "fc_sgd_single": _fc_single}


def _shape(name):
    from realcode.table import SHAPES

    return next(s for s in SHAPES if s.name == name)


@pytest.mark.parametrize("name", list(ONE_EXAMPLE))
def test_code_taking_one_example_is_read_as_such(name) -> None:
    """A single image (H, W) turned into (F, H', W'), or a vector (D,): batched=False (and
    channel_axis=False for the image) inferred, the (F, k, k) kernel read with its missing
    input-channel axis; the correct code passes and each bug gets the hand-written wrap's verdict."""
    shape = _shape(name)
    target, x, kw = ONE_EXAMPLE[name](shape.code)
    inference = tg.infer(target, x, **kw)
    assert inference.exact and inference.layers[0].wrap_kwargs["batched"] is False
    assert tg.check_layer(target, x=x, **kw).ok
    for bug in shape.bugs:
        target, x, kw = ONE_EXAMPLE[name](bug.code)
        report = tg.check_layer(target, x=x, **kw)
        assert report.layers[0].verdict == bug.verdict, (bug.name, str(report))


# ----------------------------------------------------------------- "deep learning from scratch" networks


class Affine:  # reshapes its own input: one object computing Flatten + Linear
    def __init__(self, W, b):
        self.W, self.b = W, b

    def forward(self, x):
        self.original_x_shape = x.shape
        self.x = x.reshape(x.shape[0], -1)
        return np.dot(self.x, self.W) + self.b

    def backward(self, dout):
        dx = np.dot(dout, self.W.T)
        self.dW, self.db = np.dot(self.x.T, dout), np.sum(dout, axis=0)
        return dx.reshape(*self.original_x_shape)


class AffineBiasAveraged(Affine):
    def backward(self, dout):
        dx = super().backward(dout)
        self.db = dout.mean(axis=0)
        return dx


class DlfsRelu:  # as the book writes it: the upstream gradient is written into
    def forward(self, x):
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dout[self.mask] = 0
        return dout


class CopyRelu(DlfsRelu):
    def backward(self, dout):
        return np.where(self.mask, 0.0, dout)


class TwoLayerNet:  # predict() and an OrderedDict of layers; no forward / backward of its own
    def __init__(self, affine=Affine, relu=CopyRelu):
        from collections import OrderedDict

        rng = np.random.default_rng(0)
        self.params = {"W1": 0.1 * rng.normal(size=(16, 10)), "b1": np.zeros(10)}
        self.params |= {"W2": 0.1 * rng.normal(size=(10, 3)), "b2": np.zeros(3)}
        self.layers = OrderedDict()
        self.layers["Affine1"] = affine(self.params["W1"], self.params["b1"])
        self.layers["Relu1"] = relu()
        self.layers["Affine2"] = Affine(self.params["W2"], self.params["b2"])

    def predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x


X4 = np.random.default_rng(1).normal(size=(4, 1, 4, 4))


def test_a_layer_that_flattens_its_input_is_split_into_flatten_and_linear() -> None:
    for target in (TwoLayerNet(), TwoLayerNet().layers):
        inference = tg.infer(target, X4)
        assert inference.exact
        assert [li.name for li in inference.layers] == ["Affine1.flat", "Affine1.fc", "Relu1", "Affine2"]
        assert inference.layer("Affine1.flat").target is None
        report = tg.check_network(target, x=X4)
        assert report.ok, str(report)
    assert "a TwoLayerNet has no forward / backward: its layers run in order" in tg.infer(TwoLayerNet(), X4).notes


def test_the_bugs_of_such_a_network_are_found_where_they_are() -> None:
    report = tg.check_network(TwoLayerNet(affine=AffineBiasAveraged), x=X4)
    assert report.first_failure == "Affine1.fc" and report.layer("Affine1.fc").verdict == "backward"
    report = tg.check_network(TwoLayerNet(relu=DlfsRelu), x=X4)
    assert report.first_failure == "Relu1"
    assert "writes into its upstream gradient" in report.layer("Relu1").diagnosis[0]
