"""CS231n's word embedding and temporal affine pairs and object-style embeddings check without
shims: ``word_embedding_backward`` returns dW alone, ``temporal_affine_*`` keep w (D, M)
(``Layout(linear="in_out")``) over (N, T, D) inputs, a numpy-ml style embedding keeps its
gradient in ``gradients['W']`` until flushed, a plain object keeps ``W`` / ``dW``."""

from __future__ import annotations

import numpy as np
import pytest

from harness import Layout, check_layer, wrap_functions, wrap_layer
from harness import spec as S

IN_OUT = Layout(linear="in_out")


def word_embedding_forward(x, W):
    out = W[x]
    return out, (x, W)


def word_embedding_backward(dout, cache):
    x, W = cache
    dW = np.zeros_like(W)
    np.add.at(dW, x, dout)
    return dW


def temporal_affine_forward(x, w, b):
    """CS231n: x (N, T, D), w (D, M), b (M,) -> (N, T, M)."""
    N, T, D = x.shape
    M = b.shape[0]
    out = x.reshape(N * T, D).dot(w).reshape(N, T, M) + b
    return out, (x, w, b, out)


def temporal_affine_backward(dout, cache):
    x, w, b, _ = cache
    N, T, D = x.shape
    M = b.shape[0]
    dx = dout.reshape(N * T, M).dot(w.T).reshape(N, T, D)
    dw = dout.reshape(N * T, M).T.dot(x.reshape(N * T, D)).T
    db = dout.sum(axis=(0, 1))
    return dx, dw, db


def temporal_affine_backward_db_per_step(dout, cache):
    """A bug: db summed over the batch only, then the last timestep's kept."""
    dx, dw, _ = temporal_affine_backward(dout, cache)
    return dx, dw, dout.sum(axis=0)[-1]


class NumpyMLEmbedding:
    """numpy-ml's shape of a layer: parameters / gradients dicts, inputs cached in a list until
    flush_gradients(), gradients accumulated with +=, backward returns nothing."""

    def __init__(self, W):
        self.parameters = {"W": W}
        self.gradients = {"W": np.zeros_like(W)}
        self.X = []

    def forward(self, X):
        self.X.append(X)
        return self.parameters["W"][X]

    def backward(self, dLdy):
        for x in self.X:
            dW = np.zeros_like(self.parameters["W"])
            for ix, v_id in enumerate(x.flatten()):
                dW[v_id] += dLdy.reshape(-1, dW.shape[1])[ix]
            self.gradients["W"] += dW

    def flush_gradients(self):
        self.X = []
        self.gradients["W"] = np.zeros_like(self.parameters["W"])


class PlainEmbedding:
    def __init__(self, W):
        self.W = W

    def forward(self, X):
        self.X = X
        return self.W[X]

    def backward(self, dLdY):
        self.dW = np.zeros_like(self.W)
        np.add.at(self.dW, self.X, dLdY)
        return self.dW  # returned as well: the single parameter's gradient, not a dx


def _rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("params", ["list", "dict"])
def test_word_embedding_pair_returning_dw_alone(params) -> None:
    W = _rng().standard_normal((10, 3))
    given = [W] if params == "list" else {"weight": W}
    spec = S.Embedding("embed", 10, 3)
    assert check_layer(
        wrap_functions(word_embedding_forward, word_embedding_backward, spec, given), input_shape=(2, 7)
    ).ok


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_temporal_affine_pair_with_w_in_out_over_sequences(dtype) -> None:
    w, b = (_rng().standard_normal(s).astype(dtype) for s in ((4, 6), (6,)))
    spec = S.Linear("affine", 4, 6)
    pair = wrap_functions(temporal_affine_forward, temporal_affine_backward, spec, [w, b], layout=IN_OUT)
    report = check_layer(pair, input_shape=(3, 5, 4))
    assert report.ok, report
    assert [t.name for t in report.layers[0].tensors] == ["output", "input", "weight", "bias"]
    assert report.layers[0].tensors[1].shape == (3, 5, 4)
    buggy = wrap_functions(temporal_affine_forward, temporal_affine_backward_db_per_step, spec, [w, b], layout=IN_OUT)
    entry = check_layer(buggy, input_shape=(3, 5, 4)).layers[0]
    assert entry.verdict == "backward" and [t.name for t in entry.tensors if not t.ok] == ["bias"]


