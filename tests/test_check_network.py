"""check_network: every layer in isolation, then the user's own network end to end."""

from __future__ import annotations

import numpy as np
import pytest
from test_adapters_network import LAYOUTS, NAMES, X_SHAPE, Linear, make_net, make_spec

from harness import spec as S
from harness.adapters.arrays import fingerprint
from harness.adapters.layouts import Layout
from harness.adapters.loss import wrap_loss
from harness.adapters.layer import wrap_layer as tg_wrap_layer
from harness.adapters.network import wrap_loss_model, wrap_network
from harness.check import check_network


def wrapped(nhwc: bool, layout, net=None):
    """The network wrapped with its input_shape in its declared layout (``w.input_shape``)."""
    spec = make_spec()
    net = net or make_net(nhwc)
    shape = (X_SHAPE[0], *X_SHAPE[2:], X_SHAPE[1]) if layout.data == "NHWC" else X_SHAPE
    w = wrap_network(dict(zip(NAMES, net.layers)), spec, forward=net.forward, backward=net.backward,
                     layout=layout, input_shape=shape)
    w.set_params(S.init_params(spec, X_SHAPE, seed=3))
    return w, net


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_correct_network_passes_layer_by_layer_and_end_to_end(name: str) -> None:
    w, net = wrapped(*LAYOUTS[name])
    before = {k: fingerprint(v) for k, v in w.get_params().items()}
    report = check_network(w, input_shape=w.input_shape, seed=1)
    assert report.ok, str(report)
    assert [l.name for l in report.layers] == NAMES + ["(network)"]
    assert {k: fingerprint(v) for k, v in w.get_params().items()} == before


class BadLinear(Linear):
    def backward(self, dout):
        dx = super().backward(dout)
        self.db = dout[0]  # bias gradient not summed over the batch
        return dx


def test_the_buggy_layer_is_first_and_the_network_entry_is_downstream() -> None:
    nhwc, layout = LAYOUTS["nchw"]
    net = make_net(nhwc)
    net.layers[4] = BadLinear(36, 10)
    w, _ = wrapped(nhwc, layout, net)
    report = check_network(w, input_shape=w.input_shape, seed=2)
    assert report.first_failure == "fc1", str(report)
    assert report.layer("fc1").verdict == "backward"
    assert all(report.layer(n).ok for n in NAMES if n != "fc1")  # isolation: nothing else fails
    assert report.layer("(network)").downstream_of == "fc1"


def test_wiring_bug_is_reported_when_every_layer_passes() -> None:
    nhwc, layout = LAYOUTS["nchw"]
    w, _ = wrapped(nhwc, layout, make_net(nhwc, skip=5))  # the network skips relu2
    report = check_network(w, input_shape=w.input_shape, seed=3)
    assert all(report.layer(n).ok for n in NAMES)
    e2e = report.layer("(network)")
    assert not e2e.ok and e2e.downstream_of is None and "wiring between layers" in e2e.message
    assert report.first_failure == "(network)"


def test_needs_an_input() -> None:
    w, _ = wrapped(*LAYOUTS["nchw"])
    with pytest.raises(ValueError, match="check_network needs x= or input_shape="):
        check_network(w)


# --------------------------------------------------------------------------- boundaries


def test_wiring_bug_names_the_skipped_layer_and_the_boundary() -> None:
    nhwc, layout = LAYOUTS["nhwc"]
    w, net = wrapped(nhwc, layout, make_net(nhwc, skip=5))
    e2e = check_network(w, input_shape=w.input_shape, seed=3).layer("(network)")
    calls = {b.name: (b.forward_calls, b.backward_calls) for b in e2e.boundaries}
    assert calls["relu2"] == (0, 0) and all(v == (1, 1) for k, v in calls.items() if k != "relu2")
    assert "'relu2' is never called by the network's forward" in e2e.diagnosis
    assert any("'fc2' receives a wrong input" in d and "although 'fc1' produced the right output" in d
               for d in e2e.diagnosis), e2e.diagnosis
    assert any("'fc1' receives a wrong upstream gradient" in d and "although 'fc2' received the right one" in d
               for d in e2e.diagnosis), e2e.diagnosis
    assert all("forward" not in vars(layer) for layer in net.layers)  # the watch is undone


