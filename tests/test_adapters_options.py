"""What real handwritten code does, each behind a declared option of wrap_layer."""

from __future__ import annotations

import numpy as np
import pytest

from harness import spec as S
from harness.adapters.arrays import fingerprint
from harness.adapters.layer import AdapterError, wrap_layer
from harness.adapters.layouts import Layout
from reference_models import build

SPEC = S.Linear("fc", 4, 3)
RNG = np.random.default_rng(0)
X, G = RNG.normal(size=(5, 4)), RNG.normal(size=(5, 3))


def reference(layer):
    params = {f"fc.{k}": v for k, v in layer.get_params().items()}
    return build("torch", S.Sequential([SPEC])).vjp(params, X, G)


def assert_matches_reference(layer) -> None:
    y = layer.forward(X)
    dx = layer.backward(G)
    ref = reference(layer)
    np.testing.assert_allclose(y, ref.output, rtol=1e-12)
    np.testing.assert_allclose(dx, ref.input_grad, rtol=1e-12)
    for k, v in layer.param_grads().items():
        np.testing.assert_allclose(v, ref.param_grads[f"fc.{k}"], rtol=1e-12, err_msg=k)


class Dense:
    """y = x W + b, W (in, out); the base every quirk below modifies."""

    def __init__(self, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.W, self.b = rng.normal(size=(4, 3)), rng.normal(size=3)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW, self.db = self.x.T @ dy, dy.sum(0)
        return dy @ self.W.T


def fc(user, **options):
    return wrap_layer(user, SPEC, layout=Layout(linear="in_out"), **options)


def test_extra_forward_arguments() -> None:
    class WithFlag(Dense):
        def forward(self, x, training):
            assert training is True
            return super().forward(x)

    with pytest.raises(TypeError, match="training"):
        fc(WithFlag()).forward(X)
    assert_matches_reference(fc(WithFlag(), forward_kwargs={"training": True}))
    assert_matches_reference(fc(WithFlag(), forward_args=(True,)))


def test_parameters_created_on_first_forward() -> None:
    class Lazy:
        def forward(self, x):
            if not hasattr(self, "W"):
                rng = np.random.default_rng(2)
                self.W, self.b = rng.normal(size=(x.shape[1], 3)).astype(np.float32), np.zeros(3, np.float32)
            self.x = x
            return x @ self.W + self.b

        def backward(self, dy):
            self.dW, self.db = self.x.T @ dy, dy.sum(0)
            return dy @ self.W.T

    with pytest.raises(AdapterError, match="cannot find parameter 'weight' on Lazy"):
        fc(Lazy())
    layer = fc(Lazy(), lazy=True)
    layer.forward(X)
    assert layer.get_params()["weight"].shape == (3, 4)
    assert layer.dtype == np.float32  # known once the parameters exist


def test_gradients_accumulated_until_flushed() -> None:
    class Accumulates(Dense):
        def zero_grad(self):
            self.dW, self.db = np.zeros_like(self.W), np.zeros_like(self.b)

        def backward(self, dy):
            if not hasattr(self, "dW"):
                self.zero_grad()
            self.dW += self.x.T @ dy
            self.db += dy.sum(0)
            return dy @ self.W.T

    plain = fc(Accumulates())
    plain.forward(X)
    plain.backward(G)
    first = plain.param_grads()["weight"]
    plain.backward(G)
    np.testing.assert_allclose(plain.param_grads()["weight"], 2 * first)  # what happens unflushed
    flushed = fc(Accumulates(), zero_grad="zero_grad")
    for _ in range(2):
        assert_matches_reference(flushed)


@pytest.mark.parametrize("inside_backward", [False, True])
def test_gradients_only_through_sgd_step(inside_backward: bool) -> None:
    class SGDOnly(Dense):
        def backward(self, dy, lr=None):
            self._g = (self.x.T @ dy, dy.sum(0))
            dx = dy @ self.W.T
            if lr is not None:
                self.step(lr)
            return dx

        def step(self, lr=0.1):
            self.W -= lr * self._g[0]
            self.b -= lr * self._g[1]

    user = SGDOnly()
    before = (fingerprint(user.W), fingerprint(user.b))
    if inside_backward:
        layer = fc(user, sgd=(None, 0.1), backward_kwargs={"lr": 0.1})
    else:
        layer = fc(user, sgd=("step", 0.1))
    y = layer.forward(X)
    layer.backward(G)
    grads = layer.param_grads()
    assert (fingerprint(user.W), fingerprint(user.b)) == before  # the update was undone exactly
    ref = reference(layer)
    np.testing.assert_allclose(y, ref.output, rtol=1e-12)
    np.testing.assert_allclose(grads["weight"], ref.param_grads["fc.weight"], rtol=1e-9)  # (w - w')/lr rounding
    np.testing.assert_allclose(grads["bias"], ref.param_grads["fc.bias"], rtol=1e-9)


def test_gradients_already_divided_by_batch() -> None:
    class Averages(Dense):
        def backward(self, dy):
            dx = super().backward(dy)
            self.dW, self.db = self.dW / len(dy), self.db / len(dy)
            return dx

    layer = fc(Averages())
    layer.forward(X)
    layer.backward(G)
    ref = reference(layer)
    np.testing.assert_allclose(layer.param_grads()["weight"] * len(X), ref.param_grads["fc.weight"], rtol=1e-12)
    assert_matches_reference(fc(Averages(), grad_scale="batch"))
    assert_matches_reference(fc(Averages(), grad_scale=len(X)))


def test_option_errors() -> None:
    with pytest.raises(AdapterError, match=r"unknown option\(s\) \['zerograd'\]; known: "):
        fc(Dense(), zerograd="zero_grad")
    with pytest.raises(AdapterError, match="grad_scale must be 'batch' or a number, got 'mean'"):
        fc(Dense(), grad_scale="mean")
    with pytest.raises(AdapterError, match=r"Dense has no method flush\(\) \(declared as an option\)"):
        fc(Dense(), zero_grad="flush")
    with pytest.raises(AdapterError, match=r"Dense has no method apply\(\)"):
        fc(Dense(), sgd=("apply", 0.1))
