"""The Captioner spec (issue 17, captioning networks): CS231n's CaptioningRNN as one container
whose input is the caption indices and whose image features are a buffer. Its validation,
shapes and parameter names; both references run it and agree to 1e-12 in float64 (outputs,
every layer's recorded values and upstream gradients, every trainable parameter's gradient,
under a projection and a softmax loss); to_torch computes it and from_torch gives it back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import harness as tg
from harness import spec as S
from reference_models import build
from test_agreement import assert_agree

N, T, F, W, H, V = 3, 4, 6, 4, 5, 9


def captioner(cell: type = S.RNN, name: str = "cap", **rnn: object) -> S.Captioner:
    kw = {"bias": "fused" if cell is not S.GRU else "separate", "initial_state": False, **rnn}
    return S.Captioner(
        name,
        project=S.Linear("project", F, H),
        embed=S.Embedding("embed", V, W),
        rnn=cell("rnn", W, H, **kw),
        vocab=S.Linear("vocab", H, V),
    )


def _captions(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, size=(N, T))


def test_shapes_names_and_json_round_trip() -> None:
    spec = captioner(S.LSTM)
    assert spec.output_shape((N, T)) == (N, T, V)
    assert S.layer_shapes(spec, (N, T)) == {
        "cap": ((N, T), (N, T, V)),
        "cap.embed": ((N, T), (N, T, W)),
        "cap.project": ((N, F), (N, H)),
        "cap.rnn": ((N, T, W), (N, T, H)),
        "cap.vocab": ((N, T, H), (N, T, V)),
    }
    params = S.named_params(spec, (N, T))
    assert list(params)[:3] == ["cap.features", "cap.embed.weight", "cap.project.weight"]
    assert params["cap.features"] == S.ParamInfo((N, F), trainable=False)  # data, not a weight
    assert "cap.rnn.h0" not in params  # h0 is the projection's output
    assert S.from_dict(spec.to_dict()) == spec
    assert S.index_layer(spec) is spec.embed and S.example_input_shape(spec) == (3, 5)


@pytest.mark.parametrize(
    "change,message",
    [
        (
            {"rnn": S.RNN("rnn", W, H)},
            "takes its initial state from project(features); declare it with initial_state=False",
        ),
        ({"project": S.Linear("project", F, H + 1)}, "project has out_features=6 but rnn hidden_size=5"),
        ({"vocab": S.Linear("vocab", H + 2, V)}, "vocab has in_features=7 but rnn hidden_size=5"),
        ({"embed": S.Embedding("embed", V, W + 1)}, "rnn has input_size=4 but embed embedding_dim=5"),
        ({"rnn": S.Linear("rnn", W, H)}, "rnn must be a RNN or LSTM or GRU spec"),
        ({"embed": S.Linear("embed", V, W)}, "embed must be a Embedding spec"),
        ({"vocab": S.Linear("project", H, V)}, "its parts need distinct names"),
        ({"name": ""}, "Captioner name '' is not valid"),
    ],
)
def test_bad_captioners_are_refused_by_name(change: dict, message: str) -> None:
    parts = {"name": "cap", **{k: getattr(captioner(), k) for k in ("project", "embed", "rnn", "vocab")}, **change}
    with pytest.raises(S.SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        S.Captioner(**parts)


def test_the_input_must_be_caption_indices() -> None:
    with pytest.raises(S.SpecError, match=r"a Captioner takes caption indices \(N, T\), got shape \(3, 4, 6\)"):
        captioner().output_shape((N, T, F))


CELLS = [(S.RNN, {}), (S.LSTM, {}), (S.LSTM, {"cell_state": True}), (S.GRU, {}), (S.RNN, {"nonlinearity": "relu"})]


@pytest.mark.parametrize("cell,kw", CELLS, ids=["rnn", "lstm", "lstm-c0", "gru", "relu"])
@pytest.mark.parametrize("root", ["bare", pytest.param("nested", marks=pytest.mark.slow)])
def test_torch_and_jax_agree(cell: type, kw: dict, root: str) -> None:
    spec = captioner(cell, **kw) if root == "bare" else S.Sequential([captioner(cell, **kw), S.Tanh("act")])
    x, params = _captions(0), S.init_params(spec, (N, T), seed=1)
    g = np.random.default_rng(2).normal(size=spec.output_shape((N, T)))
    t, j = build("torch", spec).vjp(params, x, g), build("jax", spec).vjp(params, x, g)
    assert_agree(t, j, spec, (N, T), tol=1e-12)
    assert t.input_grad is None and j.input_grad is None  # indices: not differentiable
    assert set(t.param_grads) == {k for k in params if k != "cap.features"}


def test_recorded_values_are_the_model_s_own() -> None:
    """h0 is the projection of the features; the projection's upstream gradient is dh0."""
    spec = captioner(S.LSTM)
    x, params = _captions(3), S.init_params(spec, (N, T), seed=4)
    t = build("torch", spec).vjp(params, x, np.ones((N, T, V)))
    np.testing.assert_array_equal(t.inputs["cap.project"], params["cap.features"])
    h0 = params["cap.features"] @ params["cap.project.weight"].T + params["cap.project.bias"]
    np.testing.assert_allclose(t.outputs["cap.project"], h0, rtol=1e-14)
    np.testing.assert_array_equal(t.inputs["cap.rnn"], params["cap.embed.weight"][x])
    # a standalone LSTM with that h0 computes the same hidden sequence, and its dh0 is the projection's gradient
    lstm = S.LSTM("rnn", W, H, bias="fused")
    own = {f"rnn.{k.split('.')[-1]}": v for k, v in params.items() if k.startswith("cap.rnn.")}
    alone = build("torch", lstm).vjp({**own, "rnn.h0": h0}, t.inputs["cap.rnn"], t.output_grads["cap.rnn"])
    np.testing.assert_allclose(alone.output, t.outputs["cap.rnn"], rtol=1e-13)
    np.testing.assert_allclose(alone.param_grads["rnn.h0"], t.output_grads["cap.project"], rtol=1e-12, atol=1e-15)


