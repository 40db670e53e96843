"""Bug zoo, the embedding family (tests/zoo/embedding.py): word embeddings and temporal affine
layers, correct ones passing at 20 seeds in float64 and float32 (seeds 0-1 by default, 2-19
under -m slow) with no false alarm and no inconclusive verdict, every mutant caught on the
right side with its diagnosis, the user's arrays untouched; and in a network Embedding ->
temporal affine, a mutant is the first failure, under its own name."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import seeds
from harness import check_network, wrap_network
from harness.adapters.arrays import fingerprint
from harness.check import check_layer
from test_zoo import _build, _params
from zoo import embedding as Z

CORRECT, MUTANTS = Z.CORRECT, Z.MUTANTS


def _arrays(user) -> dict[str, str]:
    """Fingerprints of the parameters the code was given: a pair's arrays, an object's W, w, b
    (not its gradient buffers, which its backward writes by design)."""
    if hasattr(user, "_params"):  # a wrapped function pair holds the user's arrays
        return {k: fingerprint(v) for k, v in user._params.items()}
    return {k: v for k, v in _params(user).items() if k in ("W", "w", "b")}


@pytest.mark.parametrize("name,make,spec,kwargs,shape,expected,diag", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_is_caught(name, make, spec, kwargs, shape, expected, diag) -> None:
    user = make()
    before = _arrays(user)
    report = check_layer(user, spec, input_shape=shape, seed=0, **kwargs)
    assert {k: v for k, v in _arrays(user).items() if k in before} == before
    layer = report.layers[0]
    assert report.first_failure == layer.name == spec.name
    assert layer.verdict == expected, str(report)
    assert any(diag in d for d in layer.diagnosis), (layer.diagnosis, str(report))


@pytest.mark.parametrize("name,make,spec,kwargs,shape,expected,diag", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_mutant_is_caught_at_other_seeds_in_float32(name, make, spec, kwargs, shape, expected, diag) -> None:
    for seed in (1, 2):
        report = check_layer(_build(make, spec, kwargs, seed, np.float32), spec, input_shape=shape, seed=seed)
        layer = report.layers[0]
        assert layer.verdict == expected and any(diag in d for d in layer.diagnosis), (seed, str(report))


@seeds(20)  # seeds 0-1 in the default run, 2-19 under -m slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,make,spec,kwargs,shape", CORRECT, ids=[c[0] for c in CORRECT])
def test_correct_layers_pass_over_seeds(name, make, spec, kwargs, shape, dtype, seeds) -> None:
    for seed in seeds:
        user = _build(make, spec, kwargs, seed, dtype)
        assert user.dtype == np.dtype(dtype)
        report = check_layer(user, spec, input_shape=shape, seed=seed)
        assert report.ok, (seed, str(report))
        assert not report.layers[0].diagnosis


SPEC = Z.S.Sequential([Z.EMB_PAD, Z.AFFINE])


@pytest.mark.parametrize(
    "embedding, first",
    [(Z.PaddedEmbedding, None), (Z.EmbeddingLoopAssign, "embed"), (Z.EmbeddingPaddingLearns, "embed")],
)
def test_in_a_network_the_embedding_is_named(embedding, first) -> None:
    emb, affine = embedding(seed=3), Z.TemporalAffine(seed=3)
    if embedding is Z.EmbeddingPaddingLearns:
        emb.padding_idx = 0

    def forward(captions):
        return affine.forward(emb.forward(captions))

    def backward(dout):
        emb.backward(affine.backward(dout))

    net = wrap_network({"embed": emb, "affine": affine}, SPEC, forward=forward, backward=backward, layout=Z.IN_OUT)
    report = check_network(net, input_shape=(4, 7), seed=3)
    assert report.first_failure == first, str(report)
    assert report.layer("affine").ok
    if first is not None:
        assert report.layer("(network)").downstream_of == "embed"
