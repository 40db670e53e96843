"""Issue 12: side effects are failing findings on the side that made them (unless declared
with inplace=), errors name their side and the user's own frame, a forward bug behind a
backward crash is still found, and one object mapped at two places of a network is named."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from harness import spec as S
from harness.adapters.arrays import fingerprint
from harness.adapters.layer import AdapterError, wrap_functions, wrap_layer
from harness.adapters.layouts import Layout
from harness.adapters.network import wrap_network
from harness.check import check_layer, check_network
from harness.report.html import render_html
from harness.report.terminal import headline, table
from harness.report.validate import report_data
from zoo.layers import (Dense, DenseBackwardCrashes, DenseNoBiasBackwardCrashes, DenseStepsInBackward, Dropout,
                        DropoutScalesUpstreamInPlace, ReLU, ReLUInPlaceForward, ReLUZeroesCachedInput)

IN_OUT = Layout(linear="in_out")
LIN = S.Linear("fc", 6, 4)
DROP = S.Dropout("drop", 0.5)
SHAPE = (2, 3, 4, 5)


def _prints(user) -> dict[str, str]:
    return {k: fingerprint(v) for k, v in vars(user).items() if isinstance(v, np.ndarray)}


# --------------------------------------------------------------------------- item 2: side effects


def test_dropout_scaling_its_upstream_in_place_fails_the_backward_and_the_callers_array_is_kept() -> None:
    user = DropoutScalesUpstreamInPlace()
    layer = check_layer(user, DROP, input_shape=SHAPE, lazy=True).layers[0]
    assert layer.verdict == "backward"
    assert all(t.ok for t in layer.tensors)  # the values are right: the write alone fails it
    found = [d for d in layer.diagnosis if d.startswith("backward writes into its upstream gradient")]
    assert len(found) == 1 and "the caller's array is changed" in found[0] and "inplace={'upstream'}" in found[0]
    wrapped = wrap_layer(DropoutScalesUpstreamInPlace(), DROP, lazy=True)
    wrapped.forward(np.ones(SHAPE))
    g = np.ones(SHAPE)
    wrapped.backward(g)
    assert wrapped.grad_mutated and np.array_equal(g, np.ones(SHAPE))  # the harness handed a copy


def test_the_correct_dropout_passes_and_a_declared_write_is_not_a_finding() -> None:
    assert check_layer(Dropout(), DROP, input_shape=SHAPE, lazy=True).ok
    report = check_layer(DropoutScalesUpstreamInPlace(), DROP, input_shape=SHAPE, lazy=True, inplace={"upstream"})
    assert report.ok and not report.layers[0].diagnosis, str(report)


def test_relu_zeroing_its_cached_input_fails_the_backward_and_the_users_input_is_untouched() -> None:
    x = np.random.default_rng(0).standard_normal(SHAPE)
    keep = x.copy()
    layer = check_layer(ReLUZeroesCachedInput(), S.ReLU("relu"), x=x).layers[0]
    assert layer.verdict == "backward", layer
    assert any(d.startswith("backward writes into the input array its forward was given (the cached input)")
               and "values changed, first at" in d for d in layer.diagnosis), layer.diagnosis
    assert np.array_equal(x, keep)
    assert check_layer(ReLU(), S.ReLU("relu"), x=x).ok


def test_a_forward_writing_into_its_input_fails_the_forward_unless_declared() -> None:
    x = np.random.default_rng(1).standard_normal(SHAPE)
    keep = x.copy()
    layer = check_layer(ReLUInPlaceForward(), S.ReLU("relu"), x=x).layers[0]
    assert layer.verdict == "forward"
    assert any(d.startswith("forward writes into its input array: the caller's array is changed") for d in layer.diagnosis)
    assert "note: the forward writes into its input" not in layer.message  # a finding now, not a note
    assert np.array_equal(x, keep)
    assert check_layer(ReLUInPlaceForward(), S.ReLU("relu"), x=x, inplace={"input"}).ok


def test_a_backward_stepping_the_weights_fails_the_backward_and_the_model_is_restored() -> None:
    user = DenseStepsInBackward()
    before = _prints(user)
    layer = check_layer(user, LIN, input_shape=(5, 6), layout=IN_OUT).layers[0]
    assert {k: v for k, v in _prints(user).items() if k in before} == before
    assert layer.verdict == "backward" and all(t.ok for t in layer.tensors)
    assert any(d.startswith("backward changes parameter 'weight': the model is changed by a backward pass")
               for d in layer.diagnosis), layer.diagnosis
    assert not any("not deterministic" in d for d in layer.diagnosis)
    assert check_layer(DenseStepsInBackward(), LIN, input_shape=(5, 6), layout=IN_OUT, inplace={"params"}).ok


def test_a_function_pair_clipping_its_weight_in_place_is_found_and_the_users_array_never_written() -> None:
    def forward(x, w, b):
        np.clip(w, -0.5, 0.5, out=w)  # "weight clipping" in the forward
        return x @ w + b, (x, w)

    def backward(dout, cache):
        x, w = cache
        return dout @ w.T, x.T @ dout, dout.sum(axis=0)

    w, b = np.random.default_rng(2).normal(size=(6, 4)), np.zeros(4)
    keep = w.copy()
    fc = wrap_functions(forward, backward, LIN, (w, b), layout=IN_OUT)
    fc.forward(np.ones((3, 6)))
    assert np.array_equal(w, keep)  # handed a copy, not the user's own array
    layer = check_layer(fc, x=np.random.default_rng(3).standard_normal((3, 6))).layers[0]
    assert layer.verdict in ("forward", "both")
    assert any(d.startswith("forward changes parameter 'weight'") for d in layer.diagnosis), layer.diagnosis
    assert np.array_equal(w, keep)


def test_an_unknown_inplace_value_is_a_clear_adapter_error() -> None:
    with pytest.raises(AdapterError, match=r"layer 'relu': inplace= has the unknown value 'inputs' \(did you mean "
                                           r"'input'\?\); known: 'input': "):
        wrap_layer(ReLU(), S.ReLU("relu"), inplace={"inputs"})
    with pytest.raises(AdapterError, match="inplace= has the unknown value 'grad'"):
        wrap_functions(lambda x: (x, None), lambda d, c: d, S.ReLU("relu"), inplace=["grad"])
    with pytest.raises(AdapterError, match="wrap_network: inplace= takes a set of names"):
        wrap_network({}, S.Sequential([S.ReLU("relu")]), inplace=3)


class Net:
    def __init__(self, layers):
        self.layers = layers

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, d):
        for layer in reversed(self.layers):
            d = layer.backward(d)
        return d


NET_SPEC = S.Sequential([S.Linear("fc1", 4, 6), S.ReLU("relu1"), S.Linear("fc2", 6, 6), S.ReLU("relu2"),
                         S.Linear("fc3", 6, 3)])


def _net(relu1, relu2, cls=Net):
    net = cls([Dense(4, 6, seed=1), relu1, Dense(6, 6, seed=2), relu2, Dense(6, 3, seed=3)])
    names = ["fc1", "relu1", "fc2", "relu2", "fc3"]
    return net, wrap_network(dict(zip(names, net.layers)), NET_SPEC, forward=net.forward, backward=net.backward,
                             layout=IN_OUT)


def test_a_network_writing_into_its_input_and_upstream_gradient_fails_its_entry() -> None:
    class Careless(Net):
        def forward(self, x):
            m = x.mean()
            x -= m  # centres the caller's batch in place
            return super().forward(x + m)

        def backward(self, d):
            dx = super().backward(d)
            d[...] = 0  # "frees" the gradient
            return dx

    x = np.random.default_rng(4).standard_normal((5, 4))
    keep = x.copy()
    e2e = check_network(_net(ReLU(), ReLU(), Careless)[1], x=x).layer("(network)")
    assert np.array_equal(x, keep)
    assert e2e.verdict == "both", e2e  # forward's write and backward's write, every value right
    assert any(d.startswith("forward writes into its input array") for d in e2e.diagnosis)
    assert any(d.startswith("backward writes into its upstream gradient") for d in e2e.diagnosis)
    assert "wiring" not in e2e.message
    assert check_network(_net(ReLU(), ReLU())[1], x=x).ok


# --------------------------------------------------------------------------- item 3: errors


def test_a_forward_bug_behind_a_backward_crash_is_still_found() -> None:
    user = DenseNoBiasBackwardCrashes()
    before = _prints(user)
    report = check_layer(user, LIN, input_shape=(5, 6), layout=IN_OUT)
    layer = report.layers[0]
    assert {k: v for k, v in _prints(user).items() if k in before} == before
    assert layer.verdict == "error" and layer.error_side == "backward"
    assert [t.name for t in layer.tensors] == ["output"] and not layer.tensors[0].ok
    assert layer.message.startswith("ValueError: matmul") and "in backward" in layer.message
    assert "the forward also disagrees with the references (output:" in layer.message
    data = report_data(report)  # the schema (and its validator) take the new field
    assert data["layers"][0]["error_side"] == "backward"
    assert headline(report).startswith("fix first: fc (error in the backward)")
    html = render_html(report)
    assert "error (backward)" in html


def test_a_right_forward_before_a_backward_crash_passes_its_row() -> None:
    layer = check_layer(DenseBackwardCrashes(), LIN, input_shape=(5, 6), layout=IN_OUT).layers[0]
    assert layer.verdict == "error" and layer.error_side == "backward"
    assert [t.name for t in layer.tensors] == ["output"] and layer.tensors[0].ok
    assert "also disagrees" not in layer.message


def test_a_forward_crash_names_the_forward_and_the_schema_takes_it(tmp_path) -> None:
    class Crashes(Dense):
        def forward(self, x):
            raise RuntimeError("boom")

    report = check_layer(Crashes(), LIN, input_shape=(5, 6), layout=IN_OUT)
    layer = report.layers[0]
    assert layer.error_side == "forward" and not layer.tensors
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((__import__("harness").report.files.SCHEMA_PATH).read_text())
    jsonschema.validate(json.loads(report.to_json()), schema)
    from rich.console import Console
    console = Console(width=120, record=True, file=open(tmp_path / "out.txt", "w"))
    console.print(table(report))
    assert "error (forward)" in console.export_text()
    bad = report.to_dict()
    bad["layers"][0]["error_side"] = "sideways"
    with pytest.raises(Exception, match="error_side: expected one of 'forward', 'backward', 'setup', null"):
        report_data(bad)


def test_nan_parameters_are_a_setup_error() -> None:
    user = Dense()
    user.W[0, 0] = np.nan
    layer = check_layer(user, LIN, input_shape=(5, 6), layout=IN_OUT).layers[0]
    assert layer.verdict == "error" and layer.error_side == "setup"


def test_the_frame_is_the_users_line_calling_numpy_in_a_helper_file(tmp_path, monkeypatch) -> None:
    (tmp_path / "im2col_helpers.py").write_text(textwrap.dedent("""\
        import numpy as np


        def im2col(x, k, pad):
            xp = np.pad(x, ((0, 0), (0, 0), (pad, pad)), mode="constant")  # 3 pad widths for 4 axes
            return xp
        """))
    (tmp_path / "my_conv.py").write_text(textwrap.dedent("""\
        import numpy as np
        from im2col_helpers import im2col


        class Conv:
            def __init__(self):
                self.W = np.ones((3, 2, 3, 3)) * 0.1
                self.b = np.zeros(3)

            def forward(self, x):
                self.cols = im2col(x, 3, 1)
                return self.cols

            def backward(self, dout):
                return dout
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    from my_conv import Conv

    layer = check_layer(Conv(), S.Conv2d("conv", 2, 3, 3, padding=1), input_shape=(2, 2, 5, 5)).layers[0]
    assert layer.verdict == "error" and layer.error_side == "forward"
    assert f"at {tmp_path / 'im2col_helpers.py'}:5 in im2col" in layer.message, layer.message
    assert "numpy" not in layer.message.rpartition(" at ")[2]