def test_a_layer_called_twice_is_named() -> None:
    nhwc, layout = LAYOUTS["nchw"]
    net = make_net(nhwc)

    class Twice(type(net)):
        def forward(self, x):
            x = super().forward(x)
            self.layers[5].forward(self.layers[5].forward(np.zeros((2, 10))))  # a stray extra call
            return x

    twice = Twice(net.layers)
    w, _ = wrapped(nhwc, layout, twice)
    e2e = check_network(w, input_shape=w.input_shape, seed=4).layer("(network)")
    assert not e2e.ok and "'relu2' is called 3 times by the network's forward" in e2e.diagnosis


def test_boundaries_all_match_for_a_correct_network() -> None:
    w, _ = wrapped(*LAYOUTS["nhwc"])
    e2e = check_network(w, input_shape=w.input_shape, seed=5).layer("(network)")
    assert e2e.ok and [b.name for b in e2e.boundaries] == NAMES
    for b in e2e.boundaries:
        assert (b.forward_calls, b.backward_calls) == (1, 1)
        assert max(b.input_error, b.output_error, b.grad_error) < 1e-12, b


# --------------------------------------------------------------------------- losses


def softmax_loss(x, y, divide=True):
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = x.shape[0]
    dx = np.exp(log_probs)
    dx[np.arange(n), y] -= 1
    return -log_probs[np.arange(n), y].mean(), dx / n if divide else dx


def test_correct_loss_passes_and_is_reported() -> None:
    w, _ = wrapped(*LAYOUTS["nchw"])
    report = check_network(w, input_shape=w.input_shape, loss=wrap_loss(softmax_loss, S.SoftmaxCrossEntropy()), seed=6)
    assert report.ok, str(report)
    entry = report.layer("(loss)")
    assert [t.name for t in entry.tensors] == ["value", "scores"] and entry.tensors[1].fd.consistent
    assert [l.name for l in report.layers][-2:] == ["(loss)", "(network)"]


def test_loss_gradient_not_divided_by_the_batch() -> None:
    w, _ = wrapped(*LAYOUTS["nchw"])
    bad = wrap_loss(lambda s, y: softmax_loss(s, y, divide=False), S.SoftmaxCrossEntropy())
    x = np.random.default_rng(0).standard_normal((4, *X_SHAPE[1:]))
    report = check_network(w, x=x, y=np.array([0, 1, 2, 3]), loss=bad, seed=7)
    entry = report.layer("(loss)")
    assert report.first_failure == "(loss)" and entry.verdict == "backward", str(report)
    assert any("= the batch size" in d for d in entry.diagnosis), entry.diagnosis


def test_a_loss_that_raises_is_an_error_entry() -> None:
    w, _ = wrapped(*LAYOUTS["nchw"])

    def broken(s, y):
        raise RuntimeError("labels out of range")

    entry = check_network(w, input_shape=w.input_shape, loss=wrap_loss(broken, S.SoftmaxCrossEntropy())).layer("(loss)")
    assert entry.verdict == "error" and "RuntimeError: labels out of range" in entry.message
    assert "test_check_network.py" in entry.message  # the user's frame


def test_loss_arguments_are_checked() -> None:
    w, _ = wrapped(*LAYOUTS["nchw"])
    with pytest.raises(TypeError, match=r"loss= takes the user's loss wrapped with harness.wrap_loss"):
        check_network(w, input_shape=w.input_shape, loss=softmax_loss)
    with pytest.raises(TypeError, match=r"y= \(targets\) needs loss="):
        check_network(w, input_shape=w.input_shape, y=np.zeros(2, dtype=int))


# --------------------------------------------------------------------------- CS231n loss(X, y) models


