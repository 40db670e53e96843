"""Real attention code and CS231n's temporal loss through the ordinary entry points, no shims:
check_loss with temporal_softmax_loss(x, y, mask); numpy function pairs attention_forward(q,
k, v, mask) mapped to ScaledDotProductAttention (k, v as parameters in order); a numpy
MultiHeadAttention with separate query/key/value/proj layers declared as parts of
in_proj_weight; the padding mask handed as a forward argument, in either convention; CS231n's
forward(query, key, value) with repeat_input=3. Every configuration error is named."""

from __future__ import annotations

import numpy as np
import pytest

import harness as tg
from harness import spec as S
from harness.adapters.refs import AdapterError
from zoo import attention as Z

IN_OUT = tg.Layout(linear="in_out")
PARTS = Z.MHA_KW["params"]


def _layer(report):
    return report.layers[0]


# --------------------------------------------------------------------------- the temporal loss


@pytest.mark.parametrize("spec", [Z.TSCE, Z.NULL0])
def test_cs231n_temporal_loss_handed_a_mask(spec) -> None:
    seen = {}

    def loss(x, y, mask, verbose=False):
        seen.update(y=y.copy(), mask=mask.copy())
        return Z.temporal_softmax_loss(x, y, mask)

    report = tg.check_loss(loss, spec, input_shape=(3, 4, 6), seed=2)
    assert report.ok, str(report)
    assert seen["mask"].dtype == bool and (~seen["mask"]).any() and seen["mask"].any()
    assert ((seen["y"] >= 0) & (seen["y"] < 6)).all()  # every label valid, the ignored ones too
    if spec.ignore_index == 0:
        assert (seen["y"][~seen["mask"]] == 0).all()  # CS231n's NULL stays NULL


def test_given_targets_and_mean_reduction() -> None:
    y = np.array([[1, 2, -1], [-1, 0, 5]])
    scores = np.random.default_rng(0).normal(size=(2, 3, 6))
    assert tg.check_loss(Z.temporal_softmax_loss, Z.TSCE, scores=scores, y=y).ok
    wrong = tg.check_loss(Z.temporal_softmax_loss, S.TemporalSoftmaxCrossEntropy("mean"), scores=scores, y=y)
    assert _layer(wrong).verdict == "forward"  # the code divides by N = 2, not by the 4 kept positions


def test_torch_style_loss_gets_ignore_index_in_y() -> None:
    """Code without a mask parameter handles ignore_index itself: y is handed unchanged."""
    assert tg.check_loss(Z.temporal_loss_torch_style, S.TemporalSoftmaxCrossEntropy("mean"), input_shape=(3, 4, 6)).ok


def test_mask_declared() -> None:
    def loss(x, y, *rest):  # no third named parameter: declare it
        return Z.temporal_softmax_loss(x, y, rest[0])

    assert tg.check_loss(tg.wrap_loss(loss, Z.TSCE, mask=True), input_shape=(2, 3, 5)).ok
    with pytest.raises(AdapterError, match=r"mask= .* is for a TemporalSoftmaxCrossEntropy"):
        tg.wrap_loss(loss, tg.SoftmaxCrossEntropy(), mask=True)
    with pytest.raises(AdapterError, match="True or False; got mask='yes'"):
        tg.wrap_loss(loss, Z.TSCE, mask="yes")


def test_temporal_loss_in_float32() -> None:
    wrapped = tg.wrap_loss(Z.temporal_softmax_loss, Z.TSCE, dtype=np.float32)
    report = tg.check_loss(wrapped, input_shape=(3, 4, 6), seed=1)
    assert report.ok and _layer(report).dtype == "float32", str(report)


def test_temporal_target_errors_are_configuration_errors() -> None:
    with pytest.raises(S.SpecError, match=r"labels must be in \[0, 6\) or ignore_index=-1"):
        tg.check_loss(Z.temporal_softmax_loss, Z.TSCE, input_shape=(2, 3, 6), y=np.full((2, 3), 7))
    with pytest.raises(S.SpecError, match="expects logits"):
        tg.check_loss(Z.temporal_softmax_loss, Z.TSCE, input_shape=(2, 6))


# --------------------------------------------------------------------------- scaled dot-product pairs


