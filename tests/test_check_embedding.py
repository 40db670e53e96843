"""check_layer and check_network on code whose input is integer indices (an Embedding first):
the inputs handed to the code are int64 indices in range with a repeated token in every
example and the padding index; no input gradient is asked for, compared or
finite-differenced; the report and its JSON say the input is not differentiable; a dx
returned anyway is ignored with a note; a float x is a clear error; the user's model is
never changed; a network Embedding -> Linear over (N, T) indices checks end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from harness import (
    Layout,
    check_layer,
    check_network,
    load_snapshot,
    record_snapshot,
    wrap_functions,
    wrap_layer,
    wrap_network,
)
from harness import spec as S
from harness.adapters.arrays import fingerprint
from harness.regress import compare
from harness.report import findings, render_html, report_data

IN_OUT = Layout(linear="in_out")


def word_embedding_forward(x, W):
    """CS231n: x (N, T) integer indices, W (V, D) -> out (N, T, D)."""
    return W[x], (x, W)


def word_embedding_backward(dout, cache):
    """CS231n: dW alone, the upstream gradients of repeated tokens summed."""
    x, W = cache
    dW = np.zeros_like(W)
    np.add.at(dW, x, dout)
    return dW


class Seen:
    """An object-style embedding (numpy-ml style: W, forward(X), backward(dLdY)) that records
    every input it is handed."""

    def __init__(self, W, pad=None):
        self.W, self.pad, self.inputs = W, pad, []

    def forward(self, X):
        self.inputs.append(X)
        self.X = X
        return self.W[X]

    def backward(self, dLdY):
        self.dW = np.zeros_like(self.W)
        np.add.at(self.dW, self.X, dLdY)
        if self.pad is not None:
            self.dW[self.pad] = 0.0


def _weights(v=7, d=4, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((v, d)).astype(dtype)


def test_a_cs231n_pair_passes_and_the_report_says_the_input_is_not_differentiable() -> None:
    report = check_layer(
        wrap_functions(word_embedding_forward, word_embedding_backward, S.Embedding("emb", 7, 4), [_weights()])
    )
    entry = report.layers[0]
    assert report.ok and [t.name for t in entry.tensors] == ["output", "weight"]
    assert entry.input_gradient == "not differentiable"
    assert "the input is integer indices (the Embedding 'emb'): not differentiable" in entry.message
    assert entry.tensors[1].fd is not None and entry.tensors[1].fd.consistent
    data = json.loads(report.to_json())
    assert data["layers"][0]["input_gradient"] == "not differentiable"
    report_data(data)  # the schema takes it
    assert "not differentiable" in render_html(report)
    assert any("the input is integer indices" in line for _, _, line in findings(report))


@pytest.mark.parametrize("pad", [None, 2])
def test_the_code_is_handed_int64_indices_in_range_with_repeats_and_the_padding(pad) -> None:
    layer = Seen(_weights(), pad)
    report = check_layer(wrap_layer(layer, S.Embedding("emb", 7, 4, padding_idx=pad)), input_shape=(3, 6), seed=4)
    assert report.ok, report
    assert len(layer.inputs) >= 4  # a warm-up, the point, the forward again, finite differences
    for x in layer.inputs:  # never a float input: no finite difference moves the indices
        assert isinstance(x, np.ndarray) and x.dtype == np.int64 and x.shape == (3, 6)
        assert x.min() >= 0 and x.max() < 7
    point = layer.inputs[1]
    for row in point:
        assert max(np.unique(row[row != pad] if pad is not None else row, return_counts=True)[1]) >= 2
        assert pad is None or (row == pad).any()


def test_torch_code_is_handed_long_tensors() -> None:
    class TorchEmbedding:
        def __init__(self, W):
            self.W, self.dtypes = W, []

        def forward(self, x):
            self.dtypes.append(x.dtype)
            self.x = x
            return self.W[x]

        def backward(self, dout):
            self.dW = torch.zeros_like(self.W).index_add_(0, self.x.reshape(-1), dout.reshape(-1, self.W.shape[1]))

    layer = TorchEmbedding(torch.tensor(_weights(dtype=np.float32)))
    assert check_layer(wrap_layer(layer, S.Embedding("emb", 7, 4))).ok
    assert set(layer.dtypes) == {torch.int64}


def test_a_dx_returned_anyway_is_ignored_with_a_note() -> None:
    def backward(dout, cache):
        return np.zeros(cache[0].shape), word_embedding_backward(dout, cache)  # (dx, dW)

    entry = check_layer(
        wrap_functions(word_embedding_forward, backward, S.Embedding("emb", 7, 4), [_weights()])
    ).layers[0]
    assert entry.verdict == "pass" and [t.name for t in entry.tensors] == ["output", "weight"]
    assert (
        "note: layer 'emb' takes integer indices, which have no gradient, but its backward returned a dx as well (ndarray (3, 5)); ignored"
        in entry.message
    )


def test_float_or_out_of_range_indices_given_are_a_clear_error() -> None:
    pair = wrap_functions(word_embedding_forward, word_embedding_backward, S.Embedding("emb", 7, 4), [_weights()])
    with pytest.raises(S.SpecError, match="layer 'emb': an Embedding takes integer indices; the input is float64"):
        check_layer(pair, x=np.array([[0.0, 1.0], [2.0, 3.0]]))
    with pytest.raises(S.SpecError, match="index 9 at \\[1, 0\\] is out of range"):
        check_layer(pair, x=np.array([[0, 1], [9, 3]]))
    assert check_layer(pair, x=np.array([[0, 1], [1, 3]], dtype=np.int32)).ok


def test_the_users_weights_are_never_changed() -> None:
    W = _weights(seed=3)
    W[2] = -0.0  # bits that a float round trip could change
    before = fingerprint(W)
    check_layer(
        wrap_functions(word_embedding_forward, word_embedding_backward, S.Embedding("emb", 7, 4, padding_idx=2), [W])
    )
    layer = Seen(W, 2)
    check_layer(wrap_layer(layer, S.Embedding("emb", 7, 4, padding_idx=2)))
    assert fingerprint(W) == before and layer.W is W


def test_a_padding_row_that_receives_a_gradient_is_a_backward_bug() -> None:
    """The reference gives the padding row no gradient although the forward reads it: finite
    differences hold that row still, so the code's own forward does not excuse the gradient."""
    report = check_layer(wrap_layer(Seen(_weights()), S.Embedding("emb", 7, 4, padding_idx=0)))
    entry = report.layers[0]
    assert entry.verdict == "backward" and not entry.tensors[1].ok and entry.tensors[1].fd.consistent is False