def _two_layer(bug: str | None = None):
    from test_adapters_network import TwoLayerNet

    class Model(TwoLayerNet):
        def loss(self, X, y=None):
            out = super().loss(X, y)
            if y is None or bug is None:
                return out
            value, grads = out
            if bug == "b2 not summed":
                grads["b2"] = grads["b2"] / len(X)
            if bug == "W1 nan":
                grads["W1"] = grads["W1"].copy()
                grads["W1"][0, 3] = np.nan
            if bug == "b1 float32":
                grads["b1"] = grads["b1"].astype(np.float32)
            return value, grads

    spec = S.Sequential([S.Linear("fc1", 6, 7), S.ReLU("relu"), S.Linear("fc2", 7, 4)])
    model = Model(6, 7, 4)
    return wrap_loss_model(model, spec, loss=S.SoftmaxCrossEntropy(), layout=Layout(linear="in_out")), model


def test_cs231n_loss_model_passes_and_is_untouched() -> None:
    lm, model = _two_layer()
    before = {k: fingerprint(v) for k, v in model.params.items()}
    report = check_network(lm, input_shape=(5, 6), seed=8)
    assert report.ok, str(report)
    assert [t.name for t in report.layers[0].tensors] == ["output", "loss", "fc1.weight", "fc1.bias", "fc2.weight",
                                                        "fc2.bias"]
    assert {k: fingerprint(v) for k, v in model.params.items()} == before


def test_cs231n_loss_model_bug_is_a_backward_failure() -> None:
    lm, _ = _two_layer("b2 not summed")
    entry = check_network(lm, input_shape=(5, 6), y=np.array([0, 1, 2, 3, 0]), seed=9).layers[0]
    assert entry.verdict == "backward", entry
    assert [t.name for t in entry.tensors if not t.ok] == ["fc2.bias"]
    assert any("fc2.bias: off by a constant factor 1/5 (= 1/the batch size 5" in d for d in entry.diagnosis), entry.diagnosis


def test_cs231n_loss_model_nan_gradient_is_named_and_a_float32_one_said() -> None:
    entry = check_network(_two_layer("W1 nan")[0], input_shape=(5, 6), seed=9).layers[0]
    assert entry.verdict == "error", entry
    assert "fc1.weight: 1 of 42 values is NaN or Inf (the first, nan, at [0, 3])" in entry.message
    entry = check_network(_two_layer("b1 float32")[0], input_shape=(5, 6), seed=9).layers[0]
    assert any("fc1.bias: is float32 while the parameters are float64: a silent downcast" in d for d in entry.diagnosis)


# --------------------------------------------------------------------------- review findings, pinned


class AccumulatingDense:
    """Correct, but adds into its gradients until zero_grad() (declared with zero_grad=)."""

    def __init__(self, n_in, n_out, seed):
        r = np.random.default_rng(seed)
        self.W, self.b = r.normal(size=(n_in, n_out)), r.normal(size=n_out)
        self.zero_grad()

    def zero_grad(self):
        self.dW, self.db = np.zeros_like(self.W), np.zeros_like(self.b)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, dy):
        self.dW += self.x.T @ dy
        self.db += dy.sum(0)
        return dy @ self.W.T


def test_zero_grad_layers_are_flushed_before_the_end_to_end_pass() -> None:
    spec = S.Sequential([S.Linear("fc1", 4, 5), S.Linear("fc2", 5, 3)])
    fc1, fc2 = AccumulatingDense(4, 5, 1), AccumulatingDense(5, 3, 2)
    lay = Layout(linear="in_out")
    layers = {p: tg_wrap_layer(o, spec.children()[i], layout=lay, zero_grad="zero_grad", name=p)
              for i, (p, o) in enumerate([("fc1", fc1), ("fc2", fc2)])}
    net = wrap_network(layers, spec, forward=lambda x: fc2.forward(fc1.forward(x)),
                       backward=lambda g: fc1.backward(fc2.backward(g)), layout=lay)
    report = check_network(net, input_shape=(6, 4), seed=0)
    assert report.ok, str(report)


