"""Recurrent specs (issue 17): names, parameter shapes, shape inference, the JSON form, initial
values, and a SpecError naming the layer for every bad argument."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from harness import spec as S


def shapes(layer: S.Layer, x_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    return {k: v.shape for k, v in layer.local_params(x_shape).items()}


def test_sequence_layers_params_and_output_shapes() -> None:
    assert S.RNN("r", 3, 4).output_shape((2, 5, 3)) == (2, 5, 4)
    assert shapes(S.RNN("r", 3, 4), (2, 5, 3)) == {
        "weight_ih": (4, 3), "weight_hh": (4, 4), "bias_ih": (4,), "bias_hh": (4,), "h0": (2, 4)}
    assert shapes(S.LSTM("l", 3, 4, bias="fused", cell_state=True), (2, 5, 3)) == {
        "weight_ih": (16, 3), "weight_hh": (16, 4), "bias": (16,), "h0": (2, 4), "c0": (2, 4)}
    assert shapes(S.GRU("g", 3, 4, bias="none", initial_state=False), (2, 5, 3)) == {
        "weight_ih": (12, 3), "weight_hh": (12, 4)}
    assert shapes(S.LSTM("l", 3, 4, initial_state=False), (2, 5, 3)) == {
        "weight_ih": (16, 3), "weight_hh": (16, 4), "bias_ih": (16,), "bias_hh": (16,)}


def test_states_come_first_in_the_calling_order() -> None:
    """CS231n's rnn_forward(x, h0, Wx, Wh, b) and lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)."""
    assert list(S.RNN("r", 3, 4, bias="fused").local_params((2, 5, 3))) == ["h0", "weight_ih", "weight_hh", "bias"]
    assert list(S.LSTMCell("c", 3, 4).local_params((2, 3))) == ["h", "c", "weight_ih", "weight_hh", "bias_ih",
                                                                "bias_hh"]


def test_step_forms() -> None:
    assert S.RNNCell("c", 3, 4).output_shape((2, 3)) == (2, 4)
    assert S.GRUCell("c", 3, 4).output_shape((2, 3)) == (2, 4)
    assert S.LSTMCell("c", 3, 4).output_shape((2, 3)) == (2, 2, 4)  # stack([next_h, next_c], 1)
    assert shapes(S.LSTMCell("c", 3, 4, bias="fused"), (2, 3)) == {
        "weight_ih": (16, 3), "weight_hh": (16, 4), "bias": (16,), "h": (2, 4), "c": (2, 4)}
    assert shapes(S.RNNCell("c", 3, 4, nonlinearity="relu", bias="none"), (2, 3)) == {
        "weight_ih": (4, 3), "weight_hh": (4, 4), "h": (2, 4)}


def test_gate_orders_and_counts() -> None:
    assert (S.RNN.gates, S.LSTM.gates, S.GRU.gates) == ("", "ifgo", "rzn")
    assert [c("x", 2, 3).num_gates for c in (S.RNN, S.LSTM, S.GRU, S.RNNCell, S.LSTMCell, S.GRUCell)] == [
        1, 4, 3, 1, 4, 3]


def test_pytorch_bias_spelling_is_accepted() -> None:
    assert S.LSTM("l", 2, 3, bias=True).bias == "separate"
    assert S.GRUCell("g", 2, 3, bias=False).bias == "none"
    layer = S.LSTM("l", 2, 3, bias=np.bool_(True), cell_state=np.bool_(True))
    assert json.loads(json.dumps(layer.to_dict()))["cell_state"] is True and layer.bias == "separate"


@pytest.mark.parametrize("layer", [
    S.RNN("r", 3, 4, nonlinearity="relu", bias="fused", initial_state=False),
    S.LSTM("l", 3, 4, bias="none", cell_state=True),
    S.GRU("g", 3, 4),
    S.RNNCell("rc", 3, 4),
    S.LSTMCell("lc", 3, 4, bias="fused"),
    S.GRUCell("gc", 3, 4, bias="none"),
])
def test_json_round_trip(layer: S.Layer) -> None:
    assert S.from_dict(json.loads(json.dumps(layer.to_dict()))) == layer


