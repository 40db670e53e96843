"""Options given to check_layer / check_network / check_loss are validated whether the code
is raw or already wrapped (issue 19): an unknown one is an AdapterError listing the known
ones; a wrap option given with wrapped code says it belongs to the wrapping call (it used to
be silently ignored); a spec given with wrapped code must be its own. Every path refuses
before any user code runs."""

from __future__ import annotations

import re

import numpy as np
import pytest

import harness as tg
from harness.adapters.layer import AdapterError

SPEC = tg.Linear("fc", 4, 3)
NET_SPEC = tg.Sequential([tg.Linear("fc1", 4, 3), tg.ReLU("relu"), tg.Linear("fc2", 3, 2)])


class Dense:
    """y = x @ W + b, W (in, out); counts its calls, so a refusal can be seen to come first."""

    calls = 0

    def __init__(self, n_in=4, n_out=3, seed=0):
        rng = np.random.default_rng(seed)
        self.W, self.b = rng.normal(size=(n_in, n_out)), rng.normal(size=n_out)

    def forward(self, x):
        Dense.calls += 1
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW, self.db = self.x.T @ dy, dy.sum(axis=0)
        return dy @ self.W.T


IN_OUT = tg.Layout(linear="in_out")


def _wrapped() -> tg.WrappedLayer:
    return tg.wrap_layer(Dense(), SPEC, layout=IN_OUT)


@pytest.fixture(autouse=True)
def _no_calls():
    Dense.calls = 0
    yield


def test_a_wrap_option_with_a_wrapped_layer_belongs_to_wrap_layer() -> None:
    with pytest.raises(AdapterError) as e:
        tg.check_layer(_wrapped(), layout=IN_OUT, input_shape=(5, 4))
    message = str(e.value)
    assert message.startswith("layer 'fc': layout= was given to check_layer with an already-wrapped layer"), message
    assert "pass it to wrap_layer(...)" in message
    assert Dense.calls == 0  # refused before the code ran


def test_several_wrap_options_are_named_together() -> None:
    with pytest.raises(AdapterError, match=re.escape("layout=, params= were given to check_layer")):
        tg.check_layer(_wrapped(), params={"weight": "W"}, layout=IN_OUT, input_shape=(5, 4))


def test_the_wrapping_call_is_named_by_the_wrapper_kind() -> None:
    def fwd(x, w, b):
        return x @ w + b, (x, w)

    def bwd(dy, cache):
        x, w = cache
        return dy @ w.T, x.T @ dy, dy.sum(axis=0)

    rng = np.random.default_rng(0)
    pair = tg.wrap_functions(fwd, bwd, SPEC, [rng.normal(size=(4, 3)), rng.normal(size=3)], layout=IN_OUT)
    with pytest.raises(AdapterError, match=re.escape("dtype= was given to check_layer") + ".*wrap_functions"):
        tg.check_layer(pair, dtype=np.float32, input_shape=(5, 4))


def test_an_unknown_option_lists_the_known_ones_raw_or_wrapped() -> None:
    for layer, spec in ((Dense(), SPEC), (_wrapped(), None)):
        with pytest.raises(AdapterError) as e:
            tg.check_layer(layer, spec, input_shape=(5, 4), fd_probe=2, layout=IN_OUT)
        message = str(e.value)
        assert message.startswith(
            "layer 'fc': unknown option(s) ['fd_probe'] for check_layer; known: check_layer's own ['fd_probes',"
        ), message
        for known in ("fd_probes", "tol_scale", "seed", "x", "layout", "params", "grad_scale", "forward_kwargs"):
            assert f"'{known}'" in message, (known, message)
    assert Dense.calls == 0


def test_an_unknown_option_without_a_spec_is_refused_before_inference() -> None:
    with pytest.raises(
        AdapterError, match=re.escape("check_layer: unknown option(s) ['bogus', 'tol'] for check_layer")
    ):
        tg.check_layer(Dense(), x=np.ones((5, 4)), tol=1e-3, bogus=True)
    assert Dense.calls == 0


def test_the_spec_of_a_wrapped_layer_given_again_is_fine() -> None:
    report = tg.check_layer(_wrapped(), SPEC, input_shape=(5, 4))
    assert report.ok, str(report)
    assert tg.check_layer(_wrapped(), tg.Linear("fc", 4, 3), input_shape=(5, 4)).ok  # equal, not the same object


def test_another_spec_with_a_wrapped_layer_is_refused() -> None:
    with pytest.raises(AdapterError) as e:
        tg.check_layer(_wrapped(), tg.Linear("fc", 4, 3, bias=False), input_shape=(5, 4))
    message = str(e.value)
    assert "spec_layer=Linear('fc', 4, 3, bias=False) differs from the spec the layer was wrapped with" in message
    assert "Linear('fc', 4, 3)" in message and "wrap_layer(...)" in message


