"""The attention specs (ScaledDotProductAttention, MultiheadAttention) and the temporal
softmax cross-entropy loss: shapes, parameters, JSON round trip, the padding mask's random
initialisation, and every SpecError path with the words that make it actionable."""

from __future__ import annotations

import numpy as np
import pytest

from harness import spec as S
from harness.spec.attention import padding_mask, padding_problem

SDPA, MHA, TSCE = S.ScaledDotProductAttention, S.MultiheadAttention, S.TemporalSoftmaxCrossEntropy


def test_sdpa_shapes_and_params() -> None:
    layer = SDPA("attn", kv_len=3, value_dim=6, key_padding=True)
    assert layer.output_shape((2, 4, 5, 7)) == (2, 4, 5, 6)
    params = S.named_params(S.Sequential([layer]), (2, 4, 5, 7))
    assert {k: (v.shape, v.trainable) for k, v in params.items()} == {
        "attn.key": ((2, 4, 3, 7), True),
        "attn.value": ((2, 4, 3, 6), True),
        "attn.key_padding_mask": ((2, 3), False),
    }
    plain = SDPA("attn")  # S = T, dv = d, no mask
    assert S.named_params(S.Sequential([plain]), (2, 5, 4)).keys() == {"attn.key", "attn.value"}
    assert plain.softmax_scale(16) == 0.25 and SDPA("a", scale=0.5).softmax_scale(16) == 0.5


def test_mha_shapes_and_params() -> None:
    layer = MHA("mha", 8, 2, key_padding=True)
    assert layer.output_shape((3, 5, 8)) == (3, 5, 8) and layer.head_dim == 4
    shapes = {k: v.shape for k, v in S.named_params(S.Sequential([layer]), (3, 5, 8)).items()}
    assert shapes == {
        "mha.in_proj_weight": (24, 8),
        "mha.in_proj_bias": (24,),
        "mha.out_proj_weight": (8, 8),
        "mha.out_proj_bias": (8,),
        "mha.key_padding_mask": (3, 5),
    }
    no_bias = S.named_params(S.Sequential([MHA("mha", 8, 2, bias=False)]), (3, 5, 8))
    assert list(no_bias) == ["mha.in_proj_weight", "mha.out_proj_weight"]


@pytest.mark.parametrize(
    "layer",
    [SDPA("a", causal=True, scale=0.3, kv_len=4, value_dim=2, key_padding=True), MHA("m", 6, 3, False, True, True)],
)
def test_json_round_trip(layer) -> None:
    assert S.from_dict(layer.to_dict()) == layer
    assert layer.kind in S.LAYER_KINDS and TSCE.kind in S.LOSS_KINDS
    assert S.from_dict(TSCE("mean", 0).to_dict()) == TSCE("mean", 0)


def test_example_input_shapes() -> None:
    assert S.example_input_shape(S.Sequential([MHA("m", 6, 2)])) == (2, 5, 6)
    assert S.example_input_shape(S.Sequential([SDPA("a")])) == (2, 5, 4)