def test_init_params_and_example_input() -> None:
    spec = S.Sequential([S.LSTM("lstm", 3, 4, cell_state=True), S.Linear("fc", 4, 2)])
    assert S.example_input_shape(spec) == (3, 5, 3)
    assert S.example_input_shape(S.LSTMCell("c", 6, 2)) == (3, 6)
    p = S.init_params(spec, (3, 5, 3), seed=1)
    for state in ("lstm.h0", "lstm.c0"):
        assert p[state].shape == (3, 4) and 0 < np.abs(p[state]).max() <= 0.5  # small, random, not zero
    assert not np.array_equal(p["lstm.h0"], p["lstm.c0"])
    assert S.init_params(spec, (3, 5, 3), seed=1)["lstm.weight_hh"].tolist() == p["lstm.weight_hh"].tolist()


@pytest.mark.parametrize("make,message", [
    (lambda: S.RNN("r", 0, 4), "layer 'r': input_size must be a positive int, got 0"),
    (lambda: S.LSTM("l", 3, 2.5), "layer 'l': hidden_size must be a positive int, got 2.5"),
    (lambda: S.LSTM("l", True, 2), "layer 'l': input_size must be a positive int, got True"),
    (lambda: S.RNN("r", 3, 4, nonlinearity="sigmoid"), "layer 'r': nonlinearity must be 'tanh' or 'relu'"),
    (lambda: S.RNNCell("r", 3, 4, nonlinearity="gelu"), "layer 'r': nonlinearity must be 'tanh' or 'relu'"),
    (lambda: S.LSTM("l", 3, 4, bias="both"), "layer 'l': bias must be one of ('separate', 'fused', 'none')"),
    (lambda: S.GRU("g", 3, 4, bias="fused"), "layer 'g': bias must be one of ('separate', 'none'), got 'fused' "
                                              "(a GRU's b_hn is multiplied by r"),
    (lambda: S.GRUCell("g", 3, 4, bias="fused"), "layer 'g': bias must be one of ('separate', 'none')"),
    (lambda: S.LSTM("l", 3, 4, initial_state="yes"), "layer 'l': initial_state must be True or False"),
    (lambda: S.LSTM("l", 3, 4, cell_state=1), "layer 'l': cell_state must be True or False"),
    (lambda: S.GRU("a.b", 3, 4), "layer name 'a.b' is not valid"),
])
def test_bad_arguments_name_the_layer(make, message) -> None:
    with pytest.raises(S.SpecError, match=re.escape(message)):
        make()


@pytest.mark.parametrize("layer,shape,message", [
    (S.RNN("r", 3, 4), (2, 3), r"layer 'r': expects input \(N, T, D\) \(batch first\), got shape \(2, 3\)"),
    (S.LSTM("l", 3, 4), (2, 5, 6), r"layer 'l': input_size=3 but the input has 6 features \(input shape \(2, 5, 6\)"),
    (S.GRUCell("g", 3, 4), (2, 5, 3), r"layer 'g': expects input \(N, D\), got shape \(2, 5, 3\)"),
    (S.LSTMCell("c", 3, 4), (2, 4), r"layer 'c': input_size=3 but the input has 4 features"),
])
def test_bad_input_shapes_name_the_layer(layer, shape, message) -> None:
    with pytest.raises(S.SpecError, match=message):
        layer.output_shape(shape)


def test_from_dict_rejects_unknown_fields() -> None:
    with pytest.raises(S.SpecError, match=r"LSTM: .*unexpected keyword argument 'num_layers'"):
        S.from_dict({"kind": "LSTM", "name": "l", "input_size": 2, "hidden_size": 3, "num_layers": 2})