def test_pair_with_keys_and_values_as_parameters() -> None:
    rng = np.random.default_rng(0)
    k, v = rng.normal(size=(2, 5, 4)), rng.normal(size=(2, 5, 3))
    pair = tg.wrap_functions(
        Z.attention_forward, Z.attention_backward, S.ScaledDotProductAttention("a", value_dim=3), [k, v]
    )
    report = tg.check_layer(pair)  # the input shape (2, 5, 4) is the key's: no input_shape needed
    assert report.ok and [t.name for t in _layer(report).tensors] == ["output", "input", "key", "value"]


def test_pair_with_heads_and_t_ne_s_needs_no_shape() -> None:
    rng = np.random.default_rng(1)
    k, v = rng.normal(size=(2, 3, 6, 4)), rng.normal(size=(2, 3, 6, 4))
    spec = S.ScaledDotProductAttention("a", kv_len=6)
    pair = tg.wrap_functions(Z.attention_forward, Z.attention_backward, spec, [k, v])
    report = tg.check_layer(pair)
    assert report.ok and pair._x_shape == (2, 3, 7, 4)  # T = S + 1: the two axes differ


def _keep_forward(q, k, v, mask=None):
    """attention_mask convention: 1 = attend."""
    return Z.attention_forward(q, k, v, None if mask is None else mask == 0)


@pytest.mark.parametrize("convention", ["ignore", "keep"])
def test_padding_mask_conventions(convention: str) -> None:
    rng = np.random.default_rng(2)
    k, v = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 5, 4))
    hide = np.array([[0, 1, 0, 0, 1], [1, 0, 0, 0, 0], [0, 0, 1, 1, 0]], bool)
    spec = S.ScaledDotProductAttention("a", key_padding=True)
    forward, mask = (Z.attention_forward, hide) if convention == "ignore" else (_keep_forward, (~hide).astype(float))
    layout = tg.Layout(padding_mask=convention)
    pair = tg.wrap_functions(forward, Z.attention_backward, spec, [k, v, mask], layout=layout)
    assert tg.check_layer(pair).ok
    assert np.array_equal(pair.get_params()["key_padding_mask"], hide.astype(float))  # canonical: 1 = ignore
    undeclared = tg.wrap_functions(forward, Z.attention_backward, spec, [k, v, mask])
    if convention == "keep":  # read as 1 = ignore, the references hide the wrong keys
        assert _layer(tg.check_layer(undeclared)).verdict == "forward"


def test_a_mask_hiding_every_key_is_refused_before_any_call() -> None:
    calls = []

    def forward(q, k, v, mask=None):
        calls.append(1)
        return Z.attention_forward(q, k, v, mask)

    rng = np.random.default_rng(0)
    mask = np.array([[0, 0, 0], [1, 1, 1]], bool)
    pair = tg.wrap_functions(
        forward,
        Z.attention_backward,
        S.ScaledDotProductAttention("a", key_padding=True),
        [rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4)), mask],
    )
    with pytest.raises(S.SpecError, match="hide every key from query 0 of batch row 1"):
        tg.check_layer(pair)
    assert not calls
    with pytest.raises(tg.LayoutError, match="padding_mask must be 'ignore' or 'keep'"):
        tg.Layout(padding_mask="attend")


# --------------------------------------------------------------------------- multi-head attention objects


def test_separate_projections_joined_and_restored() -> None:
    mha = Z.MultiHeadAttention(8, 2, seed=3)
    arrays = {n: getattr(mha, n).W for n in ("query", "key", "value", "proj")}
    saved = {n: a.copy() for n, a in arrays.items()}
    wrapped = tg.wrap_layer(mha, Z.MHA_SPEC, **Z.MHA_KW)
    w = wrapped.get_params()["in_proj_weight"]
    assert np.array_equal(w, np.concatenate([mha.query.W.T, mha.key.W.T, mha.value.W.T]))  # q, k, v rows
    report = tg.check_layer(wrapped, input_shape=Z.MHA_SHAPE)
    assert report.ok, str(report)
    for n, a in arrays.items():  # the same arrays, bit for bit
        assert getattr(mha, n).W is a and np.array_equal(a, saved[n])
    wrapped.set_params({"in_proj_weight": np.zeros((24, 8))})
    assert not mha.key.W.any() and mha.key.W is arrays["key"]  # written into the parts in place