def test_a_spec_with_a_layer_wrapped_without_one_is_refused() -> None:
    bare = tg.wrap_layer(Dense(), None, params={"weight": "W", "bias": "b"}, name="fc")
    with pytest.raises(
        AdapterError, match=re.escape("spec_layer=Linear('fc', 4, 3) was given with a layer wrapped without a spec")
    ):
        tg.check_layer(bare, SPEC, input_shape=(5, 4))


def test_raw_layers_still_take_their_options() -> None:
    assert tg.check_layer(Dense(), SPEC, input_shape=(5, 4), layout=IN_OUT).ok


# --------------------------------------------------------------------------- networks


def _net_layers() -> dict[str, Dense]:
    return {"fc1": Dense(4, 3, seed=1), "fc2": Dense(3, 2, seed=2)}


def test_a_wrap_option_with_a_wrapped_network_belongs_to_wrap_network() -> None:
    net = tg.wrap_network(_net_layers(), NET_SPEC, layout=IN_OUT)
    with pytest.raises(AdapterError) as e:
        tg.check_network(net, input_shape=(5, 4), layout=IN_OUT)
    message = str(e.value)
    assert message.startswith("check_network: layout= was given to check_network with an already-wrapped network")
    assert "wrap_network(...)" in message
    assert Dense.calls == 0


def test_an_unknown_network_option_lists_the_known_ones() -> None:
    net = tg.wrap_network(_net_layers(), NET_SPEC, layout=IN_OUT)
    for target, spec in ((net, None), (_net_layers(), NET_SPEC)):
        with pytest.raises(AdapterError) as e:
            tg.check_network(target, spec, input_shape=(5, 4), seeds=3)
        message = str(e.value)
        assert message.startswith("check_network: unknown option(s) ['seeds'] for check_network; known:"), message
        assert "'seed'" in message and "'loss'" in message and "'layout'" in message


def test_another_spec_with_a_wrapped_network_is_refused_and_its_own_is_fine() -> None:
    net = tg.wrap_network(_net_layers(), NET_SPEC, layout=IN_OUT)
    other = tg.Sequential([tg.Linear("fc1", 4, 3), tg.Tanh("relu"), tg.Linear("fc2", 3, 2)])
    with pytest.raises(AdapterError, match="differs from the spec the network was wrapped with"):
        tg.check_network(net, other, input_shape=(5, 4))
    assert Dense.calls == 0
    assert tg.check_network(net, NET_SPEC, input_shape=(5, 4)).ok


# --------------------------------------------------------------------------- losses


def softmax_loss(x, y):
    shifted = x - x.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    n = x.shape[0]
    dx = p.copy()
    dx[np.arange(n), y] -= 1
    return -np.log(p[np.arange(n), y]).mean(), dx / n


def test_an_unknown_loss_option_lists_the_known_ones_raw_or_wrapped() -> None:
    wrapped = tg.wrap_loss(softmax_loss, tg.SoftmaxCrossEntropy())
    for loss, spec in ((softmax_loss, tg.SoftmaxCrossEntropy()), (wrapped, None)):
        with pytest.raises(AdapterError) as e:
            tg.check_loss(loss, spec, input_shape=(4, 5), target="labels")
        message = str(e.value)
        assert message.startswith("check_loss: unknown option(s) ['target'] for check_loss; known:"), message
        assert "'scores'" in message and "'target_format'" in message


def test_a_wrap_option_with_a_wrapped_loss_is_refused() -> None:
    wrapped = tg.wrap_loss(softmax_loss, tg.SoftmaxCrossEntropy())
    with pytest.raises(
        AdapterError, match=re.escape("already wrapped; ['target_format'] are harness.wrap_loss's options")
    ):
        tg.check_loss(wrapped, input_shape=(4, 5), target_format="labels")
    assert tg.check_loss(softmax_loss, tg.SoftmaxCrossEntropy(), input_shape=(4, 5), target_format="labels").ok


# --------------------------------------------------------------------------- through the command line's runner


def test_the_target_runner_refuses_a_layout_with_a_wrapped_layer() -> None:
    from harness.target import TargetError, run

    with pytest.raises(TargetError, match="layout= was given to check_layer with an already-wrapped layer"):
        run({"check": _wrapped(), "input_shape": (5, 4), "layout": IN_OUT})
    assert run({"check": Dense(), "spec": SPEC, "input_shape": (5, 4), "layout": IN_OUT}).ok