@pytest.mark.parametrize("causal", [False, True])
def test_padding_mask_init_leaves_every_query_a_key(causal: bool) -> None:
    """At a high rate nearly every key is hidden; every query still sees one (key 0 with causal)."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        m = padding_mask(rng, (6, 4), causal, rate=0.9)
        assert set(np.unique(m)) <= {0.0, 1.0} and (m == 0).any(axis=1).all()
        if causal:
            assert (m[:, 0] == 0).all()
    spec = S.Sequential([MHA("m", 4, 2, causal=causal, key_padding=True)])
    params = S.init_params(spec, (5, 3, 4), seed=1)
    S.check_params(spec, (5, 3, 4), params)  # the values pass the spec's own check
    assert 0 < params["m.key_padding_mask"].mean() < 1


def test_sdpa_key_value_are_order_one() -> None:
    """Key and value are inputs: standard normal, not fan-in scaled (scores of order 1)."""
    p = S.init_params(S.Sequential([SDPA("a")]), (4, 6, 8))
    assert 0.6 < p["a.key"].std() < 1.4 and 0.6 < p["a.value"].std() < 1.4


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: SDPA("a", causal=1), "causal must be True or False"),
        (lambda: SDPA("a", scale=0), "scale must be a positive number"),
        (lambda: SDPA("a", scale=float("nan")), "scale must be a positive number"),
        (lambda: SDPA("a", kv_len=0), "kv_len must be a positive int or None"),
        (lambda: SDPA("a", value_dim=2.0), "value_dim must be a positive int"),
        (lambda: SDPA("a.b"), "name 'a.b' is not valid"),
        (lambda: MHA("m", 6, 4), "embed_dim=6 is not divisible by num_heads=4"),
        (lambda: MHA("m", 0, 1), "embed_dim must be a positive int"),
        (lambda: MHA("m", 4, 2, key_padding="yes"), "key_padding must be True or False"),
        (lambda: SDPA("a").output_shape((4, 3)), "expects the query (N, ..., T, d), got shape (4, 3)"),
        (lambda: MHA("m", 4, 2).output_shape((2, 3, 5)), "E = embed_dim = 4, got shape (2, 3, 5)"),
        (lambda: MHA("m", 4, 2).output_shape((2, 4)), "expects input (N, T, E)"),
        (lambda: TSCE("none"), "reduction must be 'batch', 'mean' or 'sum'"),
        (lambda: TSCE("sum", ignore_index=None), "ignore_index must be an int"),
    ],
)
def test_spec_errors(make, words: str) -> None:
    with pytest.raises(S.SpecError, match=None) as e:
        make()
    assert words in str(e.value)


def test_padding_mask_values_are_checked() -> None:
    """check_params (which both references run) refuses masks that are not 0/1 or hide every key."""
    spec = S.Sequential([MHA("m", 4, 2, causal=True, key_padding=True)])
    params = S.init_params(spec, (2, 3, 4))
    bad = dict(params, **{"m.key_padding_mask": np.array([[0.0, 1, 0], [0, 0, 0.5]])})
    with pytest.raises(S.SpecError, match=r"layer 'm': key_padding_mask must hold 0 \(attend\) and 1.*0.5.*1 - mask"):
        S.check_params(spec, (2, 3, 4), bad)
    hidden = dict(params, **{"m.key_padding_mask": np.array([[0.0, 0, 0], [1, 0, 0]])})
    with pytest.raises(
        S.SpecError, match=r"causal mask hide every key from query 0 of batch row 1.*key 0, with causal"
    ):
        S.check_params(spec, (2, 3, 4), hidden)
    # without causal, only a fully hidden row is refused
    sdpa = SDPA("a", key_padding=True, kv_len=2)
    assert padding_problem(sdpa, "a", np.array([[1.0, 0]]), 3) is None
    assert "from query 0 of batch row 0" in padding_problem(sdpa, "a", np.array([[1.0, 1]]), 3)


def test_temporal_target_checks() -> None:
    loss = TSCE("mean", ignore_index=-1)
    S.check_target(loss, (2, 3, 5), np.array([[0, 4, -1], [1, -1, 2]]))
    cases = [
        ((2, 5), np.zeros((2,), int), "expects logits (N, T, V), the network outputs (2, 5)"),
        ((2, 3, 5), np.zeros((2, 3)), "target must be integer labels (2, 3), got float64"),
        ((2, 3, 5), np.zeros((3, 2), int), "got int64 of shape (3, 2)"),
        ((2, 3, 5), np.array([[0, 5, -1], [1, 1, 1]]), "labels must be in [0, 5) or ignore_index=-1"),
        ((2, 3, 5), np.full((2, 3), -1), "every label is ignore_index=-1"),
    ]
    for shape, target, words in cases:
        with pytest.raises(S.SpecError) as e:
            S.check_target(loss, shape, target)
        assert words in str(e.value)
    S.check_target(TSCE("sum"), (2, 3, 5), np.full((2, 3), -1))  # a sum over nothing is 0: allowed
    assert TSCE(ignore_index=0).valid_labels(np.array([[0, 3]]), 5).tolist() == [[0, 3]]  # CS231n's NULL = 0
    assert TSCE(ignore_index=-1).valid_labels(np.array([[-1, 3]]), 5).tolist() == [[0, 3]]