# --------------------------------------------------------------------------- item 4: one object, two places


def test_one_relu_object_at_two_places_is_named_as_the_cause() -> None:
    shared = ReLU()
    report = check_network(_net(shared, shared)[1], input_shape=(5, 4), seed=1)
    e2e = report.layer("(network)")
    assert not e2e.ok and e2e.downstream_of is None
    assert e2e.message.startswith("'relu1' and 'relu2' are the same object: its second forward overwrites the "
                                  "cache the first backward needs"), e2e.message
    assert "wiring between layers" not in e2e.message
    for path in ("relu1", "relu2"):  # each passes alone, and says why the network fails
        assert report.layer(path).ok
        assert "the network maps this object at 'relu1' and 'relu2'" in report.layer(path).message
    assert report.first_failure == "(network)"


class Identity:
    """Keeps nothing between forward and backward."""

    def forward(self, x):
        return x

    def backward(self, d):
        return d


def test_a_pure_object_at_two_places_passes_with_a_note() -> None:
    spec = S.Sequential([S.Linear("fc1", 4, 6), S.Dropout("drop1", training=False), S.Linear("fc2", 6, 6),
                         S.Dropout("drop2", training=False), S.Linear("fc3", 6, 3)])
    same = Identity()
    net = Net([Dense(4, 6, seed=1), same, Dense(6, 6, seed=2), same, Dense(6, 3, seed=3)])
    wrapped = wrap_network(dict(zip(["fc1", "drop1", "fc2", "drop2", "fc3"], net.layers)), spec,
                           forward=net.forward, backward=net.backward, layout=IN_OUT)
    report = check_network(wrapped, input_shape=(5, 4))
    assert report.ok, str(report)
    assert "note: 'drop1' and 'drop2' are the same object" in report.layer("(network)").message


