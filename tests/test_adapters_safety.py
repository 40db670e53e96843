"""Never change the user's model, and never read a gradient wrongly: the awkward cases
(parameters in tuples, lists and properties; network mode with recovered gradients;
transposed gradients; parameter lists) that a review found."""

from __future__ import annotations

import numpy as np
import pytest

from harness import spec as S
from harness.adapters.arrays import fingerprint
from harness.adapters.detect import detect_layout
from harness.adapters.layer import AdapterError, wrap_layer
from harness.adapters.weights import load_weights

SPEC = S.Linear("fc", 4, 3)
X = np.random.default_rng(0).normal(size=(2, 4))


class Base:
    def __init__(self):
        rng = np.random.default_rng(1)
        self._W, self._b = rng.normal(size=(3, 4)), rng.normal(size=3)

    def forward(self, x):
        self.x = x
        return x @ self.W.T + self.b

    def backward(self, dy):
        self.dW, self.db = dy.T @ self.x, dy.sum(0)
        return dy @ self.W


class TupleHeld(Base):
    def __init__(self):
        super().__init__()
        self.params = (self._W, self._b)

    W = property(lambda self: self.params[0])
    b = property(lambda self: self.params[1])


class ReadOnlyProperty(Base):
    W = property(lambda self: self._W)  # the stored array itself: writable in place
    b = property(lambda self: self._b)


class CopyProperty(Base):
    W = property(lambda self: self._W.astype(np.float64))  # a fresh copy every time
    b = property(lambda self: self._b)


@pytest.mark.parametrize("cls,params", [(TupleHeld, {"weight": "params[0]", "bias": "params[1]"}),
                                        (ReadOnlyProperty, None)])
def test_restored_where_the_container_cannot_be_assigned(cls, params) -> None:
    user = cls()
    before = (fingerprint(user.W), fingerprint(user.b))
    layer = wrap_layer(user, SPEC, params=params)
    with pytest.raises(RuntimeError):
        with layer.preserved():
            layer.set_params({"weight": np.zeros((3, 4)), "bias": np.ones(3)})
            assert not user.W.any()
            raise RuntimeError("user code failed")
    assert (fingerprint(user.W), fingerprint(user.b)) == before


def test_a_write_that_has_no_effect_is_refused() -> None:
    layer = wrap_layer(CopyProperty(), SPEC)
    with pytest.raises(AdapterError, match=r"parameter 'weight': writing it had no effect \(likely cause: it is a computed property"):
        layer.set_params({"weight": np.zeros((3, 4))})


def test_nested_list_parameters_restored_in_the_same_list() -> None:
    class Lists(Base):
        def __init__(self):
            super().__init__()
            self.Wl, self.bl = self._W.tolist(), self._b.tolist()

        W = property(lambda self: np.array(self.Wl))
        b = property(lambda self: np.array(self.bl))

    user = Lists()
    inner, before = user.Wl[0], fingerprint(user.Wl)
    layer = wrap_layer(user, SPEC, params={"weight": "Wl", "bias": "bl"})
    with layer.preserved():
        user.Wl[0][0] = 123.0  # the user's code edits the nested list in place
        layer.set_params({"bias": np.zeros(3)})
    assert fingerprint(user.Wl) == before and user.Wl[0] is inner and type(user.Wl[0][0]) is float


def test_transposed_gradient_is_refused_not_reshaped() -> None:
    class Transposed(ReadOnlyProperty):
        def backward(self, dy):
            dx = super().backward(dy)
            self.dW = self.dW.T  # (in, out) for an (out, in) weight: a classic mistake
            return dx

    layer = wrap_layer(Transposed(), SPEC)
    layer.forward(X)
    layer.backward(np.ones((2, 3)))
    with pytest.raises(AdapterError, match=r"gradient of 'weight' has shape \(4, 3\) but the parameter has \(3, 4\); looks transposed"):
        layer.param_grads()


def test_parameters_and_gradients_in_parallel_lists() -> None:
    class Listed:
        def __init__(self):
            rng = np.random.default_rng(2)
            self.weights = [rng.normal(size=(3, 4)), rng.normal(size=3)]  # ragged: not one array

        def forward(self, x):
            self.x = x
            return x @ self.weights[0].T + self.weights[1]

        def backward(self, dy):
            self.dweights = [dy.T @ self.x, dy.sum(0)]
            return dy @ self.weights[0]

    with pytest.raises(AdapterError, match="cannot find parameter 'weight' on Listed"):
        wrap_layer(Listed(), SPEC)  # the list [W, b] is not mistaken for the weight
    layer = wrap_layer(Listed(), SPEC, params={"weight": "weights[0]", "bias": "weights[1]"})
    layer.forward(X)
    layer.backward(np.ones((2, 3)))
    grads = layer.param_grads()
    assert layer.grads["weight"].path == "dweights[0]" and grads["bias"].tolist() == [2.0, 2.0, 2.0]


def test_recovered_gradients_refused_after_the_networks_own_backward() -> None:
    class SGD(ReadOnlyProperty):
        def step(self, lr=0.1):
            self._W -= lr * self.dW
            self._b -= lr * self.db

    layer = wrap_layer(SGD(), SPEC, sgd=("step", 0.1))
    layer.forward(X)
    layer.backward(np.ones((2, 3)))
    layer.param_grads()
    layer.note_input_shape(X.shape)  # the user's network ran it end to end
    with pytest.raises(AdapterError, match="check this layer chained, not end to end"):
        layer.param_grads()


def test_missing_gradient_of_one_example_is_named() -> None:
    class OneAtATime(ReadOnlyProperty):
        def forward(self, x):
            return super().forward(x[None])[0]

        def backward(self, dy):
            dx = super().backward(dy[None])[0]
            self.dW = None
            return dx

    layer = wrap_layer(OneAtATime(), SPEC, grads={"weight": "dW", "bias": "db"}, batched=False)
    layer.forward(X)
    with pytest.raises(AdapterError, match="no gradient for parameter 'weight' after the backward of example 0"):
        layer.backward(np.ones((2, 3)))


def test_backward_writing_into_its_upstream_gradient_is_reported() -> None:
    class Clobbers(ReadOnlyProperty):
        def backward(self, dy):
            dx = super().backward(dy)
            dy *= 0  # reuses the buffer
            return dx

    layer = wrap_layer(Clobbers(), SPEC)
    layer.forward(X)
    g = np.ones((2, 3))
    layer.backward(g)
    assert layer.grad_mutated and g.sum() == 6.0  # reported; the caller's array was a copy
    clean = wrap_layer(ReadOnlyProperty(), SPEC)
    clean.forward(X)
    clean.backward(g)
    assert not clean.grad_mutated


def test_weights_from_torch_parameters_load() -> None:
    torch = pytest.importorskip("torch")
    m = torch.nn.Linear(4, 3)
    spec = S.Sequential([SPEC])
    got = load_weights({f"fc.{k}": v for k, v in m.named_parameters()}, spec, (2, 4))
    np.testing.assert_array_equal(got["fc.weight"], m.weight.detach().double().numpy())


def test_detect_says_when_no_candidate_ran() -> None:
    class Broken(ReadOnlyProperty):
        def forward(self, x):
            raise MemoryError("out of memory")

    found = detect_layout(Broken(), SPEC)
    assert not found.matched
    assert "ran under none of the 2 candidate layouts; first failure: MemoryError: out of memory" in str(found)