def test_loss_vjp_agrees_under_the_model_s_temporal_loss() -> None:
    """CS231n's loss: a masked sum over the batch, the NULL token 0 ignored."""
    spec = captioner(S.RNN)
    x, params = _captions(5), S.init_params(spec, (N, T), seed=6)
    labels = np.where(np.arange(T) < T - 2, _captions(7), 0)  # the last two steps padding
    loss = S.TemporalSoftmaxCrossEntropy(reduction="batch", ignore_index=0)
    t, j = build("torch", spec).loss_vjp(params, x, loss, labels), build("jax", spec).loss_vjp(params, x, loss, labels)
    assert abs(t.loss - j.loss) <= 1e-12 * abs(t.loss)
    assert_agree(t, j, spec, (N, T), tol=1e-12)
    assert not t.cotangent[:, T - 2 :].any()  # no gradient reaches the padding's scores


@pytest.mark.parametrize("cell,kw", CELLS[:4], ids=["rnn", "lstm", "lstm-c0", "gru"])
def test_to_torch_computes_it_and_from_torch_gives_it_back(cell: type, kw: dict) -> None:
    spec = captioner(cell, **kw)
    params = S.init_params(spec, (N, T), seed=8)
    module = tg.to_torch(spec, params)
    assert module.get_submodule("cap").get_buffer("features").shape == (N, F)
    assert isinstance(module.get_submodule("cap.rnn"), torch.nn.RNNBase)
    x = _captions(9)
    y = module(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(y, build("torch", spec).forward(params, x).output, rtol=0, atol=1e-14)
    back_spec, back = tg.from_torch(module)
    assert back_spec == S.Sequential([spec])
    assert list(back) == list(params)  # canonical names, the spec's order (c0 before the weights)
    for k in params:
        np.testing.assert_allclose(back[k], params[k], rtol=0, atol=1e-15)