def test_a_network_declaring_its_writes_passes_and_its_layers_inherit_the_declaration() -> None:
    class Centres(Net):
        def forward(self, x):
            m = x.mean()
            x -= m
            return super().forward(x + m)

    net = Centres([Dense(4, 6, seed=1), ReLUInPlaceForward(), Dense(6, 3, seed=2)])
    spec = S.Sequential([S.Linear("fc1", 4, 6), S.ReLU("relu"), S.Linear("fc2", 6, 3)])
    layers = dict(zip(["fc1", "relu", "fc2"], net.layers))
    strict = check_network(wrap_network(layers, spec, forward=net.forward, backward=net.backward, layout=IN_OUT),
                           input_shape=(5, 4))
    assert strict.layer("relu").verdict == "forward" and strict.layer("(network)").verdict == "forward"
    declared = check_network(wrap_network(layers, spec, forward=net.forward, backward=net.backward, layout=IN_OUT,
                                          inplace={"input"}), input_shape=(5, 4))
    assert declared.ok, str(declared)


def test_a_loss_object_whose_backward_raises_names_the_backward() -> None:
    class SoftmaxLoss:
        def forward(self, s, y):
            e = np.exp(s - s.max(axis=1, keepdims=True))
            self.p, self.y = e / e.sum(axis=1, keepdims=True), y
            return -np.log(self.p[np.arange(len(y)), y]).mean()

        def backward(self):
            raise IndexError("labels not one-hot")

    from harness.adapters.loss import wrap_loss

    _, wrapped = _net(ReLU(), ReLU())
    entry = check_network(wrapped, input_shape=(5, 4),
                          loss=wrap_loss(SoftmaxLoss(), S.SoftmaxCrossEntropy(), style="object")).layer("(loss)")
    assert entry.verdict == "error" and entry.error_side == "backward"
    assert "IndexError: labels not one-hot" in entry.message and "in backward" in entry.message
