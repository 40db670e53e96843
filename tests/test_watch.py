"""Watching the user's own network pass (harness.adapters.watch): calls through a
class-level alias (__call__ = forward) are seen, a layer's calls to itself are not counted,
data passed by keyword is recorded, nothing is left patched, and the wiring diagnosis built
on it names only the real mistake."""

from __future__ import annotations

import numpy as np

import harness as tg
from harness.adapters.watch import watching


class Dense:
    def __init__(self, n_in, n_out, seed):
        r = np.random.default_rng(seed)
        self.W, self.b = r.normal(size=(n_in, n_out)), r.normal(size=n_out)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW, self.db = self.x.T @ dy, dy.sum(0)
        return dy @ self.W.T

    __call__ = forward  # Keras habit: the network calls self.fc1(x)


class Sigmoid:  # its backward re-runs its own forward
    def forward(self, x):
        self.x = x
        return 1 / (1 + np.exp(-x))

    def backward(self, dy):
        s = self.forward(self.x)
        return dy * s * (1 - s)


class ReLU:
    def forward(self, inputs):
        self.x = inputs
        return np.maximum(inputs, 0)

    def backward(self, dy):
        return dy * (self.x > 0)


class Net:
    def __init__(self, skip_relu_backward: bool):
        self.fc1, self.sig, self.fc2, self.relu, self.fc3 = (Dense(6, 5, 1), Sigmoid(), Dense(5, 4, 2), ReLU(),
                                                             Dense(4, 3, 3))
        self.skip = skip_relu_backward

    def forward(self, x):
        x = self.sig.forward(self.fc1(x))
        return self.fc3(self.relu.forward(inputs=self.fc2(x)))  # data by keyword

    def backward(self, g):
        g = self.fc3.backward(g)
        g = g if self.skip else self.relu.backward(g)
        return self.fc1.backward(self.sig.backward(self.fc2.backward(g)))


SPEC = tg.Sequential([tg.Linear("fc1", 6, 5), tg.Sigmoid("sig"), tg.Linear("fc2", 5, 4), tg.ReLU("relu"),
                      tg.Linear("fc3", 4, 3)])


def wrapped(skip: bool):
    m = Net(skip)
    net = tg.wrap_network({k: getattr(m, k) for k in ("fc1", "sig", "fc2", "relu", "fc3")}, SPEC,
                          forward=m.forward, backward=m.backward, layout=tg.Layout(linear="in_out"))
    return net, m


def test_correct_network_every_layer_seen_once() -> None:
    net, m = wrapped(False)
    classes = {k: type(getattr(m, k)) for k in ("fc1", "sig", "relu")}
    report = tg.check_network(net, input_shape=(8, 6), seed=1)
    assert report.ok, str(report)
    e2e = report.layer("(network)")
    assert [(b.name, b.forward_calls, b.backward_calls) for b in e2e.boundaries] == [
        (k, 1, 1) for k in ("fc1", "sig", "fc2", "relu", "fc3")]
    assert max(max(b.input_error, b.output_error, b.grad_error) for b in e2e.boundaries) < 1e-12
    assert {k: type(getattr(m, k)) for k in classes} == classes  # the hooks are gone


def test_only_the_real_wiring_mistake_is_named() -> None:
    net, _ = wrapped(True)
    e2e = tg.check_network(net, input_shape=(8, 6), seed=2).layer("(network)")
    calls = [d for d in e2e.diagnosis if "called" in d]
    assert calls == ["'relu' is never called by the network's backward"], e2e.diagnosis
    assert any("'fc2' receives a wrong upstream gradient" in d and "although 'fc3' received the right one" in d
               for d in e2e.diagnosis), e2e.diagnosis


def test_hooks_are_removed_when_the_user_code_raises() -> None:
    net, m = wrapped(False)
    cls = type(m.fc1)
    try:
        with watching(net.layers) as calls:
            assert type(m.fc1) is not cls and set(calls) == {"fc1", "sig", "fc2", "relu", "fc3"}
            raise RuntimeError("user code failed")
    except RuntimeError:
        pass
    assert type(m.fc1) is cls and "forward" not in vars(m.fc1)


def test_methods_set_on_the_instance_are_left_unwatched() -> None:
    net, m = wrapped(False)
    m.relu.forward = m.relu.forward  # bound method stored on the instance: a hook on the class would not be seen
    with watching(net.layers) as calls:
        assert "relu" not in calls and "fc1" in calls