def test_padding_mask_as_a_forward_argument_found_or_declared() -> None:
    mha = Z.MultiHeadAttention(8, 2)
    kw = {**Z.MHA_KW, "forward_kwargs": {"key_padding_mask": Z.KPM}}
    spec = S.MultiheadAttention("attn", 8, 2, key_padding=True)
    assert tg.check_layer(mha, spec, **kw).ok  # found under a usual name; (3, 5) gives the input (3, 5, 8)
    renamed = {**Z.MHA_KW, "forward_kwargs": {"key_padding_mask": Z.KPM}}
    renamed["params"] = {**PARTS, "key_padding_mask": "forward_kwargs['key_padding_mask']"}
    assert tg.check_layer(mha, spec, **renamed).ok


def test_mha_float32() -> None:
    report = tg.check_layer(
        Z.MultiHeadAttention(8, 2, dtype=np.float32), Z.MHA_SPEC, input_shape=Z.MHA_SHAPE, **Z.MHA_KW
    )
    assert report.ok and _layer(report).dtype == "float32", str(report)


class CS231nAttention(Z.MultiHeadAttention):
    """CS231n's signature: forward(query, key, value, attn_mask) and (dq, dk, dv) back."""

    def forward(self, query, key, value, attn_mask=None):
        assert query is key is value
        return super().forward(query, attn_mask)

    def backward(self, dout):
        dx = super().backward(dout)
        return dx / 3, dx / 3, dx / 3  # any split: only the sum is the self-attention gradient


def test_query_key_value_forward_with_repeat_input() -> None:
    causal = S.MultiheadAttention("attn", 8, 2, causal=True)
    kw = {"params": PARTS, "layout": IN_OUT, "forward_kwargs": {"attn_mask": np.tril(np.ones((5, 5)))}}
    assert tg.check_layer(CS231nAttention(8, 2), causal, input_shape=(2, 5, 8), repeat_input=3, **kw).ok
    with pytest.raises(AdapterError, match="repeat_input= takes how many times"):
        tg.wrap_layer(CS231nAttention(8, 2), causal, repeat_input=0, **kw)

    class TwoBack(CS231nAttention):
        def backward(self, dout):
            return super().backward(dout)[:2]

    with pytest.raises(AdapterError, match=r"must return 3 input gradients of the input's shape first .* tuple of 2"):
        tg.check_layer(TwoBack(8, 2), causal, input_shape=(2, 5, 8), repeat_input=3, **kw)


def test_joined_parameter_errors() -> None:
    mha = Z.MultiHeadAttention(8, 2)
    spec = S.MultiheadAttention("attn", 8, 2)
    with pytest.raises(AdapterError, match="declared as a tuple of two or more places"):
        tg.wrap_layer(mha, spec, params={**PARTS, "in_proj_weight": ("query.W",)}, layout=IN_OUT)
    with pytest.raises(AdapterError, match=r"cannot be joined along axis -1: query.W \(8, 8\), proj.b \(8,\)"):
        tg.wrap_layer(mha, spec, params={**PARTS, "in_proj_weight": ("query.W", "proj.b")}, layout=IN_OUT).get_params()
    fused = Z.MultiHeadAttention(8, 2)
    fused.W_qkv = np.concatenate([fused.query.W, fused.key.W, fused.value.W], axis=1)  # (E, 3E): in_out, fused
    with pytest.raises(
        tg.LayoutError, match=r"in_proj_weight' has shape \(8, 24\).*looks transposed: pass Layout\(linear='in_out'\)"
    ):
        tg.wrap_layer(fused, spec, params={**PARTS, "in_proj_weight": "W_qkv"}).get_params()

    class NoGrads(Z.MultiHeadAttention):
        def backward(self, dout):
            dx = super().backward(dout)
            del self.query.dW
            return dx

    wrapped = tg.wrap_layer(NoGrads(8, 2), spec, params=PARTS, layout=IN_OUT)
    wrapped.forward(np.ones((2, 5, 8)))
    wrapped.backward(np.ones((2, 5, 8)))
    with pytest.raises(
        AdapterError,
        match=r"gradients of 'in_proj_weight' \(kept in parts at \(query.W, key.W, value.W\)\).*grads=\{'in_proj_weight': \('query.dW', 'key.dW', 'value.dW'\)\}",
    ):
        wrapped.param_grads()


def test_temporal_loss_without_a_spec_names_the_spec() -> None:
    with pytest.raises(AdapterError, match=r"logits \(N, T, V\), is not inferred: pass its spec"):
        tg.check_loss(Z.temporal_softmax_loss, input_shape=(3, 4, 6))


