"""A captioning model that does not fit, or a check asked wrongly (issue 17, captioning
networks): each is an AdapterError naming the parameter, the shape found and the one expected
(or the argument and the fix), raised before any reference runs; the model is left as it
was. Code that raises inside model.loss is the (network) entry's verdict ``error``."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest

import captioning_model as cm
import harness as tg
from harness.adapters.captioning import is_captioning


def model(cell: str = "rnn") -> cm.CaptioningRNN:
    return cm.make_model(cell, np.float64)


def _params(edit: Callable[[dict], object]) -> Callable[[cm.CaptioningRNN], object]:
    return lambda m: edit(m.params)


MODEL_ERRORS = [
    (_params(lambda p: p.pop("W_vocab")), "model.params lacks ['W_vocab'] (CS231n's CaptioningRNN has"),
    (_params(lambda p: p.update(W_proj=np.zeros(6))),
     "model.params['W_proj'] has shape (6,); expected (input_dim, hidden_dim)"),
    (_params(lambda p: p.update(Wx=np.zeros((3, 5)))),
     "model.params do not fit a CaptioningRNN with vocab_size 9 and wordvec_dim 4 (W_embed (9, 4)), input_dim 6 and "
     "hidden_dim 5 (W_proj (6, 5)), cell_type 'rnn': Wx has (3, 5), expected (4, 5)"),
    (_params(lambda p: p.update(b_vocab=np.zeros(8), W_vocab=np.zeros((5, 8)))),
     "W_vocab has (5, 8), expected (5, 9); b_vocab has (8,), expected (9,)"),
    (_params(lambda p: p.update(Wh=np.zeros((5, 10)))),
     "model.params['Wh'] has shape (5, 10); W_proj gives hidden_dim 5, so Wh must be (5, 5) for an rnn or (5, 20) for "
     "an lstm"),
    (lambda m: setattr(m, "cell_type", "gru"), "model.cell_type is 'gru'; CS231n's CaptioningRNN has 'rnn' or 'lstm'"),
    (lambda m: setattr(m, "cell_type", "lstm"),
     "model.cell_type is 'lstm' but model.params['Wh'] has shape (5, 5), the 'rnn' layout (4 gate block(s): (5, 20)"),
    (lambda m: (setattr(m, "_null", None), m.word_to_idx.pop("<NULL>")),
     "no <NULL> token: model._null (or model.word_to_idx['<NULL>']) gives the padding index"),
    (lambda m: setattr(m, "_null", 12), "model._null is 12; it must be a word index in [0, 9)"),
    (lambda m: setattr(m, "params", [1, 2]), "a CaptioningRNN keeps its weights in model.params (a dict); "
                                             "CaptioningRNN has list"),
]  # fmt: skip


@pytest.mark.parametrize("edit,message", MODEL_ERRORS, ids=[f"model-{i}" for i in range(len(MODEL_ERRORS))])
def test_a_model_that_does_not_fit_is_refused(edit: Callable, message: str) -> None:
    m = model()
    edit(m)
    with pytest.raises(tg.AdapterError, match=re.escape(message)):
        tg.wrap_captioning(m)
    if isinstance(m.params, dict) and "W_embed" in m.params:  # what check_network reads as a captioning model
        with pytest.raises(tg.AdapterError, match=re.escape(message)):
            tg.check_network(m)


def test_the_cell_type_is_read_off_wh_when_the_model_has_none() -> None:
    m = model("lstm")
    del m.cell_type
    wrapped = tg.wrap_captioning(m)
    assert wrapped.reading.cell == "lstm" and isinstance(wrapped.captioner.rnn, tg.LSTM)
    assert wrapped.layout == tg.Layout(linear="in_out", gates="ifog")


def _captioner(rnn: tg.Layer, hidden: int = 5) -> tg.Captioner:
    return tg.Captioner(
        "cap", project=tg.Linear("project", 6, hidden), embed=tg.Embedding("embed", 9, 4), rnn=rnn,
        vocab=tg.Linear("vocab", hidden, 9),
    )  # fmt: skip


SPEC_ERRORS = [
    (tg.Sequential([tg.Linear("fc", 6, 5)]), "spec must be a harness.Captioner (or None: built from the params' shapes)"),
    (_captioner(tg.LSTM("rnn", 4, 5, bias="fused", initial_state=False)),
     "the model's cell_type is 'rnn' but the spec's rnn is a LSTM; use a RNN"),
    (_captioner(tg.RNN("rnn", 4, 5, initial_state=False)), "declare the spec's rnn with bias='fused'"),
    (_captioner(tg.RNN("rnn", 4, 6, bias="fused", initial_state=False), hidden=6),
     "model.params do not fit the spec: layer 'project': parameter 'weight' has shape (6, 5)"),
]  # fmt: skip


@pytest.mark.parametrize("spec,message", SPEC_ERRORS, ids=["not-captioner", "cell", "bias", "sizes"])
def test_a_spec_that_does_not_fit_is_refused(spec: tg.Layer, message: str) -> None:
    with pytest.raises(tg.AdapterError, match=re.escape(message)):
        tg.wrap_captioning(model(), spec)


F = np.zeros((3, 6))
POINT_ERRORS = [
    ({"y": np.ones((3, 6))}, "captions (y=) must be integer word indices (N, T + 1) with T >= 1, got float64"),
    ({"y": np.ones(6, np.int64)}, "captions (y=) must be integer word indices (N, T + 1) with T >= 1, got int64 of shape"),
    ({"y": np.full((3, 6), 12)}, "captions (y=) hold word indices in [12, 12]; the vocabulary (W_embed) has 9 words"),
    ({"x": np.zeros((3, 7))}, "features (x=) have shape (3, 7); the model's W_proj takes (N, 6)"),
    ({"x": F, "y": np.ones((2, 6), np.int64)}, "features (x=) have shape (3, 6); the model's W_proj takes (2, 6)"),
    ({"x": np.zeros((3, 6), np.int64)}, "features (x=) must be floating point, got int64"),
    ({"loss": "softmax"}, "a captioning model's loss is its own (temporal_softmax_loss, checked as '(loss)')"),
    ({"input_shape": (3, 6)}, "takes x= features (N, F) and y= captions (N, T + 1), each drawn from the seed"),
    ({"layout": tg.Layout()}, "['layout'] do not apply to a captioning model; wrap_captioning takes layers="),
    ({"layers": [cm.rnn_forward]}, "layers= takes a module (your rnn_layers) or a dict of its functions by name"),
]  # fmt: skip


@pytest.mark.parametrize("kwargs,message", POINT_ERRORS, ids=[f"check-{i}" for i in range(len(POINT_ERRORS))])
def test_a_check_asked_wrongly_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(tg.AdapterError, match=re.escape(message)):
        tg.check_network(model(), **kwargs)


def test_a_wrapped_model_takes_no_second_wrapping() -> None:
    from harness.caption_check import check_captioning

    with pytest.raises(tg.AdapterError, match=re.escape("the model is already wrapped; pass spec= and layers= to")):
        check_captioning(tg.wrap_captioning(model()), layers=cm)


def test_a_vocabulary_of_special_tokens_needs_captions() -> None:
    m = cm.make_model("rnn", words=0)
    with pytest.raises(
        tg.AdapterError, match=re.escape("the vocabulary of 3 holds only special tokens; pass captions")
    ):
        tg.check_network(m)


def test_a_loss_that_raises_is_the_network_s_error_and_the_model_is_restored() -> None:
    m = model()
    saved = {k: v.copy() for k, v in m.params.items()}

    def loss(features: np.ndarray, captions: np.ndarray) -> tuple:
        m.params["Wx"] *= 2  # written in place before failing: restored all the same
        raise FloatingPointError("overflow in the rnn")

    m.loss = loss
    report = tg.check_network(m, seed=0)
    network = report.layer("(network)")
    assert network.verdict == "error" and "FloatingPointError: overflow in the rnn" in network.message
    assert [e.name for e in report.layers if not e.ok] == ["(network)"]  # the functions pass alone
    for k, v in m.params.items():
        assert v.tobytes() == saved[k].tobytes()


def test_only_captioning_models_are_read_as_such() -> None:
    class TwoLayerNet:
        def __init__(self) -> None:
            self.params = {"W1": np.zeros((4, 3)), "b1": np.zeros(3)}

        def loss(self, X: np.ndarray, y: np.ndarray | None = None) -> None: ...

    assert is_captioning(model()) and not is_captioning(TwoLayerNet()) and not is_captioning(cm.CaptioningRNN)


def test_grads_that_do_not_fit_the_params_are_refused() -> None:
    m = model()
    own = m.loss

    def loss(features: np.ndarray, captions: np.ndarray) -> tuple:
        value, grads = own(features, captions)
        grads.pop("W_proj")
        return value, grads

    m.loss = loss
    with pytest.raises(
        tg.AdapterError, match=re.escape("grads has no 'W_proj' (the gradient of 'cap.project.weight')")
    ):
        tg.check_network(m)


def test_nan_weights_are_named_where_they_are_and_the_rest_is_not_blamed() -> None:
    m = model()
    m.params["W_vocab"][0, 0] = np.nan
    report = tg.check_network(m, seed=0)
    assert report.first_failure == "cap.vocab"
    vocab = report.layer("cap.vocab")
    assert (vocab.verdict, vocab.error_side) == ("error", "setup") and "hold NaN/Inf before any call" in vocab.message
    for entry in report.layers:
        if entry.name != "cap.vocab":
            assert entry.downstream_of == "cap.vocab", entry
    assert (
        "not checked: the reference's values reaching it hold NaN/Inf (see 'cap.vocab')"
        in report.layer("cap.embed").message
    )
    with pytest.raises(tg.AdapterError, match=re.escape("features (x=) hold NaN/Inf at [1, 2]")):
        tg.check_network(model(), x=np.where(np.arange(18).reshape(3, 6) == 8, np.nan, 0.0))


def test_a_backward_that_steps_the_weights_is_found_and_the_model_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    own = cm.temporal_affine_backward

    def sgd_backward(dout: np.ndarray, cache: tuple) -> tuple:
        dx, dw, db = own(dout, cache)
        w = cache[1]
        w -= 0.1 * dw  # an SGD step inside backward, on the weight it was handed: model.params['W_vocab'] in loss()
        return dx, dw, db

    monkeypatch.setattr(cm, "temporal_affine_backward", sgd_backward)
    m = model()
    saved = {k: v.copy() for k, v in m.params.items()}
    report = tg.check_network(m, seed=0)
    assert report.first_failure == "cap.vocab" and report.layer("cap.vocab").verdict == "backward"
    assert "backward changes parameter 'weight'" in report.layer("cap.vocab").diagnosis[0]
    assert report.layer("(network)").downstream_of == "cap.vocab"
    for k, v in m.params.items():
        assert v.tobytes() == saved[k].tobytes(), k
