"""The Embedding spec: shapes, parameters, serialisation, integer-index inputs (dtype, range,
where in a network), the random indices a check draws, and every validation error."""

from __future__ import annotations

import numpy as np
import pytest

from harness import spec as S


def test_shapes_params_and_round_trip() -> None:
    e = S.Embedding("emb", 11, 4, padding_idx=0)
    assert e.output_shape((3, 5)) == (3, 5, 4)
    assert e.output_shape((6,)) == (6, 4)
    assert e.output_shape((2, 3, 2)) == (2, 3, 2, 4)
    assert e.local_params((3, 5)) == {"weight": S.ParamInfo((11, 4))}
    assert S.from_dict(e.to_dict()) == e and e.to_dict()["padding_idx"] == 0
    assert S.LAYER_KINDS["Embedding"] is S.Embedding
    assert S.Embedding.index_input and not S.Linear.index_input


def test_a_network_opened_by_an_embedding_takes_indices() -> None:
    net = S.Sequential([S.Embedding("emb", 9, 4), S.Linear("fc", 4, 3)])
    assert S.index_layer(net) is net.layers[0]
    assert S.index_layer(S.Sequential([S.Linear("fc", 4, 3)])) is None
    assert S.example_input_shape(net) == (3, 5)
    assert S.layer_shapes(net, (3, 5)) == {"emb": ((3, 5), (3, 5, 4)), "fc": ((3, 5, 4), (3, 5, 3))}
    assert list(S.init_params(net, (3, 5))) == ["emb.weight", "fc.weight", "fc.bias"]
    x = S.read_input(net, np.array([[1, 2], [8, 0]], dtype=np.int32))
    assert x.dtype == np.int64 and x.tolist() == [[1, 2], [8, 0]]
    assert S.read_input(S.Sequential([S.Linear("fc", 4, 3)]), np.ones((2, 4), np.float32)).dtype == np.float64


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: S.Embedding("emb", 0, 4), "layer 'emb': num_embeddings must be a positive int, got 0"),
        (lambda: S.Embedding("emb", 5, 2.0), "layer 'emb': embedding_dim must be a positive int, got 2.0"),
        (lambda: S.Embedding("emb", True, 2), "num_embeddings must be a positive int, got True"),
        (
            lambda: S.Embedding("emb", 5, 2, padding_idx=5),
            "padding_idx=5 is out of range: expected 0 <= padding_idx < num_embeddings=5",
        ),
        (lambda: S.Embedding("emb", 5, 2, padding_idx=-1), "PyTorch reads a negative padding_idx from the end: pass 4"),
        (lambda: S.Embedding("emb", 5, 2, padding_idx=-6), "padding_idx=-6 is out of range"),
        (lambda: S.Embedding("emb", 5, 2, padding_idx=1.0), "padding_idx must be None or an int, got 1.0"),
        (lambda: S.Embedding("e.1", 5, 2), "layer name 'e.1' is not valid"),
        (lambda: S.from_dict({"kind": "Embedding", "name": "e", "num_embeddings": 3}), "Embedding: "),
    ],
)
def test_construction_errors(make, message: str) -> None:
    with pytest.raises(S.SpecError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        make()


@pytest.mark.parametrize(
    "x, message",
    [
        (
            np.array([[0, 1], [2, 7]]),
            "layer 'emb': index 7 at [1, 1] is out of range: expected 0 <= index < num_embeddings=7 (1 of 4 out of range)",
        ),
        (np.array([[0, -1], [2, 3]]), "index -1 at [0, 1] is out of range"),
        (np.array([[0.0, 1.0], [2.0, 3.0]]), "layer 'emb': an Embedding takes integer indices; the input is float64"),
        (np.array([[True, False]]), "the input is bool"),
    ],
)
def test_input_errors_name_the_layer_the_value_and_the_fix(x, message: str) -> None:
    net = S.Sequential([S.Embedding("emb", 7, 3), S.ReLU("relu")])
    with pytest.raises(S.SpecError) as e:
        S.read_input(net, x)
    assert message in str(e.value)


def test_an_embedding_elsewhere_than_first_is_refused() -> None:
    late = S.Sequential([S.Linear("fc", 4, 3), S.Embedding("emb", 9, 4)])
    with pytest.raises(
        S.SpecError, match="layer 'emb': an Embedding takes integer indices, so it must be the network's first layer"
    ):
        S.index_layer(late)
    block = S.Sequential([S.Residual("res", [S.Embedding("emb", 9, 4)])])
    with pytest.raises(S.SpecError, match="it cannot open the residual block 'res'"):
        S.index_layer(block)
    with pytest.raises(S.SpecError, match=r"expects integer indices \(N, \.\.\.\), got shape \(\)"):
        S.Embedding("emb", 3, 2)._infer((), "emb")


@pytest.mark.parametrize("shape", [(3, 5), (2, 4, 3), (4, 2), (6,), (5, 1), (2, 1)])
@pytest.mark.parametrize("pad", [None, 0, 3])
def test_random_indices_repeat_a_token_in_every_example_and_hold_the_padding(shape, pad) -> None:
    layer = S.Embedding("emb", 6, 2, padding_idx=pad)
    for seed in range(5):
        x = layer.random_indices(shape, np.random.default_rng(seed))
        assert x.dtype == np.int64 and x.shape == shape and x.min() >= 0 and x.max() < 6
        rows = x.reshape(shape[0], -1) if int(np.prod(shape[1:])) > 1 else x.reshape(1, -1)
        if pad is not None:
            assert (x == pad).any()
        if rows.shape[1] >= 3 or (pad is None and rows.shape[1] >= 2):
            for row in rows:  # a token other than the padding index occurs twice
                _, counts = np.unique(row[row != pad] if pad is not None else row, return_counts=True)
                assert (counts >= 2).any(), (shape, pad, seed, x)
        if pad is not None and rows.shape[1] >= 3:
            assert all((row == pad).any() for row in rows)
