"""Bug zoo, attention and the temporal loss (tests/zoo/attention.py): every mutant is caught
with the right layer, side and diagnosis, the user's arrays untouched; the correct attention
pair, multi-head attention and temporal losses pass at 20 seeds in float64 and float32 (0-1
by default, 2-19 under -m slow), with no false alarm and no inconclusive verdict."""

from __future__ import annotations

import numpy as np
import pytest

import harness as tg
from conftest import seeds
from harness.adapters.arrays import fingerprint
from harness.adapters.layer import WrappedLayer
from harness.check import check_layer
from test_zoo import _build
from zoo import attention as Z

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered")


def _arrays(user) -> dict[str, str]:
    """Fingerprints of every array the user's object (and its sub-layers) or pair holds."""
    if isinstance(user, WrappedLayer):
        return {k: fingerprint(v) for k, v in user._params.items()}
    out = {}
    for owner, obj in [("", user), *((k, v) for k, v in vars(user).items() if isinstance(v, Z.Linear))]:
        out.update({f"{owner}.{k}": fingerprint(v) for k, v in vars(obj).items() if k in ("W", "b")})
    return out


@pytest.mark.parametrize("name,make,spec,kwargs,shape,expected,diag", Z.MUTANTS, ids=[m[0] for m in Z.MUTANTS])
def test_mutant_is_caught(name, make, spec, kwargs, shape, expected, diag) -> None:
    user = make()
    before = _arrays(user)
    report = check_layer(user, spec, input_shape=shape, seed=0, **({} if isinstance(user, WrappedLayer) else kwargs))
    assert _arrays(user) == before
    layer = report.layers[0]
    assert report.first_failure == layer.name == spec.name
    assert layer.verdict == expected, str(report)
    assert any(diag in d for d in layer.diagnosis), (layer.diagnosis, str(report))
    assert all(t.ok for t in layer.tensors if t.name == "output")  # the forward is right: the backward is named


@seeds(20)  # seeds 0-1 in the default run, 2-19 under -m slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,make,spec,kwargs,shape", Z.CORRECT, ids=[c[0] for c in Z.CORRECT])
def test_correct_layers_pass_over_seeds(name, make, spec, kwargs, shape, dtype, seeds) -> None:
    for seed in seeds:
        user = _build(make, spec, kwargs, seed, dtype)
        assert user.dtype == np.dtype(dtype)
        report = check_layer(user, spec, input_shape=shape, seed=seed)
        assert report.ok, (seed, str(report))


@pytest.mark.parametrize("name,fn,spec,shape,expected,diag", Z.LOSS_MUTANTS, ids=[m[0] for m in Z.LOSS_MUTANTS])
def test_loss_mutant_is_caught(name, fn, spec, shape, expected, diag) -> None:
    report = tg.check_loss(fn, spec, input_shape=shape, seed=0)
    layer = report.layers[0]
    assert layer.name == "(loss)" and layer.verdict == expected, str(report)
    assert [t.ok for t in layer.tensors] == [True, False]  # the value is right, its gradient is not
    assert any(diag in d for d in layer.diagnosis), layer.diagnosis


@seeds(20)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,fn,spec,shape", Z.LOSS_CORRECT, ids=[c[0] for c in Z.LOSS_CORRECT])
def test_correct_losses_pass_over_seeds(name, fn, spec, shape, dtype, seeds) -> None:
    for seed in seeds:
        report = tg.check_loss(tg.wrap_loss(fn, spec, dtype=dtype), input_shape=shape, seed=seed)
        assert report.ok, (seed, str(report))


# --------------------------------------------------------------------------- hypotheses no mutant above needs


def _dv_wrong_at_padded_keys(dout, cache):
    """Synthetic: dv at the keys the mask hides taken from the unmasked softmax (0 is right there)."""
    scores, mask = cache[3], cache[5]
    dq, dk, dv = Z.attention_backward(dout, cache)
    unmasked = np.swapaxes(Z.softmax(scores), -1, -2) @ dout
    return dq, dk, np.where(np.asarray(mask, bool)[:, :, None], unmasked, dv)


def test_gradient_wrong_only_at_hidden_keys() -> None:
    spec = Z.PAD
    report = check_layer(Z._pair(_dv_wrong_at_padded_keys, spec, (3, 5, 4))(), spec, input_shape=(3, 5, 4))
    layer = report.layers[0]
    assert [t.name for t in layer.tensors if not t.ok] == ["value"]
    assert any("value: non-zero at keys the padding mask hides" in d for d in layer.diagnosis), layer.diagnosis


def _heads_backward_last_head_doubled(dout, cache):
    dq, dk, dv = Z.attention_backward(dout, cache)
    dk = dk.copy()
    dk[:, -1] *= 2  # a per-head loop that adds the last head's slice twice
    return dq, dk, dv


def test_sdpa_head_axis_named() -> None:
    spec = Z.HEADS
    report = check_layer(
        Z._pair(_heads_backward_last_head_doubled, spec, (2, 3, 4, 5))(), spec, input_shape=(2, 3, 4, 5)
    )
    layer = report.layers[0]
    assert layer.verdict == "backward"
    assert any(d.startswith("key: only in head 2 of 3 (axis 1)") for d in layer.diagnosis), layer.diagnosis


def test_no_attention_line_for_an_unrelated_bug() -> None:
    """A right gradient of a wrong forward (a stray factor in the output) gets no attention line."""

    def forward(q, k, v, mask=None):
        out, cache = Z.attention_forward(q, k, v, mask)
        return 1.5 * out, cache

    report = check_layer(Z._pair(Z.attention_backward, Z.PAD, (3, 5, 4))(), Z.PAD, input_shape=(3, 5, 4))
    assert report.ok
    pair = Z._pair(Z.attention_backward, Z.PAD, (3, 5, 4))()
    pair._f = forward
    layer = check_layer(pair, Z.PAD, input_shape=(3, 5, 4)).layers[0]
    assert layer.verdict == "forward"
    assert not any("mask" in d or "head" in d or "softmax backward" in d for d in layer.diagnosis), layer.diagnosis


def test_temporal_gradient_wrong_only_at_ignored_positions() -> None:
    def loss(x, y, mask):
        value, dx = Z.temporal_softmax_loss(x, y, mask)
        return value, np.where(mask[..., None], dx, 0.25)  # a constant left at the ignored positions

    layer = tg.check_loss(loss, Z.TSCE, input_shape=(3, 4, 6)).layers[0]
    assert layer.verdict == "backward"
    assert any(d.startswith("scores: wrong only at the ignored positions") for d in layer.diagnosis), layer.diagnosis
    assert not any("the mask is ignored in the gradient" in d for d in layer.diagnosis)