class Affine:
    """A temporal affine object: x (N, T, D), w (D, M) as CS231n keeps it."""

    def __init__(self, w, b):
        self.w, self.b = w, b

    def forward(self, x):
        self.x = x
        return x @ self.w + self.b

    def backward(self, dout):
        n, t, d = self.x.shape
        flat = dout.reshape(n * t, -1)
        self.dw, self.db = self.x.reshape(n * t, d).T @ flat, flat.sum(0)
        return (flat @ self.w.T).reshape(n, t, d)


class Captioner:
    """Embedding -> temporal affine, with its own network passes."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.embed = Seen(rng.standard_normal((9, 4)), pad=0)
        self.proj = Affine(rng.standard_normal((4, 5)) * 0.3, rng.standard_normal(5))

    def forward(self, captions):
        return self.proj.forward(self.embed.forward(captions))

    def backward(self, dout):
        self.embed.backward(self.proj.backward(dout))
        return None


SPEC = S.Sequential([S.Embedding("embed", 9, 4, padding_idx=0), S.Linear("proj", 4, 5)])


def test_a_network_over_indices_checks_end_to_end_and_chained() -> None:
    model = Captioner()
    before = {k: fingerprint(v) for k, v in (("W", model.embed.W), ("w", model.proj.w), ("b", model.proj.b))}
    layers = {"embed": model.embed, "proj": model.proj}
    report = check_network(
        wrap_network(layers, SPEC, forward=model.forward, backward=model.backward, layout=IN_OUT), input_shape=(3, 6)
    )
    assert report.ok, report
    assert [e.name for e in report.layers] == ["embed", "proj", "(network)"]
    assert [e.input_gradient for e in report.layers] == ["not differentiable", None, "not differentiable"]
    assert "input" not in [t.name for t in report.layer("(network)").tensors]
    assert "input" in [t.name for t in report.layer("proj").tensors]  # the Linear's input is activations
    assert check_network(wrap_network(layers, SPEC, layout=IN_OUT), x=np.array([[1, 1, 0, 8], [3, 3, 3, 2]])).ok
    assert before == {k: fingerprint(v) for k, v in (("W", model.embed.W), ("w", model.proj.w), ("b", model.proj.b))}
    assert all(x.dtype == np.int64 for x in model.embed.inputs)


def test_a_wiring_bug_over_indices_is_found_in_the_network_entry() -> None:
    class Wrong(Captioner):
        def forward(self, captions):
            return self.proj.forward(self.embed.forward(captions[:, ::-1]))  # the sequence reversed

    model = Wrong()
    layers = {"embed": model.embed, "proj": model.proj}
    report = check_network(
        wrap_network(layers, SPEC, forward=model.forward, backward=model.backward, layout=IN_OUT), input_shape=(2, 5)
    )
    assert [e.verdict for e in report.layers] == ["pass", "pass", "both"]


def test_a_network_with_float_input_or_an_embedding_late_is_refused() -> None:
    model = Captioner()
    net = wrap_network({"embed": model.embed, "proj": model.proj}, SPEC, layout=IN_OUT)
    with pytest.raises(S.SpecError, match="the input is float64"):
        check_network(net, x=np.zeros((2, 3)))
    late = S.Sequential([S.Linear("proj", 4, 4), S.Embedding("embed", 9, 4)])
    with pytest.raises(S.SpecError, match="so it must be the network's first layer"):
        wrap_network({"proj": Affine(np.eye(4), np.zeros(4)), "embed": Seen(_weights(9))}, late, layout=IN_OUT)


def test_a_snapshot_over_indices_round_trips(tmp_path) -> None:
    model = Captioner()
    net = wrap_network(
        {"embed": model.embed, "proj": model.proj}, SPEC, forward=model.forward, backward=model.backward, layout=IN_OUT
    )
    snap = record_snapshot(net, input_shape=(2, 5))
    assert snap.entries["embed"].arrays["x"].dtype == np.int64 and "input" not in snap.entries["embed"].arrays
    snap.save(tmp_path / "caption")
    again = load_snapshot(tmp_path / "caption")
    assert compare(net, again).entries and all(e.status == "same" for e in compare(net, again).entries)


def test_a_wrong_forward_over_indices_is_a_forward_bug() -> None:
    """A forward that looks up the wrong rows (the layout hints and hypotheses run without an
    input gradient to compare)."""

    def shifted_forward(x, W):
        return W[(x + 1) % W.shape[0]], (x, W)

    def its_backward(dout, cache):
        x, W = cache
        dW = np.zeros_like(W)
        np.add.at(dW, (x + 1) % W.shape[0], dout)
        return dW

    entry = check_layer(wrap_functions(shifted_forward, its_backward, S.Embedding("emb", 7, 4), [_weights()])).layers[0]
    assert entry.verdict == "forward" and [t.name for t in entry.tensors if not t.ok] == ["output", "weight"]
    assert entry.input_gradient == "not differentiable"