def test_a_loss_bug_does_not_hide_a_wiring_bug() -> None:
    nhwc, layout = LAYOUTS["nchw"]
    w, _ = wrapped(nhwc, layout, make_net(nhwc, skip=5))
    bad = wrap_loss(lambda s, y: softmax_loss(s, y, divide=False), S.SoftmaxCrossEntropy())
    report = check_network(w, input_shape=w.input_shape, loss=bad, seed=3)
    assert report.first_failure == "(loss)"
    e2e = report.layer("(network)")
    assert not e2e.ok and e2e.downstream_of is None and "wiring between layers" in e2e.message
    assert "'relu2' is never called by the network's forward" in e2e.diagnosis


def test_network_entry_is_compared_with_jax_too() -> None:
    w, _ = wrapped(*LAYOUTS["nchw"])
    e2e = check_network(w, input_shape=w.input_shape, seed=1).layer("(network)")
    assert all(t.error_jax == t.error_jax and t.error_jax < 1e-12 for t in e2e.tensors)  # a number, not NaN
    assert e2e.refs_error < 1e-12


def test_layer_values_read_off_the_network_pass_equal_the_layers_own_vjp() -> None:
    """check_network reuses the whole network's reference pass for layers fed the network's
    own point; it must be exactly what a per-layer VJP gives."""
    from harness.network_check import _layer_values, _sequence_inputs
    from harness.examples import build as example
    from reference_models import build

    ex = example()
    params = ex.net.get_params()
    x = ex.x.transpose(0, 3, 1, 2)  # the example's x is in its code's NHWC; the references take NCHW
    g = np.random.default_rng(0).standard_normal(ex.spec.output_shape(x.shape))
    for backend in ("torch", "jax"):
        whole = build(backend, ex.spec).vjp(params, x, g)
        feeds = _sequence_inputs(ex.spec)
        assert list(feeds) == list(ex.model.layers()) and feeds["conv1"] is None and feeds["relu1"] == "conv1"
        for path, feed in feeds.items():
            layer = dict(S.walk(ex.spec))[path]
            own = build(backend, S.Sequential([layer])).vjp(
                {k: v for k, v in params.items() if k.startswith(path + ".")}, whole.inputs[path], whole.output_grads[path])
            got = _layer_values(whole, path, feed, layer.name)
            assert set(got.param_grads) == set(own.param_grads)
            for a, b in [(got.output, own.output), (got.input_grad, own.input_grad),
                         *((got.param_grads[k], own.param_grads[k]) for k in own.param_grads)]:
                assert np.allclose(a, b, rtol=1e-12, atol=1e-13), (backend, path)
    assert _sequence_inputs(S.Residual("res", [S.ReLU("r")])) == {}


def test_layer_values_inside_residual_blocks() -> None:
    """Inside a residual block every layer but the block's and the shortcut's first (whose
    input the two branches share) reads its values off the whole network's pass."""
    from harness.network_check import _layer_values, _sequence_inputs
    from reference_models import build
    from reference_models.architectures import resnet_basic_block

    spec = S.Sequential([resnet_basic_block("b1", 4, 8, stride=2), resnet_basic_block("b2", 8, 8),
                         S.GlobalAvgPool2d("gap"), S.Linear("fc", 8, 3)])
    shape = (2, 4, 16, 16)
    params = S.init_params(spec, shape, seed=0)
    x = np.random.default_rng(0).standard_normal(shape)
    g = np.random.default_rng(1).standard_normal(spec.output_shape(shape))
    feeds = _sequence_inputs(spec)
    leaves = [p for p, l in S.walk(spec) if not l.children()]
    shared = sorted(set(leaves) - set(feeds))
    assert shared == ["b1.conv1", "b1.downsample.0", "b2.conv1"], shared
    assert feeds["gap"] == "b2.relu2" and feeds["b1.relu2"] == "b1.bn2"  # after the add: the block's last output
    tree = dict(S.walk(spec))
    for backend in ("torch", "jax"):
        whole = build(backend, spec).vjp(params, x, g)
        for path, feed in feeds.items():
            layer = tree[path]
            local = {S.join_path(layer.name, k[len(path) + 1:]): v for k, v in params.items() if k.startswith(path + ".")}
            own = build(backend, S.Sequential([layer])).vjp(local, whole.inputs[path], whole.output_grads[path])
            got = _layer_values(whole, path, feed, layer.name)
            assert set(got.param_grads) == set(own.param_grads), (path, got.param_grads.keys())
            assert np.allclose(got.output, own.output, rtol=1e-12, atol=1e-13), (backend, path)
            assert np.allclose(got.input_grad, own.input_grad, rtol=1e-12, atol=1e-13), (backend, path)
            for k, v in own.param_grads.items():
                assert np.allclose(got.param_grads[k], v, rtol=1e-12, atol=1e-13)


