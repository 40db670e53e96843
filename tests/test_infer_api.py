"""The front door of inference (harness.inference.api): what it refuses and why, what it treats
as a network, and how a report says its spec was inferred (terminal, JSON, HTML)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import harness as tg
from harness.adapters.refs import AdapterError
from harness.inference.api import is_network
from harness.results import LayerResult, Report


class Dense:
    def __init__(self):
        self.W, self.b = np.ones((3, 2)), np.zeros(2)

    def forward(self, x):
        return x @ self.W + self.b

    def backward(self, dy):
        return dy @ self.W.T


class Net:
    def __init__(self):
        self.fc1, self.fc2 = Dense(), Dense()

    def forward(self, x):
        return self.fc2.forward(self.fc1.forward(x))


class Stack:
    def __init__(self):
        self.layers = [Dense(), Dense()]

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x


def test_what_counts_as_a_network() -> None:
    assert is_network(Net()) and is_network(Stack())
    assert is_network([Dense(), Dense()]) and is_network({"a": Dense(), "b": Dense()})
    assert not is_network(Dense())
    assert not is_network((Dense.forward, Dense.backward))  # a function pair is a layer
    assert not is_network([]) and not is_network([Dense(), 3])


def test_a_class_instead_of_an_instance_is_refused_by_name() -> None:
    with pytest.raises(AdapterError, match=r"the class Dense, not an instance: pass Dense\(\.\.\.\)"):
        tg.infer(Dense, np.zeros((2, 3)))


def test_an_object_without_forward_is_refused() -> None:
    with pytest.raises(AdapterError, match="a dict has no forward"):
        tg.infer({"W": np.ones(3)}, np.zeros((2, 3)))


def test_no_input_asks_for_x_or_input_shape() -> None:
    with pytest.raises(AdapterError, match=r"a Dense: pass x= .* or input_shape="):
        tg.infer(Dense())
    with pytest.raises(AdapterError, match="input_shape must be a tuple of ints"):
        tg.infer(Dense(), input_shape=3)


def test_check_network_refuses_a_single_layer_without_spec() -> None:
    with pytest.raises(AdapterError, match=r"check_network: a Dense holds no layer objects.*checked with check_layer"):
        tg.check_network(Dense(), x=np.random.default_rng(0).standard_normal((4, 3)))


def _report() -> Report:
    layer = LayerResult(name="dense", kind="Linear", verdict="pass", dtype="float64")
    note = {
        "status": "ambiguous",
        "seconds": 0.1,
        "layers": ["dense: ambiguous: Linear ...; also fits: ..."],
        "python": "import harness as tg\n",
    }
    return Report(seed=0, layers=[layer], inferred=note)


def test_the_report_says_its_spec_was_inferred_everywhere() -> None:
    from rich.console import Console

    from harness.report import render_html, render_terminal
    from harness.report.validate import report_data

    report = _report()
    assert "spec inferred from the code (ambiguous):" in str(report)
    d = json.loads(report.to_json())
    assert d["inferred"]["status"] == "ambiguous"
    report_data(d)  # follows the schema
    console = Console(record=True, width=120)
    render_terminal(report, console)
    assert "spec inferred from the code: ambiguous" in console.export_text()
    assert "spec inferred from the code (ambiguous)" in render_html(report)
    # a report whose spec was given has no such key (snapshots stay as they were)
    assert (
        "inferred"
        not in Report(
            seed=0, layers=[LayerResult(name="dense", kind="Linear", verdict="pass", dtype="float64")]
        ).to_dict()
    )


class FC:  # the passes under other names, parameters and gradients as this code names them
    def __init__(self):
        rng = np.random.default_rng(0)
        self.weights, self.bias = rng.normal(size=(3, 4)), np.zeros(3)

    def fprop(self, x):
        self.x = x
        return x @ self.weights.T + self.bias

    def bprop(self, dy):
        self.grad_weights, self.grad_bias = dy.T @ self.x, dy.sum(0)
        return dy @ self.weights


def test_passes_under_other_names_are_found_and_pinned() -> None:
    x = np.random.default_rng(1).normal(size=(5, 4))
    inference = tg.infer(FC(), x)
    assert inference.exact and inference.spec == tg.Linear("fc", 4, 3)
    assert inference.layers[0].wrap_kwargs["forward"] == "fprop"
    assert 'forward="fprop"' in inference.to_python() and 'backward="bprop"' in inference.to_python()
    assert tg.check_layer(FC(), x=x).ok
    with pytest.raises(AdapterError, match=r"a FC has no forward\(\) / backward\(dy\)"):
        tg.infer(FC(), x, forward="predict")  # declared, but there is no such method


class DrawsMask:  # a dropout drawing from numpy's global generator
    def forward(self, x):
        self.mask = np.random.rand(*x.shape) > 0.5
        return x * self.mask / 0.5

    def backward(self, dy):
        return dy * self.mask / 0.5


def test_inference_leaves_the_global_generators_as_they_were() -> None:
    np.random.seed(3)
    expected = np.random.rand()
    np.random.seed(3)
    tg.infer(DrawsMask(), np.ones((4, 5)))
    assert np.random.rand() == expected


class OneExample:  # one vector (D,) at a time: W (out, in)
    def __init__(self):
        self.W, self.b = np.random.default_rng(0).normal(size=(3, 4)), np.zeros(3)

    def forward(self, x):
        self.x = x
        return self.W @ x + self.b

    def backward(self, dy):
        self.dW, self.db = np.outer(dy, self.x), dy
        return self.W.T @ dy


def test_one_example_code_checked_from_input_shape_sees_two_different_examples(monkeypatch) -> None:
    import harness.check as check_mod

    seen = {}
    real = check_mod.check_point

    def spy(wrapped, x, *args, **kwargs):
        seen["x"] = x
        return real(wrapped, x, *args, **kwargs)

    monkeypatch.setattr(check_mod, "check_point", spy)
    report = tg.check_layer(OneExample(), input_shape=(4,))
    assert report.ok and seen["x"].shape == (2, 4) and not np.array_equal(seen["x"][0], seen["x"][1])


class Locked:  # a layer that cannot be copied: inference runs the code on a copy only
    def __init__(self):
        import threading

        self.W, self.lock = np.ones((3, 2)), threading.Lock()

    def forward(self, x):
        return x @ self.W

    def backward(self, dy):
        return dy @ self.W.T


def test_a_layer_that_cannot_be_copied_is_refused_by_name() -> None:
    with pytest.raises(AdapterError, match=r"Locked cannot be copied \(TypeError.*make it copyable"):
        tg.infer(Locked(), np.ones((2, 3)))


def test_a_pair_whose_items_are_not_functions_is_refused() -> None:
    from harness.inference.layer import infer_layer

    with pytest.raises(AdapterError, match=r"a function pair is \(forward, backward\), two callables"):
        infer_layer((Dense().forward, "backward"), np.ones((2, 3)))


def test_a_spec_that_cannot_be_written_as_python_still_reports(monkeypatch) -> None:
    import harness.inference.emit as emit
    from harness.inference.api import report_note

    def broken(*args, **kwargs):
        raise ValueError("no source")

    monkeypatch.setattr(emit, "to_python", broken)
    note = report_note(tg.infer(Dense(), np.ones((2, 3))))
    assert note["status"] == "exact" and note["python"].startswith("# could not write the spec as Python: ValueError")