@pytest.mark.parametrize("cls, ok", [(Z.MultiHeadAttention, True), (Z.MHARecomputedNotCausal, False)])
def test_attention_inside_a_wrapped_network(cls, ok: bool) -> None:
    """A numpy embedding + multi-head attention network: each layer checked, and end to end."""
    embed, mha = Z.Linear(3, 8, np.random.default_rng(0), np.float64), cls(8, 2)
    spec = S.Sequential([S.Linear("embed", 3, 8), Z.MHA_SPEC])
    layers = {
        "embed": tg.wrap_layer(embed, spec.layers[0], layout=IN_OUT),
        "attn": tg.wrap_layer(mha, Z.MHA_SPEC, **Z.MHA_KW),
    }
    net = tg.wrap_network(
        layers,
        spec,
        forward=lambda x: mha.forward(embed.forward(x), **Z.MHA_KW["forward_kwargs"]),
        backward=lambda dy: embed.backward(mha.backward(dy)),
    )
    report = tg.check_network(net, input_shape=Z.MHA_SHAPE[:2] + (3,))
    assert report.ok == ok, str(report)
    if not ok:
        assert report.first_failure == "attn" and report.layer("attn").verdict == "backward"
        assert any("causal mask is applied in the forward but not" in d for d in report.layer("attn").diagnosis)


def test_temporal_loss_at_a_networks_output() -> None:
    """A temporal affine (Linear over (N, T, D)) and CS231n's loss: labels drawn with ignored positions."""
    fc = Z.Linear(4, 6, np.random.default_rng(0), np.float64)
    spec = S.Sequential([S.Linear("fc", 4, 6)])
    net = tg.wrap_network({"fc": tg.wrap_layer(fc, spec.layers[0], layout=IN_OUT)}, spec)
    good = tg.check_network(net, input_shape=(3, 5, 4), loss=tg.wrap_loss(Z.temporal_softmax_loss, Z.TSCE))
    assert good.ok and [entry.name for entry in good.layers] == ["fc", "(loss)"]
    bad = tg.check_network(
        net, input_shape=(3, 5, 4), loss=tg.wrap_loss(Z.temporal_softmax_loss_mask_ignored_in_grad, Z.TSCE)
    )
    assert bad.first_failure == "(loss)" and bad.layer("(loss)").verdict == "backward"
    assert any("the mask is ignored in the gradient" in d for d in bad.layer("(loss)").diagnosis)


class _NumpyMLDotProductAttention:
    """numpy-ml's DotProductAttention habits: ``forward(Q, K, V)``, ``backward(dLdy)`` returning
    ``(dQ, dK, dV)``; ``bug`` drops the 1/sqrt(d) scale from dK."""

    def __init__(self, bug: bool = False) -> None:
        self.bug = bug

    def forward(self, Q, K, V):
        scores = Q @ K.swapaxes(-2, -1) / np.sqrt(Q.shape[-1])
        e = np.exp(scores - scores.max(-1, keepdims=True))
        self.w, self.X = e / e.sum(-1, keepdims=True), (Q, K, V)
        return self.w @ V

    def backward(self, dy):
        (Q, K, V), w, scale = self.X, self.w, 1 / np.sqrt(self.X[1].shape[-1])
        dw = dy @ V.swapaxes(-2, -1)
        ds = w * (dw - (dw * w).sum(-1, keepdims=True))
        dk = ds.swapaxes(-2, -1) @ Q * (1.0 if self.bug else scale)
        return ds @ K * scale, dk, w.swapaxes(-2, -1) @ dy


def test_numpy_ml_style_attention_takes_key_and_value_as_forward_arguments() -> None:
    """K and V handed to every forward (forward_args) are the spec's key / value parameters;
    their gradients are read from the tuple backward returns."""
    rng = np.random.default_rng(0)
    k, v = rng.normal(size=(2, 6, 4)), rng.normal(size=(2, 6, 4))
    spec = S.ScaledDotProductAttention("att", kv_len=6)
    kw = {
        "input_shape": (2, 5, 4),
        "forward_args": (k, v),
        "params": {"key": "forward_args[0]", "value": "forward_args[1]"},
    }
    assert tg.check_layer(_NumpyMLDotProductAttention(), spec, **kw).layers[0].verdict == "pass"
    bad = tg.check_layer(_NumpyMLDotProductAttention(bug=True), spec, **kw).layers[0]
    assert bad.verdict == "backward" and [t.name for t in bad.tensors if not t.ok] == ["key"], str(bad)
    assert any("1/sqrt(d)" in d for d in bad.diagnosis), bad.diagnosis