def test_numpy_ml_style_embedding_with_flush() -> None:
    layer = NumpyMLEmbedding(_rng(1).standard_normal((8, 5)))
    wrapped = wrap_layer(layer, S.Embedding("emb", 8, 5), flush="flush_gradients", grads={"weight": "gradients['W']"})
    assert check_layer(wrapped, input_shape=(4, 3)).ok
    unflushed = wrap_layer(NumpyMLEmbedding(layer.parameters["W"]), S.Embedding("emb", 8, 5))
    entry = check_layer(unflushed, input_shape=(4, 3)).layers[0]
    assert entry.verdict != "pass"  # the inputs and gradients of earlier calls pile up without the flush


def test_plain_object_returning_its_weight_gradient() -> None:
    """A backward that returns dW (the one trainable parameter's gradient) is read as it: with
    integer-index input there is no dx it could be."""
    report = check_layer(wrap_layer(PlainEmbedding(_rng(2).standard_normal((6, 2))), S.Embedding("emb", 6, 2)))
    assert report.ok, report
    assert "ignored" not in report.layers[0].message


def embed_affine_forward(x, W, w, b):
    """One pair for a span: words -> embedding -> temporal affine."""
    h = W[x]
    return h @ w + b, (x, h, W, w)


def embed_affine_backward(dout, cache, *, padding=0):
    x, h, W, w = cache
    dh = dout @ w.T
    dW = np.zeros_like(W)
    np.add.at(dW, x, dh)
    if padding is not None:
        dW[padding] = 0.0
    return dW, np.einsum("ntd,ntm->dm", h, dout), dout.sum(axis=(0, 1))


def test_a_fused_span_opened_by_an_embedding() -> None:
    """A pair computing Embedding -> Linear at once: the span takes indices, its gradients are
    read in forward order, the padding row is held still in finite differences."""
    span = S.Sequential([S.Embedding("embed", 7, 3, padding_idx=0), S.Linear("proj", 3, 4)], name="head")
    rng = _rng(3)
    params = [rng.standard_normal((7, 3)), rng.standard_normal((3, 4)), rng.standard_normal(4)]
    pair = wrap_functions(embed_affine_forward, embed_affine_backward, span, params, layout=IN_OUT)
    report = check_layer(pair, input_shape=(2, 5))
    assert report.ok, report
    assert [t.name for t in report.layers[0].tensors] == ["output", "embed.weight", "proj.weight", "proj.bias"]
    assert report.layers[0].input_gradient == "not differentiable"

    def learns_padding(dout, cache):
        return embed_affine_backward(dout, cache, padding=None)

    bad = wrap_functions(embed_affine_forward, learns_padding, span, params, layout=IN_OUT)
    entry = check_layer(bad, input_shape=(2, 5)).layers[0]
    assert entry.verdict == "backward" and [t.name for t in entry.tensors if not t.ok] == ["embed.weight"]


def test_a_fused_span_with_a_wrong_forward() -> None:
    """Layout detection reruns the span under other layouts: it has no input gradient to compare."""

    def shifted(x, W, w, b):
        return embed_affine_forward((x + 1) % W.shape[0], W, w, b)

    span = S.Sequential([S.Embedding("embed", 7, 3), S.Linear("proj", 3, 4)], name="head")
    rng = _rng(4)
    params = [rng.standard_normal((7, 3)), rng.standard_normal((3, 4)), rng.standard_normal(4)]
    pair = wrap_functions(shifted, lambda d, c: embed_affine_backward(d, c, padding=None), span, params, layout=IN_OUT)
    entry = check_layer(pair, input_shape=(2, 5)).layers[0]
    assert entry.verdict == "forward" and not entry.tensors[0].ok