def test_a_residual_numpy_network_passes_check_network() -> None:
    """Layers inside residual blocks, checked with reference values read off the network pass."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from numpy_layers import wrap as numpy_net
    from reference_models.architectures import resnet_basic_block

    spec = S.Sequential([resnet_basic_block("b1", 4, 8, stride=2), resnet_basic_block("b2", 8, 8),
                         S.GlobalAvgPool2d("gap"), S.Linear("fc", 8, 3)])
    net = numpy_net(spec, (4, 4, 12, 12))
    report = check_network(net, input_shape=(4, 4, 12, 12), seed=0)
    assert report.ok, str(report)
    assert [l.name for l in report.layers] == [p for p, l in S.walk(spec) if not l.children()]


def test_a_loss_model_whose_probes_all_cross_kinks_passes_with_a_note() -> None:
    """The first example's hidden pre-activations sit 1e-9 from the ReLU's kink (as after
    training to a tie): every finite-difference probe of fc1 flips one, yet both references
    agree with the model's gradients to 1e-15: FD is no witness against them, so the entry
    passes and says why; a real bug elsewhere still fails."""
    x = np.random.default_rng(3).standard_normal((5, 6))
    y = np.array([0, 1, 2, 3, 0])
    for bug, expected in ((None, "pass"), ("b2 not summed", "backward")):
        lm, model = _two_layer(bug)
        pre = x.reshape(5, -1) @ model.params["W1"]
        model.params["b1"] = -pre[0] + 1e-9 * np.where(np.arange(7) % 2, 1.0, -1.0)
        entry = check_network(lm, x=x, y=y, seed=3).layers[0]
        assert entry.verdict == expected, entry
        if expected == "pass":
            assert "every probe crossed a kink; fc1.weight: 6 of 6, fc1.bias: 6 of 6" in entry.message, entry.message


def test_a_network_failure_with_an_inconclusive_layer_does_not_blame_the_wiring() -> None:
    """(network) fails while no layer failed alone: when a layer could not be judged alone it
    is named as a possible cause, and the wiring is not accused."""
    from types import SimpleNamespace

    from harness.end_to_end import _explain
    from harness.results import LayerResult, TensorResult

    def entry() -> LayerResult:
        result = LayerResult(name="(network)", kind="network", verdict="backward", dtype="float64")
        result.tensors.append(TensorResult(name="input", side="backward", shape=(2, 3), tolerance=1e-12,
                                           error_torch=0.3, error_jax=0.3, worst_index=(0, 0), worst_user=1.0,
                                           worst_ref=0.7, ok=False))
        return result

    net = SimpleNamespace(layers={}, side_effects=lambda: [])
    unsure = entry()
    _explain(unsure, net, {}, None, None, ["fc1"])
    assert unsure.message.startswith("'fc1' could not be judged alone (inconclusive), and may explain this")
    assert "wiring between layers is at fault" not in unsure.message
    judged = entry()
    _explain(judged, net, {}, None, None, [])
    assert "the wiring between layers is at fault" in judged.message
